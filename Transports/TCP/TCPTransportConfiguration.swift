import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import Logging

public struct TCPTransportConfiguration: Sendable {
    /// Our node key, or whoever holds it (keyd): the handshake only needs ECDH with it.
    public var localKey: any StaticKeyAgreement
    /// Our features; sent first on every link, inbound and outbound. On inbound links
    /// from a public IP, `remote_addr` is filled in with the peer's address.
    public var localInit: InitMessage
    /// Every address to accept connections on; may be empty (dial-only).
    public var listen: [ListenAddress]
    /// From the TCP connect (or accept) until the `init` exchange is complete.
    public var handshakeTimeout: Duration = .seconds(10)
    public var idlePingInterval: Duration = .seconds(30)
    public var pongTimeout: Duration = .seconds(15)
    /// The largest message accepted from a peer.
    public var maximumMessageLength: Int = FrameFormat.large.maximumMessageLength
    /// Outbound bytes queued per peer (ours not yet written to the socket); beyond it
    /// `send` answers `.queueFull`. One batch larger than this is still taken when
    /// the queue is empty, so memory per peer stays below this plus one batch.
    public var maximumQueuedBytesPerPeer: Int = 32 << 20
    /// Delay before redialling a lost persistent peer: doubles per failed attempt up to
    /// `maximum`; each delay is drawn uniformly from its upper half (jitter).
    public var reconnectBackoff: (initial: Duration, maximum: Duration) = (.milliseconds(250), .seconds(60))
    /// A peer sending more pings than this within `pingFloodWindow` is dropped.
    public var maximumPingsPerWindow: Int = 20
    public var pingFloodWindow: Duration = .seconds(60)
    /// Even message types the owner handles; any other even type drops the peer.
    public var acceptedEvenMessageTypes: Set<UInt16> = []
    /// How outbound connections are opened: directly, or later through a SOCKS proxy (Tor).
    public var dialer: any TCPDialer = DirectTCPDialer()
    public var logger = Logger(label: "lnp.transport.tcp")

    public init(localKey: any StaticKeyAgreement, localInit: InitMessage, listen: [ListenAddress] = []) {
        self.localKey = localKey
        self.localInit = localInit
        self.listen = listen
    }

    var linkPolicy: LinkPolicy {
        LinkPolicy(
            handshakeTimeout: handshakeTimeout,
            idlePingInterval: idlePingInterval,
            pongTimeout: pongTimeout,
            maximumMessageLength: maximumMessageLength,
            maximumPingsPerWindow: maximumPingsPerWindow,
            pingFloodWindow: pingFloodWindow,
            acceptedEvenMessageTypes: acceptedEvenMessageTypes
        )
    }
}
