import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import Logging
import NIOCore

public struct UDPTransportConfiguration: Sendable {
    /// Our node key, or whoever holds it (keyd): the handshake only needs ECDH with it.
    public var localKey: any StaticKeyAgreement
    /// Our features; the first message of every session, inbound and outbound. On inbound
    /// sessions from a public IP, `remote_addr` is filled in with the peer's address.
    public var localInit: InitMessage
    /// `udp://HOST:PORT` addresses to accept sessions on; may be empty (dial-only, from an
    /// ephemeral port).
    public var listen: [ListenAddress]
    /// Datagram size, handshake retries, keepalive and dead-peer timers, reassembly bounds.
    public var datagramPolicy: DatagramPolicy = .udp
    /// Sessions and half-open handshakes per socket (`DatagramEndpoint`).
    public var maximumSessionsPerSocket = 1024
    public var maximumHalfOpenPerSocket = 128
    /// From the end of the handshake until the `init` exchange is complete.
    public var initTimeout: Duration = .seconds(15)
    /// The first wait before our `init` is sent again; later waits double up to 4 s.
    public var initRetryInterval: Duration = .milliseconds(500)
    public var pongTimeout: Duration = .seconds(15)
    /// Outbound message bytes queued per peer and not yet handed to the socket; beyond it
    /// `send` answers `.queueFull`. An empty queue takes any one batch.
    public var maximumQueuedBytesPerPeer: Int = 4 << 20
    /// The socket's kernel receive buffer: bursts beyond it are lost before we see them.
    public var receiveBufferBytes: Int = 4 << 20
    /// Delay before redialling a lost persistent peer: doubles per failed attempt up to
    /// `maximum`; each delay is drawn uniformly from its upper half (jitter).
    public var reconnectBackoff: (initial: Duration, maximum: Duration) = (.milliseconds(250), .seconds(60))
    public var maximumPingsPerWindow: Int = 20
    public var pingFloodWindow: Duration = .seconds(60)
    /// Even message types the owner handles; any other even type drops the peer.
    public var acceptedEvenMessageTypes: Set<UInt16> = []
    /// Runs on each socket's event loop before the transport's own handler is added, so a
    /// test can put a fault injector between the socket and the sessions. Nil in production.
    public var socketPipelineHook: (@Sendable (any Channel) throws -> Void)?
    public var logger = Logger(label: "lnp.transport.udp")

    public init(localKey: any StaticKeyAgreement, localInit: InitMessage, listen: [ListenAddress] = []) {
        self.localKey = localKey
        self.localInit = localInit
        self.listen = listen
    }

    var linkPolicy: LinkPolicy {
        LinkPolicy(handshakeTimeout: initTimeout, pongTimeout: pongTimeout,
                   maximumMessageLength: datagramPolicy.maximumMessageLength,
                   maximumPingsPerWindow: maximumPingsPerWindow, pingFloodWindow: pingFloodWindow,
                   acceptedEvenMessageTypes: acceptedEvenMessageTypes)
    }
}
