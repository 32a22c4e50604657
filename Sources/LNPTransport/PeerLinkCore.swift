import LNPCrypto
import LNPSession
import LNPWire

/// Everything one stream link decides, with no IO and no clock: the BOLT-8 session
/// (`PeerSession`), the checks on the peer's `init`, ping and pong, keepalive, the
/// ping-flood limit and the even-type rule. Any stream transport (TCP, Tor) feeds it
/// bytes and the current time and carries out the `Action`s it returns; the adapter
/// arms one timer for `nextDeadline` and calls `timerFired` when it expires.
public struct PeerLinkCore: Sendable {
    public enum Stage: Hashable, Sendable, CustomStringConvertible {
        case notStarted
        case awaitingActOne
        case awaitingActTwo
        case awaitingActThree
        case awaitingInit
        case ready
        case closed

        public var description: String {
            switch self {
            case .notStarted: "not started"
            case .awaitingActOne: "waiting for handshake act one"
            case .awaitingActTwo: "waiting for handshake act two"
            case .awaitingActThree: "waiting for handshake act three"
            case .awaitingInit: "waiting for the peer's init"
            case .ready: "ready"
            case .closed: "closed"
            }
        }
    }

    /// Identifies one of the owner's pings, so its pong can be matched to the caller.
    public struct PingToken: Hashable, Sendable {
        public let rawValue: UInt64
    }

    public struct RemotePeer: Equatable, Sendable {
        public var nodeID: PublicKey
        public var initMessage: InitMessage
        public var largeFrames: Bool
    }

    public enum Action: Equatable, Sendable {
        /// Bytes for the link, in order.
        case write([UInt8])
        /// Handshake and `init` exchange are done; application messages may flow.
        case ready(RemotePeer)
        /// An application message for the owner.
        case deliver([UInt8])
        case pongReceived(PingToken, roundTrip: Duration)
        /// Close the link once the writes before this action are out. Nothing follows.
        case close(LinkFailure)
    }

    private struct PendingPing {
        var token: PingToken?
        var pongLength: Int
        var sentAt: ContinuousClock.Instant
    }

    /// `init`, `ping` and `pong` are the link's own business.
    public static let reservedMessageTypes: Set<UInt16> = [MessageType.`init`, MessageType.ping, MessageType.pong]
    /// Our keepalive asks for an empty pong: the cheapest proof of life.
    static let keepalivePongLength: UInt16 = 0

    public let policy: LinkPolicy
    public private(set) var stage: Stage = .notStarted
    /// Set once the link is closed, by either side.
    public private(set) var closeReason: LinkFailure?
    /// While the link's outbound buffer is over its limit, pings are not answered:
    /// a peer that pings but never reads must not grow our memory.
    public var outboundCongested = false

    private var session: PeerSession
    private let knownFeatures: Set<Int>
    private let handshakeDeadline: ContinuousClock.Instant
    private var lastReceivedAt: ContinuousClock.Instant
    private var pendingPings: [PendingPing] = []
    private var pingFlood: PingFloodLimiter
    private var nextPingToken: UInt64 = 0

    public init(role: PeerSession.Role, localKey: any StaticKeyAgreement, localInit: InitMessage, policy: LinkPolicy,
                now: ContinuousClock.Instant) {
        self.policy = policy
        session = PeerSession(role: role, localStatic: localKey, localInit: localInit,
                              maximumMessageLength: policy.maximumMessageLength)
        knownFeatures = policy.knownFeatures(localInit: localInit)
        pingFlood = PingFloodLimiter(limit: policy.maximumPingsPerWindow, window: policy.pingFloodWindow)
        handshakeDeadline = now + policy.handshakeTimeout
        lastReceivedAt = now
    }

    /// The peer's node id: known from the start when we dial, after act three otherwise.
    public var remoteNodeID: PublicKey? { session.remoteStatic }

    /// The frame format of application messages (fixed once `ready`).
    public var frameFormat: FrameFormat { session.largeFramesActive ? .large : .bolt }

