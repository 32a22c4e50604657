#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LNPCrypto
import LNPWire

/// What the node's message layer needs from any link: move whole Lightning messages
/// (`[u16 type][payload]`) to a node and report what happens through `TransportEvent`s,
/// given to the closure each transport takes when it is created. Transports only move
/// bytes: ids, storage, retries and receipts belong to the message layer.
///
/// `send` never blocks: it either takes the whole batch (`.written`) or refuses it
/// (`.queueFull`), in which case `.writable` follows once there is room again.
public protocol Transport: AnyObject, Sendable {
    /// How this transport's links behave.
    var linkKind: LinkKind { get }

    /// Whether this transport can dial `address` (its scheme, and for TCP, whether an
    /// onion host has a Tor path).
    func canReach(_ address: PeerAddress) -> Bool

    /// Queues `messages`, in order, for `nodeID`.
    func send(_ messages: [[UInt8]], to nodeID: PublicKey) throws(TransportError) -> SendOutcome

    /// Stops listening, closes every link and cancels pending retries.
    func shutdown() async
}

/// A transport with live sessions to peers: the handshake, the `init` exchange, and
/// reconnection of persistent peers. Stream links (TCP, Tor) and frame links (UDP,
/// serial) are session transports; store-and-forward is not.
public protocol SessionTransport: Transport {
    /// Dials `address` and completes after the handshake and the `init` exchange.
    /// A persistent peer is redialled whenever the connection is lost, until `disconnect`.
    func connect(to address: PeerAddress, persistent: Bool) async throws(TransportError) -> PeerInfo

    /// Closes the session with `nodeID` and stops redialling it.
    func disconnect(_ nodeID: PublicKey) async

    /// Like `send`, but completes once the bytes have been handed to the link.
    func sendAndFlush(_ messages: [[UInt8]], to nodeID: PublicKey) async throws(TransportError)

    /// A BOLT-1 ping; returns the round-trip time.
    func ping(_ nodeID: PublicKey, pongBytes: UInt16) async throws(TransportError) -> Duration

    /// The peers with a session right now.
    func peers() -> [PeerInfo]
}

public enum SendOutcome: Hashable, Sendable {
    /// The whole batch was queued; `bytes` is its size on the link (frames included).
    case written(bytes: Int)
    /// Nothing was queued: the peer's outbound queue is at its limit.
    case queueFull
}

/// A peer with a session.
public struct PeerInfo: Hashable, Sendable {
    public enum Direction: Hashable, Sendable {
        case inbound
        case outbound
    }

    public var nodeID: PublicKey
    /// The remote socket address of an inbound link, or the dialled `PeerAddress`.
    public var address: String
    public var direction: Direction
    /// The peer's `init` features (`globalfeatures` OR `features`).
    public var remoteFeatures: FeatureVector
    public var connectedAt: Date
    /// Redialled when lost, until `disconnect`.
    public var persistent: Bool
    /// Both sides advertised `option_lnp_large_frames`.
    public var largeFrames: Bool

    public init(nodeID: PublicKey, address: String, direction: Direction, remoteFeatures: FeatureVector,
                connectedAt: Date, persistent: Bool, largeFrames: Bool) {
        self.nodeID = nodeID
        self.address = address
        self.direction = direction
        self.remoteFeatures = remoteFeatures
        self.connectedAt = connectedAt
        self.persistent = persistent
        self.largeFrames = largeFrames
    }
}

public enum TransportEvent: Sendable {
    /// A session is ready (handshake and `init` exchange done). For a node that already
    /// had a session, the new one has replaced it.
    case connected(PeerInfo)
    case disconnected(nodeID: PublicKey, reason: String)
    /// An application message: an odd or custom type, an even type the owner declared
    /// it understands, `error` or `warning`. `ping`, `pong` and `init` never appear here.
    case message(from: PublicKey, bytes: [UInt8])
    /// The peer's outbound queue fell below half its limit after a `send` was refused.
    case writable(PublicKey)
    case connectFailed(address: PeerAddress, reason: String, willRetry: Bool)
}

public enum TransportError: Error, Hashable, Sendable, CustomStringConvertible {
    case notConnected(PublicKey)
    case shutDown
    case unsupportedAddress(String, reason: String)
    case bindFailed(address: String, reason: String)
    case connectFailed(address: String, reason: String)
    case handshakeFailed(address: String, reason: String)
    case connectionClosed(PublicKey, reason: String)
    case sessionNotReady(reason: String)
    case messageTooShort(index: Int, length: Int)
    case messageTooLarge(index: Int, length: Int, limit: Int)
    /// `init`, `ping` and `pong` belong to the transport itself.
    case reservedMessageType(index: Int, type: UInt16)
    case queueFull(PublicKey)
    case invalidPongLength(UInt16)
    case tooManyPendingPings(limit: Int)
    /// On a frame link a ping or its pong may be lost: the ping fails, the link stays.
    case pongTimedOut(PublicKey, after: Duration)

    public var description: String {
        switch self {
        case let .notConnected(nodeID):
            return "node \(nodeID) is not connected"
        case .shutDown:
            return "the transport has been shut down"
        case let .unsupportedAddress(address, reason):
            return "cannot use \(address): \(reason)"
        case let .bindFailed(address, reason):
            return "cannot listen on \(address): \(reason)"
        case let .connectFailed(address, reason):
            return "cannot connect to \(address): \(reason)"
        case let .handshakeFailed(address, reason):
            return "the session with \(address) failed to start: \(reason)"
        case let .connectionClosed(nodeID, reason):
            return "the connection to \(nodeID) closed: \(reason)"
        case let .sessionNotReady(reason):
            return "the session is not ready: \(reason)"
        case let .messageTooShort(index, length):
            return "message \(index) has \(length) byte(s); a message needs at least its 2-byte type"
        case let .messageTooLarge(index, length, limit):
            return "message \(index) has \(length) bytes, over this session's limit of \(limit)"
        case let .reservedMessageType(index, type):
            return "message \(index) has type \(type) (\(MessageType.name(of: type))), which only the transport itself sends"
        case let .queueFull(nodeID):
            return "the outbound queue for \(nodeID) is full; wait for its .writable event"
        case let .invalidPongLength(length):
            return "a ping asking for \(length) pong bytes is never answered (BOLT-1: the limit is \(Ping.noPongThreshold - 1))"
        case let .tooManyPendingPings(limit):
            return "\(limit) pings are already waiting for their pong"
        case let .pongTimedOut(nodeID, after):
            return "no pong from \(nodeID) within \(formatted(after)): the ping or its pong was lost"
        }
    }
}
