import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import Logging

public struct SerialTransportConfiguration: Sendable {
    /// Our node key, or whoever holds it (keyd): the handshake only needs ECDH with it.
    public var localKey: any StaticKeyAgreement
    /// Our features, sent on every line once the keys are in place.
    public var localInit: InitMessage
    /// Lines on which this node answers (`serial:///dev/ttyS0?baud=115200`); may be empty.
    public var listen: [ListenAddress]
    /// The datagram session's sizes and timers; `.serial()` suits lines from 9600 baud up.
    public var datagramPolicy: DatagramPolicy = .serial()
    /// The first wait before our `init` is sent again (doubles up to the policy's handshake limit).
    public var initRetryInterval: Duration = .seconds(1)
    /// An owner's ping unanswered for this long fails (the session itself stays: on a lossy
    /// line a lost ping is no reason to drop it; the session's dead-peer timer decides that).
    public var pongTimeout: Duration = .seconds(15)
    public var maximumPingsPerWindow: Int = 20
    public var pingFloodWindow: Duration = .seconds(60)
    /// Even message types the owner handles; any other even type is refused with a `warning`.
    public var acceptedEvenMessageTypes: Set<UInt16> = []
    /// Bytes queued for a line and not yet written to the device; beyond it `send`
    /// answers `.queueFull`. 128 KiB is about 11 seconds of a 115,200 baud line.
    public var maximumQueuedBytesPerLine: Int = 128 << 10
    /// A persistent peer whose handshake timed out is tried again after this long.
    public var redialDelay: Duration = .seconds(5)
    public var flowControl: SerialFlowControl = .none
    public var logger = Logger(label: "lnp.transport.serial")

    public init(localKey: any StaticKeyAgreement, localInit: InitMessage, listen: [ListenAddress] = []) {
        self.localKey = localKey
        self.localInit = localInit
        self.listen = listen
    }

    var linkSettings: SerialLinkCore.Settings {
        SerialLinkCore.Settings(
            datagramPolicy: datagramPolicy,
            linkPolicy: LinkPolicy(pongTimeout: pongTimeout, maximumMessageLength: datagramPolicy.maximumMessageLength,
                                   maximumPingsPerWindow: maximumPingsPerWindow, pingFloodWindow: pingFloodWindow,
                                   acceptedEvenMessageTypes: acceptedEvenMessageTypes),
            initRetryInterval: initRetryInterval,
            redialDelay: redialDelay)
    }
}