    /// When `timerFired` next has work; nil once closed.
    public var nextDeadline: ContinuousClock.Instant? {
        switch stage {
        case .closed:
            return nil
        case .ready:
            if let oldest = pendingPings.first { return oldest.sentAt + policy.pongTimeout }
            return lastReceivedAt + policy.idlePingInterval
        default:
            return handshakeDeadline
        }
    }

    /// Begins the link: the initiator's act one; nothing for the responder.
    public mutating func start() -> [Action] {
        guard stage == .notStarted else { return [] }
        switch session.role {
        case .initiator:
            stage = .awaitingActTwo
            do {
                return [.write(try session.start())]
            } catch {
                return fail(.session(error))
            }
        case .responder:
            stage = .awaitingActOne
            return []
        }
    }

    /// Bytes read from the link.
    public mutating func receive(_ bytes: [UInt8], now: ContinuousClock.Instant) -> [Action] {
        guard stage != .closed, stage != .notStarted else { return [] }
        lastReceivedAt = now
        let events: [PeerSession.Event]
        do {
            events = try session.receive(bytes)
        } catch {
            return fail(.session(error))
        }
        var actions: [Action] = []
        for event in events {
            switch event {
            case let .write(bytes):
                actions.append(.write(bytes))
                if stage == .awaitingActOne { stage = .awaitingActThree }
            case .established:
                stage = .awaitingInit
            case let .remoteInit(initMessage):
                if let failure = check(initMessage) {
                    return actions + fail(failure, warnPeer: true)
                }
                stage = .ready
                guard let nodeID = session.remoteStatic else { return actions + fail(.local("session without a remote key")) }
                actions.append(.ready(RemotePeer(nodeID: nodeID, initMessage: initMessage, largeFrames: session.largeFramesActive)))
            case let .message(message):
                handle(message, now: now, into: &actions)
                if stage == .closed { return actions }
            }
        }
        return actions
    }

