import LNPCrypto
import LNPSession
import LNPWire

/// Everything one frame link (UDP, a serial line) decides above its `DatagramSession`,
/// with no IO and no clock: the Lightning `init` exchange over a link that loses,
/// duplicates and reorders, BOLT-1 ping and pong, the ping-flood limit and the even-type
/// rule. It works on whole plaintext messages: the owner holds the `DatagramSession` (or
/// a `DatagramEndpoint` for many), seals every `.send` message with it and feeds this core
/// every message the session delivers. The owner arms one timer for `nextDeadline`
/// (together with the session's) and calls `timerFired` when it expires.
///
/// Use:
///
///     var link = FrameLinkCore(localInit: ourInit, policy: LinkPolicy(), now: .now)
///     // session reports .established(remoteStatic, epoch):
///     carryOut(link.sessionEstablished(remoteNodeID: remoteStatic, now: .now))
///     // session reports .deliver(message):
///     carryOut(link.receive(message, now: .now))
///     // owner's messages, once `.ready` was seen:
///     try FrameLinkCore.checkOutbound(messages, maximumMessageLength: …); seal each with the session
///
/// The `init` exchange. Each side's first message is its `init`, and either may be lost, so:
/// - each side sends its `init` again, with backoff (`initRetryInterval`, doubling up to
///   `initRetryIntervalLimit`), until the link is ready or `LinkPolicy.handshakeTimeout`
///   has passed since the session was established (then `.close(.handshakeTimedOut)`);
/// - on every copy of the peer's `init` it receives (its first and each repeat), a side
///   answers with an **init ack**: a message of the odd type `initAckType` (33101) with an
///   empty payload, which tells the peer "your `init` arrived". The peer's repeats stop
///   once our ack reaches it; a lost ack is answered by the next repeat;
/// - the link is ready when the peer's `init` has arrived and the peer has shown that ours
///   arrived: an init ack, or any other message, since a peer sends nothing but `init` and
///   acks before it is ready itself;
/// - messages other than `init` and acks that arrive before the peer's `init` are dropped
///   (counted in `messagesDroppedBeforeInit`): the message layer above resends.
/// A peer that does not know type 33101 ignores it (it is odd) and becomes ready on our
/// first ordinary message instead.
///
/// Each new handshake of the session (`sessionEstablished` again: the peer restarted, or
/// the initiator re-keyed after silence) starts the exchange over, because the peer may
/// have lost everything it knew. Keepalive and dead-peer detection belong to the datagram
/// session, so this core sends no idle pings; a ping whose pong is lost fails that ping
/// only (`.pingFailed`), never the link.
public struct FrameLinkCore: Sendable {
    public enum Stage: Hashable, Sendable, CustomStringConvertible {
        /// No session keys yet.
        case awaitingSession
        /// Keys are in place; `init`s are being exchanged.
        case awaitingInit
        case ready
        case closed

        public var description: String {
            switch self {
            case .awaitingSession: "waiting for the datagram session"
            case .awaitingInit: "exchanging init"
            case .ready: "ready"
            case .closed: "closed"
            }
        }
    }

    /// Identifies one of the owner's pings, so its pong can be matched to the caller.
    public typealias PingToken = PeerLinkCore.PingToken

    public struct RemotePeer: Equatable, Sendable {
        public var nodeID: PublicKey
        public var initMessage: InitMessage
    }

    public enum Action: Equatable, Sendable {
        /// A plaintext message to seal with the datagram session and send, in order.
        case send([UInt8])
        /// The `init` exchange is done; application messages may flow. Follows each
        /// `sessionEstablished`, so a re-established link is ready again.
        case ready(RemotePeer)
        /// An application message for the owner.
        case deliver([UInt8])
        case pongReceived(PingToken, roundTrip: Duration)
        /// No pong within `LinkPolicy.pongTimeout`: on a lossy link, the ping or its pong was lost.
        case pingFailed(PingToken, after: Duration)
        /// Close the session once the `.send`s before this action are out. Nothing follows.
        case close(LinkFailure)
    }

