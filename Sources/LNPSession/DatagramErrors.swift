/// Where a datagram session stands.
public enum DatagramSessionStage: Hashable, Sendable, CustomStringConvertible {
    case notStarted
    case awaitingActOne
    case awaitingActTwo
    case awaitingActThree
    case established
    case closed

    public var description: String {
        switch self {
        case .notStarted: "not started"
        case .awaitingActOne: "waiting for handshake act one"
        case .awaitingActTwo: "waiting for handshake act two"
        case .awaitingActThree: "waiting for handshake act three"
        case .established: "established"
        case .closed: "closed"
        }
    }
}

/// What the owner asked for and could not have.
public enum DatagramSessionError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidPolicy(String)
    case notEstablished(stage: DatagramSessionStage)
    /// The initiator holds everything it sends until the responder confirms the
    /// handshake, and that store is full; try again once a datagram from the peer arrives.
    case awaitingConfirmation(heldDatagrams: Int)
    case messageTooLarge(length: Int, limit: Int)

    public var description: String {
        switch self {
        case let .invalidPolicy(detail): "the datagram policy is unusable: \(detail)"
        case let .notEstablished(stage): "the datagram session cannot send yet: it is \(stage)"
        case let .awaitingConfirmation(held):
            "the peer has not yet confirmed the handshake and \(held) datagrams are already held for it"
        case let .messageTooLarge(length, limit): "a \(length)-byte message exceeds the limit of \(limit) bytes"
        }
    }
}

/// Why a datagram session ended (or, for an initiator, started over).
public enum DatagramSessionFailure: Error, Equatable, Sendable, CustomStringConvertible {
    case handshakeTimedOut(attempts: Int)
    case halfOpenExpired(after: Duration)
    /// Our own side of the handshake failed (the node key service did not answer).
    case handshakeFailed(HandshakeError)
    case peerSilent(after: Duration)
    /// 2^62 datagrams in one session: never in practice, but a nonce must not repeat.
    case counterExhausted
    case closedLocally

    public var description: String {
        switch self {
        case let .handshakeTimedOut(attempts): "the peer did not answer the handshake after \(attempts) attempts"
        case let .halfOpenExpired(after): "the initiator did not send act three within \(after)"
        case let .handshakeFailed(error): error.description
        case let .peerSilent(after): "nothing authentic arrived from the peer for \(after)"
        case .counterExhausted: "the session's datagram counter is spent; a new handshake is needed"
        case .closedLocally: "the session was closed by its owner"
        }
    }
}

/// Why an incoming datagram was dropped. A lossy link drops silently: none of these ends
/// the session, since anyone can put bytes on the link; they are counted instead.
public enum DatagramDropReason: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case malformed
    case oversized
    case unexpectedHandshake
    case handshakeRejected
    case replyLimitReached
    case noSession
    case replayed
    case tooOld
    case authenticationFailed
    case malformedFragment
    case messageTooLarge
    case sessionClosed

    public var description: String {
        switch self {
        case .malformed: "the datagram's kind byte is unknown or it is too short for its kind"
        case .oversized: "the datagram is larger than the link's datagram size"
        case .unexpectedHandshake: "a handshake act this side does not expect now (a stale duplicate, or the wrong role)"
        case .handshakeRejected: "a handshake act failed verification"
        case .replyLimitReached: "a repeated handshake act was not answered again: its reply limit is spent"
        case .noSession: "an encrypted datagram arrived before the handshake completed"
        case .replayed: "the datagram's counter was already accepted (a duplicate or a replay)"
        case .tooOld: "the datagram's counter is older than the replay window"
        case .authenticationFailed: "the datagram failed authentication (forged, corrupted, or from an earlier session)"
        case .malformedFragment: "an authentic fragment contradicts its message (bad index or count, or a piece twice)"
        case .messageTooLarge: "a fragmented message grew past the largest message allowed"
        case .sessionClosed: "the session is closed"
        }
    }
}

/// Counters of one datagram session, for logs and tests.
public struct DatagramStatistics: Sendable, Equatable {
    public var datagramsSent = 0
    public var datagramsReceived = 0
    public var messagesSent = 0
    public var messagesDelivered = 0
    public var keepalivesSent = 0
    public var handshakesCompleted = 0
    /// Fragmented messages given up (timeout or memory bound).
    public var incompleteMessagesDropped = 0
    public var drops: [DatagramDropReason: Int] = [:]

    public init() {}

    public func dropped(_ reason: DatagramDropReason) -> Int { drops[reason, default: 0] }
    public var totalDropped: Int { drops.values.reduce(0, +) }
}