    /// The adapter's timer expired (early or late calls are harmless).
    public mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        switch stage {
        case .closed, .notStarted:
            return []
        case .ready:
            if let oldest = pendingPings.first, now >= oldest.sentAt + policy.pongTimeout {
                return fail(.pongTimedOut(after: policy.pongTimeout))
            }
            guard pendingPings.isEmpty, now >= lastReceivedAt + policy.idlePingInterval else { return [] }
            var actions: [Action] = []
            sendPing(pongLength: Self.keepalivePongLength, token: nil, now: now, into: &actions)
            return actions
        default:
            return now >= handshakeDeadline ? fail(.handshakeTimedOut(after: policy.handshakeTimeout, stage: stage)) : []
        }
    }

    /// One of the owner's pings; its pong comes back as `.pongReceived` with this token.
    public mutating func ping(pongBytes: UInt16, now: ContinuousClock.Instant) throws(TransportError) -> (PingToken, [Action]) {
        guard pongBytes < Ping.noPongThreshold else { throw .invalidPongLength(pongBytes) }
        guard stage == .ready else { throw .sessionNotReady(reason: closeReason?.description ?? stage.description) }
        guard pendingPings.count < policy.maximumPendingPings else { throw .tooManyPendingPings(limit: policy.maximumPendingPings) }
        let token = PingToken(rawValue: nextPingToken)
        nextPingToken += 1
        var actions: [Action] = []
        sendPing(pongLength: pongBytes, token: token, now: now, into: &actions)
        return (token, actions)
    }

    /// Checks a batch of the owner's messages and returns its size on the link. One
    /// rule for every caller: the transport checks before queueing, the core again
    /// before encrypting.
    public static func framedLength(of messages: [[UInt8]], format: FrameFormat) throws(TransportError) -> Int {
        var total = 0
        for (index, message) in messages.enumerated() {
            guard message.count >= 2 else { throw .messageTooShort(index: index, length: message.count) }
            guard message.count <= format.maximumMessageLength else {
                throw .messageTooLarge(index: index, length: message.count, limit: format.maximumMessageLength)
            }
            let type = UInt16(message[0]) << 8 | UInt16(message[1])
            guard !reservedMessageTypes.contains(type) else { throw .reservedMessageType(index: index, type: type) }
            total += format.frameSize(forMessageLength: message.count)
        }
        return total
    }

    /// Encrypts the owner's messages, in order, into one buffer.
    public mutating func encrypt(_ messages: [[UInt8]], appendingTo output: inout [UInt8]) throws(TransportError) {
        guard stage == .ready else { throw .sessionNotReady(reason: closeReason?.description ?? stage.description) }
        output.reserveCapacity(output.count + (try Self.framedLength(of: messages, format: frameFormat)))
        for message in messages {
            do {
                try session.encrypt(message, appendingTo: &output)
            } catch {
                throw .sessionNotReady(reason: error.description)
            }
        }
    }

    /// Our side closes the link (no warning: the peer did nothing wrong).
    public mutating func close(_ reason: LinkFailure) -> [Action] {
        guard stage != .closed else { return [] }
        return fail(reason)
    }

    /// The link reached end-of-file or failed; returns why, for the log and the owner.
    public mutating func linkClosed() -> LinkFailure {
        if let closeReason { return closeReason }
        let reason = LinkFailure.closedByPeer(stage: stage)
        stage = .closed
        closeReason = reason
        return reason
    }

    // MARK: - Inbound messages

    private func check(_ remoteInit: InitMessage) -> LinkFailure? {
        LinkRules.incompatibility(of: remoteInit, localInit: session.localInit, knownFeatures: knownFeatures)
    }

    private mutating func handle(_ message: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        switch LinkRules.classify(message, policy: policy, pingFlood: &pingFlood, now: now) {
        case let .failure(reason):
            actions += fail(reason, warnPeer: true)
        case let .success(.ping(ping)):
            if let pong = ping.reply, !outboundCongested {
                appendFrame(Message.pong(pong).encode(), into: &actions)
            }
        case let .success(.pong(pong)):
            guard let pending = pendingPings.first, pending.pongLength == pong.ignored.count else {
                actions += fail(.unexpectedPong(length: pong.ignored.count), warnPeer: true)
                return
            }
            pendingPings.removeFirst()
            if let token = pending.token {
                actions.append(.pongReceived(token, roundTrip: now - pending.sentAt))
            }
        case .success(.`init`):
            actions += fail(.duplicateInit, warnPeer: true)
        case .success(.application):
            actions.append(.deliver(message))
        }
    }

    // MARK: - Outbound

    private mutating func sendPing(pongLength: UInt16, token: PingToken?, now: ContinuousClock.Instant, into actions: inout [Action]) {
        appendFrame(Message.ping(Ping(numPongBytes: pongLength)).encode(), into: &actions)
        if stage != .closed {
            pendingPings.append(PendingPing(token: token, pongLength: Int(pongLength), sentAt: now))
        }
    }

    private mutating func appendFrame(_ message: [UInt8], into actions: inout [Action]) {
        do {
            actions.append(.write(try session.encrypt(message)))
        } catch {
            actions += fail(.session(error))
        }
    }

    /// Ends the link. With `warnPeer` (the peer broke a rule after `init`), a `warning`
    /// naming the reason goes out first, as BOLT-1 suggests.
    private mutating func fail(_ reason: LinkFailure, warnPeer: Bool = false) -> [Action] {
        var actions: [Action] = []
        if warnPeer, session.remoteInit != nil, session.isEstablished {
            let warning = WarningMessage(allChannels: String(reason.description.prefix(1000)))
            if let frame = try? session.encrypt(Message.warning(warning).encode()) {
                actions.append(.write(frame))
            }
        }
        stage = .closed
        closeReason = reason
        pendingPings.removeAll()
        actions.append(.close(reason))
        return actions
    }
}