    /// Where the `init` exchange stands within one session epoch.
    private struct InitExchange: Sendable {
        let remoteNodeID: PublicKey
        let deadline: ContinuousClock.Instant
        var remoteInit: InitMessage?
        /// The peer's `init` as received, to tell a repeat from a second, different `init`.
        var remoteInitBytes: [UInt8]?
        var peerHasOurInit = false
        var nextRetry: ContinuousClock.Instant
        var retryInterval: Duration
    }

    private struct PendingPing: Sendable {
        var token: PingToken
        var pongLength: Int
        var sentAt: ContinuousClock.Instant
    }

    /// The message that acknowledges the peer's `init` (odd, custom range, empty payload).
    public static let initAckType: UInt16 = 33_101
    /// `init`, `ping`, `pong` and the init ack are the link's own business.
    public static let reservedMessageTypes: Set<UInt16> = PeerLinkCore.reservedMessageTypes.union([initAckType])
    /// Acks answered per session epoch beyond the first: a peer repeats its `init` a bounded
    /// number of times, so more repeats than this are not answered.
    public static let initAckReplyLimit = 64

    public let policy: LinkPolicy
    public let initRetryInterval: Duration
    public let initRetryIntervalLimit: Duration
    public private(set) var stage: Stage = .awaitingSession
    /// Set once the link is closed.
    public private(set) var closeReason: LinkFailure?
    /// Messages (not `init`, not acks) that came before the peer's `init`.
    public private(set) var messagesDroppedBeforeInit = 0
    /// Pongs that matched no ping of ours (late after a timeout, or unasked).
    public private(set) var unexpectedPongs = 0
    /// The peer's node id, once a session is established.
    public private(set) var remoteNodeID: PublicKey?

    private let localInitBytes: [UInt8]
    private let localInit: InitMessage
    private let knownFeatures: Set<Int>
    private var exchange: InitExchange?
    private var acksLeft = FrameLinkCore.initAckReplyLimit
    private var pendingPings: [PendingPing] = []
    private var pingFlood: PingFloodLimiter
    private var nextPingToken: UInt64 = 0

    /// - Parameters:
    ///   - localInit: our `init`, sent first on every session epoch.
    ///   - policy: `handshakeTimeout` bounds the `init` exchange (from `sessionEstablished`);
    ///     `pongTimeout`, the ping limits and the even-type rule apply as on a stream link;
    ///     `idlePingInterval` is not used (the datagram session sends keepalives).
    ///   - initRetryInterval: the first wait before our `init` is sent again; later waits
    ///     double up to `initRetryIntervalLimit`.
    public init(localInit: InitMessage, policy: LinkPolicy, initRetryInterval: Duration = .milliseconds(500),
                initRetryIntervalLimit: Duration = .seconds(4)) {
        self.policy = policy
        self.localInit = localInit
        self.localInitBytes = Message.`init`(localInit).encode()
        self.knownFeatures = policy.knownFeatures(localInit: localInit)
        self.initRetryInterval = max(initRetryInterval, .milliseconds(1))
        self.initRetryIntervalLimit = max(initRetryIntervalLimit, self.initRetryInterval)
        self.pingFlood = PingFloodLimiter(limit: policy.maximumPingsPerWindow, window: policy.pingFloodWindow)
    }

    /// When `timerFired` next has work; nil when only a message can move the link.
    public var nextDeadline: ContinuousClock.Instant? {
        switch stage {
        case .awaitingSession, .closed:
            return nil
        case .awaitingInit:
            guard let exchange else { return nil }
            // Once the peer has our init, only the deadline is left: a retry time left in
            // the past would have the owner's timer fire again at once, forever.
            return exchange.peerHasOurInit ? exchange.deadline : min(exchange.deadline, exchange.nextRetry)
        case .ready:
            return pendingPings.first.map { $0.sentAt + policy.pongTimeout }
        }
    }

