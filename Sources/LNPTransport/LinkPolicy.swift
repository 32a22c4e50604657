import LNPSession
import LNPWire

/// The limits and timers one peer link enforces. Every untrusted input is bounded here:
/// the time to finish the handshake, the size of a message, the rate of pings.
public struct LinkPolicy: Sendable, Hashable {
    /// From the first byte of act one until the peer's `init` has arrived.
    public var handshakeTimeout: Duration
    /// With nothing received for this long, we ping.
    public var idlePingInterval: Duration
    /// A ping (ours or the owner's) unanswered for this long closes the link.
    public var pongTimeout: Duration
    /// The largest message accepted from the peer; bounds the receive buffer.
    public var maximumMessageLength: Int
    /// More than this many pings received within `pingFloodWindow` closes the link.
    /// BOLT-1 lets a receiver fail the connection on a ping flood; its rationale
    /// speaks of one ping per 30 seconds as ordinary.
    public var maximumPingsPerWindow: Int
    public var pingFloodWindow: Duration
    /// Pings of ours waiting for a pong at once.
    public var maximumPendingPings: Int
    /// Even message types the owner handles. Every other even type ("it's OK to be odd")
    /// gets a `warning` and closes the link.
    public var acceptedEvenMessageTypes: Set<UInt16>
    /// Feature bits we understand, as `FeatureVector.validate(known:)` takes them. `nil`
    /// means the features our own `init` sets (both bits of each pair).
    public var knownFeatureBits: Set<Int>?

    public init(
        handshakeTimeout: Duration = .seconds(10),
        idlePingInterval: Duration = .seconds(30),
        pongTimeout: Duration = .seconds(15),
        maximumMessageLength: Int = FrameFormat.large.maximumMessageLength,
        maximumPingsPerWindow: Int = 20,
        pingFloodWindow: Duration = .seconds(60),
        maximumPendingPings: Int = 16,
        acceptedEvenMessageTypes: Set<UInt16> = [],
        knownFeatureBits: Set<Int>? = nil
    ) {
        self.handshakeTimeout = handshakeTimeout
        self.idlePingInterval = idlePingInterval
        self.pongTimeout = pongTimeout
        self.maximumMessageLength = maximumMessageLength
        self.maximumPingsPerWindow = maximumPingsPerWindow
        self.pingFloodWindow = pingFloodWindow
        self.maximumPendingPings = maximumPendingPings
        self.acceptedEvenMessageTypes = acceptedEvenMessageTypes
        self.knownFeatureBits = knownFeatureBits
    }

    /// The bits `validate(known:)` is given for a peer, with our own `init`.
    public func knownFeatures(localInit: InitMessage) -> Set<Int> {
        if let knownFeatureBits { return knownFeatureBits }
        var bits = Set<Int>()
        for bit in localInit.combinedFeatures.setBits {
            bits.insert(bit)
            bits.insert(bit ^ 1)
        }
        return bits
    }
}

/// Why a link closed. `description` is one line for logs and, for the peer's
/// misbehaviour, the text of the `warning` sent before closing (ASCII only).
public enum LinkFailure: Error, Equatable, Sendable, CustomStringConvertible {
    case handshakeTimedOut(after: Duration, stage: PeerLinkCore.Stage)
    case closedByPeer(stage: PeerLinkCore.Stage)
    /// The cipher stream or the handshake failed: bad MAC, oversized frame, bad act.
    case session(SessionError)
    /// The peer's `init` requires a feature we do not know, or lacks a dependency.
    case incompatibleInit(WireError)
    case noCommonNetwork
    case duplicateInit
    case unknownEvenMessage(type: UInt16)
    case malformedMessage(type: UInt16?, reason: String)
    case pingFlood(count: Int, window: Duration)
    case pongTimedOut(after: Duration)
    case unexpectedPong(length: Int)
    /// Our side's decision (disconnect, shutdown, a newer connection).
    case local(String)
    /// The operating system reported an error on the link.
    case io(String)

    /// The peer broke the protocol or a limit (as opposed to a normal close).
    public var isPeerMisbehaviour: Bool {
        switch self {
        case .closedByPeer, .local, .io: false
        default: true
        }
    }

    public var description: String {
        switch self {
        case let .handshakeTimedOut(after, stage):
            return "the handshake did not complete within \(formatted(after)) (\(stage))"
        case let .closedByPeer(stage):
            switch stage {
            case .awaitingActTwo:
                return "the peer closed the connection instead of answering handshake act one: "
                    + "it does not hold the private key of the node id we dialled, or is not a Lightning node"
            case .awaitingActOne, .awaitingActThree:
                return "the peer closed the connection during the handshake (\(stage))"
            case .awaitingInit:
                return "the peer closed the connection before sending its init (it may have rejected ours)"
            default:
                return "the peer closed the connection"
            }
        case let .session(error):
            return error.description
        case let .incompatibleInit(error):
            return "the peer's init is not compatible with ours: \(error)"
        case .noCommonNetwork:
            return "the peer's init lists no chain that we use (networks)"
        case .duplicateInit:
            return "the peer sent a second init"
        case let .unknownEvenMessage(type):
            return "unknown even message type \(type) (it's OK to be odd, not even)"
        case let .malformedMessage(type, reason):
            return "malformed \(type.map { MessageType.name(of: $0) } ?? "message"): \(reason)"
        case let .pingFlood(count, window):
            return "ping flood: more than \(count) pings within \(formatted(window))"
        case let .pongTimedOut(after):
            return "no pong within \(formatted(after))"
        case let .unexpectedPong(length):
            return "a pong of \(length) bytes answers no ping we sent"
        case let .local(reason):
            return reason
        case let .io(reason):
            return "link error: \(reason)"
        }
    }
}

/// `1.5 s`, `250 ms`: short and ASCII, for log lines and warnings.
func formatted(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
    if milliseconds < 1000 { return "\(milliseconds) ms" }
    if milliseconds % 1000 == 0 { return "\(milliseconds / 1000) s" }
    return "\(Double(milliseconds) / 1000) s"
}