    /// Checks a batch of the owner's messages; returns their total length. The transport
    /// checks before queueing, so a refused batch is refused whole.
    public static func checkOutbound(_ messages: [[UInt8]], maximumMessageLength: Int) throws(TransportError) -> Int {
        var total = 0
        for (index, message) in messages.enumerated() {
            guard let type = LinkRules.messageType(of: message) else { throw .messageTooShort(index: index, length: message.count) }
            guard message.count <= maximumMessageLength else {
                throw .messageTooLarge(index: index, length: message.count, limit: maximumMessageLength)
            }
            guard !reservedMessageTypes.contains(type) else { throw .reservedMessageType(index: index, type: type) }
            total += message.count
        }
        return total
    }

    /// The datagram session completed a handshake (its first, or a later one): send our
    /// `init` and wait for the peer's. Pings in flight fail; they belonged to the old keys.
    public mutating func sessionEstablished(remoteNodeID: PublicKey, now: ContinuousClock.Instant) -> [Action] {
        guard stage != .closed else { return [] }
        if let known = self.remoteNodeID, known != remoteNodeID {
            return fail(.local("the session now belongs to another node"))
        }
        self.remoteNodeID = remoteNodeID
        var actions = pendingPings.map { Action.pingFailed($0.token, after: now - $0.sentAt) }
        pendingPings.removeAll()
        stage = .awaitingInit
        acksLeft = Self.initAckReplyLimit
        exchange = InitExchange(remoteNodeID: remoteNodeID, deadline: now + policy.handshakeTimeout,
                                nextRetry: now + initRetryInterval, retryInterval: initRetryInterval)
        actions.append(.send(localInitBytes))
        return actions
    }

    /// A whole message the datagram session delivered.
    public mutating func receive(_ message: [UInt8], now: ContinuousClock.Instant) -> [Action] {
        guard stage == .awaitingInit || stage == .ready else { return [] }
        guard let type = LinkRules.messageType(of: message) else {
            return fail(.malformedMessage(type: nil, reason: "shorter than its 2-byte type"), warnPeer: true)
        }
        var actions: [Action] = []
        switch type {
        case MessageType.`init`:
            receiveInit(message, into: &actions)
        case Self.initAckType:
            if stage == .awaitingInit {
                exchange?.peerHasOurInit = true
                becomeReadyIfDone(into: &actions)
            }
        default:
            if stage == .awaitingInit {
                // Only a peer that has our init sends anything else.
                exchange?.peerHasOurInit = true
                becomeReadyIfDone(into: &actions)
                guard stage == .ready else {
                    messagesDroppedBeforeInit += 1
                    return actions
                }
            }
            handle(message, now: now, into: &actions)
        }
        return actions
    }

    /// The owner's timer expired (early or late calls are harmless).
    public mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        switch stage {
        case .awaitingSession, .closed:
            return []
        case .awaitingInit:
            guard var exchange else { return [] }
            if now >= exchange.deadline {
                return fail(.handshakeTimedOut(after: policy.handshakeTimeout, stage: .awaitingInit))
            }
            guard now >= exchange.nextRetry, !exchange.peerHasOurInit else { return [] }
            exchange.retryInterval = min(exchange.retryInterval * 2, initRetryIntervalLimit)
            exchange.nextRetry = now + exchange.retryInterval
            self.exchange = exchange
            return [.send(localInitBytes)]
        case .ready:
            var actions: [Action] = []
            while let oldest = pendingPings.first, now >= oldest.sentAt + policy.pongTimeout {
                pendingPings.removeFirst()
                actions.append(.pingFailed(oldest.token, after: policy.pongTimeout))
            }
            return actions
        }
    }

    /// One of the owner's pings; its pong comes back as `.pongReceived` with this token,
    /// or `.pingFailed` after `pongTimeout`.
    public mutating func ping(pongBytes: UInt16, now: ContinuousClock.Instant) throws(TransportError) -> (PingToken, [Action]) {
        guard pongBytes < Ping.noPongThreshold else { throw .invalidPongLength(pongBytes) }
        guard stage == .ready else { throw .sessionNotReady(reason: closeReason?.description ?? stage.description) }
        guard pendingPings.count < policy.maximumPendingPings else { throw .tooManyPendingPings(limit: policy.maximumPendingPings) }
        let token = PingToken(rawValue: nextPingToken)
        nextPingToken += 1
        pendingPings.append(PendingPing(token: token, pongLength: Int(pongBytes), sentAt: now))
        return (token, [.send(Message.ping(Ping(numPongBytes: pongBytes)).encode())])
    }

    /// Our side closes the link (no warning: the peer did nothing wrong).
    public mutating func close(_ reason: LinkFailure) -> [Action] {
        guard stage != .closed else { return [] }
        return fail(reason)
    }

    /// The datagram session ended by itself (handshake timeout, silent peer); returns why.
    public mutating func sessionClosed(_ failure: DatagramSessionFailure) -> LinkFailure {
        if let closeReason { return closeReason }
        let reason = LinkFailure.local(failure.description)
        stage = .closed
        closeReason = reason
        exchange = nil
        pendingPings.removeAll()
        return reason
    }

    // MARK: - Inbound

    private mutating func receiveInit(_ message: [UInt8], into actions: inout [Action]) {
        guard var exchange else { return }
        if let earlier = exchange.remoteInitBytes {
            // A repeat: our ack was lost (duplicates never get here, the replay window drops them).
            guard earlier == message else {
                actions += fail(.duplicateInit, warnPeer: true)
                return
            }
            answerInit(into: &actions)
            return
        }
        let remoteInit: InitMessage
        do {
            guard case let .`init`(decoded) = try Message.decode(message) else { return }
            remoteInit = decoded
        } catch {
            actions += fail(.malformedMessage(type: MessageType.`init`, reason: error.description), warnPeer: true)
            return
        }
        if let failure = LinkRules.incompatibility(of: remoteInit, localInit: localInit, knownFeatures: knownFeatures) {
            actions += fail(failure, warnPeer: true)
            return
        }
        exchange.remoteInit = remoteInit
        exchange.remoteInitBytes = message
        self.exchange = exchange
        answerInit(into: &actions)
        becomeReadyIfDone(into: &actions)
    }

    private mutating func answerInit(into actions: inout [Action]) {
        guard acksLeft > 0 else { return }
        acksLeft -= 1
        actions.append(.send(Self.initAck))
    }

    private mutating func becomeReadyIfDone(into actions: inout [Action]) {
        guard stage == .awaitingInit, let exchange, exchange.peerHasOurInit, let remoteInit = exchange.remoteInit else { return }
        stage = .ready
        actions.append(.ready(RemotePeer(nodeID: exchange.remoteNodeID, initMessage: remoteInit)))
    }

    private mutating func handle(_ message: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        switch LinkRules.classify(message, policy: policy, pingFlood: &pingFlood, now: now) {
        case let .failure(reason):
            actions += fail(reason, warnPeer: true)
        case let .success(.ping(ping)):
            if let pong = ping.reply { actions.append(.send(Message.pong(pong).encode())) }
        case let .success(.pong(pong)):
            // Pongs may be lost, so the oldest ping asking for this length is the one answered.
            guard let index = pendingPings.firstIndex(where: { $0.pongLength == pong.ignored.count }) else {
                unexpectedPongs += 1
                return
            }
            let answered = pendingPings.remove(at: index)
            actions.append(.pongReceived(answered.token, roundTrip: now - answered.sentAt))
        case .success(.`init`):
            // `receive` takes every init before the rules are asked.
            break
        case .success(.application):
            actions.append(.deliver(message))
        }
    }

    private static let initAck: [UInt8] = [UInt8(initAckType >> 8), UInt8(initAckType & 0xff)]

    /// Ends the link. With `warnPeer`, a `warning` naming the reason is sent first (BOLT-1).
    private mutating func fail(_ reason: LinkFailure, warnPeer: Bool = false) -> [Action] {
        var actions: [Action] = []
        if warnPeer {
            actions.append(.send(Message.warning(WarningMessage(allChannels: String(reason.description.prefix(1000)))).encode()))
        }
        stage = .closed
        closeReason = reason
        exchange = nil
        pendingPings.removeAll()
        actions.append(.close(reason))
        return actions
    }
}
