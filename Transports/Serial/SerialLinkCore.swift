import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire

/// Everything one serial line decides, with no IO: line framing (COBS + CRC-32 around each
/// datagram), the `DatagramSession`, the `init` exchange on top of it, pings and pongs,
/// and what a responder or a persistent initiator does when a session ends. The adapter
/// feeds it bytes read from the line and the time, and carries out the `Action`s.
///
/// The `init` exchange over a lossy link: each side sends its `init` as soon as the keys
/// are in place and sends it again on a timer until it knows the peer has it. A side that
/// has the peer's acceptable `init` says so with a ping; a side that has never seen our
/// `init` drops everything but `init`, so any other message from the peer (that ping, its
/// pong, an application message) proves the peer has ours. A side is ready once it has
/// both the peer's `init` and that proof, so both ends agree: a peer that refuses our
/// features never acknowledges, and neither side reports a session. A repeated `init` is
/// answered with the ping again, never with an `init`, so two sides cannot keep each other busy.
struct SerialLinkCore {
    struct Settings: Sendable {
        var datagramPolicy: DatagramPolicy
        var linkPolicy: LinkPolicy
        /// The first wait before our `init` is sent again; doubles up to the handshake's limit.
        var initRetryInterval: Duration
        /// Delay before a persistent initiator whose handshake timed out tries again.
        var redialDelay: Duration
    }

    enum Role: Equatable {
        /// Answers whichever node starts a handshake on the line.
        case responder
        /// Dials `remote`; with `persistent`, starts over whenever a session ends.
        case initiator(remote: PublicKey, persistent: Bool)
    }

    struct PingToken: Hashable, Sendable {
        let rawValue: UInt64
    }

    enum Action: Equatable {
        /// Bytes for the line (whole frames).
        case transmit([UInt8])
        /// The `init` exchange completed; application messages flow.
        case ready(nodeID: PublicKey, remoteInit: InitMessage)
        case deliver(from: PublicKey, [UInt8])
        /// A ready session ended (the line stays open). `willResume`: a new session follows by itself.
        case lost(nodeID: PublicKey, reason: String, willResume: Bool)
        /// An initiator's handshake failed before it was ready.
        case handshakeFailed(reason: String, willRetry: Bool)
        case pongReceived(PingToken, roundTrip: Duration)
        case pingUnanswered(PingToken)
        /// A log line: routine (session changes) or notable (noise, a peer breaking a rule).
        case log(notable: Bool, String)
    }

    private enum InitExchange {
        /// No keys yet.
        case idle
        /// Keys are in place; our `init` is out, the peer's has not arrived.
        case awaitingRemoteInit(sent: Int, nextRetry: ContinuousClock.Instant)
        /// We have the peer's `init`; ready once `acknowledged` (the peer has ours).
        case ready(remote: PublicKey, remoteInit: InitMessage, acknowledged: Bool, sent: Int,
                   nextRetry: ContinuousClock.Instant)
    }

    private struct PendingPing {
        let token: PingToken?
        let pongLength: Int
        let sentAt: ContinuousClock.Instant
    }

    let role: Role
    let settings: Settings
    private let localKey: any StaticKeyAgreement
    private let localInitBytes: [UInt8]
    private let knownFeatures: Set<Int>
    private var session: DatagramSession
    private var decoder: LineFrameDecoder
    private var exchange = InitExchange.idle
    private var pendingPings: [PendingPing] = []
    private var recentPings: [ContinuousClock.Instant] = []
    private var nextPingToken: UInt64 = 0
    /// A persistent initiator's next attempt after its handshake timed out.
    private var redialAt: ContinuousClock.Instant?
    private var stopped = false
    private var lastTransmitAt: ContinuousClock.Instant?
    private var lastNoiseNotice: ContinuousClock.Instant?
    private var noiseAtLastNotice = 0

    private(set) var sessionsStarted = 1
    /// Messages dropped because they came before the peer's `init` or broke a rule.
    private(set) var messagesDropped = 0
    /// Statistics of the sessions that ended, summed with the current one's by `statistics`.
    private var previousStatistics = DatagramStatistics()

    init(role: Role, localKey: any StaticKeyAgreement, localInit: InitMessage, settings: Settings) throws(DatagramSessionError) {
        self.role = role
        self.settings = settings
        self.localKey = localKey
        localInitBytes = Message.`init`(localInit).encode()
        knownFeatures = settings.linkPolicy.knownFeatures(localInit: localInit)
        session = try Self.makeSession(role: role, localKey: localKey, policy: settings.datagramPolicy)
        decoder = LineFrameDecoder(maximumDatagramSize: settings.datagramPolicy.maximumDatagramSize)
    }

    private static func makeSession(role: Role, localKey: any StaticKeyAgreement,
                                    policy: DatagramPolicy) throws(DatagramSessionError) -> DatagramSession {
        switch role {
        case .responder: try DatagramSession(role: .responder, localStatic: localKey, policy: policy)
        case let .initiator(remote, _): try DatagramSession(role: .initiator(remoteStatic: remote), localStatic: localKey, policy: policy)
        }
    }

    /// The peer of a ready link (both `init`s exchanged and acknowledged).
    var remoteNodeID: PublicKey? {
        if case let .ready(remote, _, true, _, _) = exchange { return remote }
        return nil
    }

    var isReady: Bool { remoteNodeID != nil }
    var stage: DatagramSessionStage { session.stage }
    var framesDecoded: Int { decoder.framesDecoded }
    /// Line frames that failed COBS or CRC (noise), by reason.
    var frameDrops: [LineFrameError: Int] { decoder.drops }
    var framesDropped: Int { decoder.framesDropped }

    var statistics: DatagramStatistics {
        var total = previousStatistics
        let current = session.statistics
        total.datagramsSent += current.datagramsSent
        total.datagramsReceived += current.datagramsReceived
        total.messagesSent += current.messagesSent
        total.messagesDelivered += current.messagesDelivered
        total.keepalivesSent += current.keepalivesSent
        total.handshakesCompleted += current.handshakesCompleted
        total.incompleteMessagesDropped += current.incompleteMessagesDropped
        total.drops.merge(current.drops, uniquingKeysWith: +)
        return total
    }

    var nextDeadline: ContinuousClock.Instant? {
        guard !stopped else { return nil }
        var candidates: [ContinuousClock.Instant?] = [session.nextDeadline, redialAt, pendingPings.first.map {
            $0.sentAt + settings.linkPolicy.pongTimeout
        }]
        switch exchange {
        case .idle: break
        case let .awaitingRemoteInit(_, nextRetry): candidates.append(nextRetry)
        case let .ready(_, _, acknowledged, _, nextRetry): if !acknowledged { candidates.append(nextRetry) }
        }
        return candidates.compactMap { $0 }.min()
    }

    // MARK: - Driving

    /// An initiator's act one; nothing for a responder.
    mutating func start(now: ContinuousClock.Instant) -> [Action] {
        var actions: [Action] = []
        apply(session.start(now: now), now: now, into: &actions)
        return actions
    }

    /// Bytes read from the line.
    mutating func receive(_ bytes: [UInt8], now: ContinuousClock.Instant) -> [Action] {
        guard !stopped else { return [] }
        var actions: [Action] = []
        for datagram in decoder.append(bytes) {
            apply(session.receive(datagram, now: now), now: now, into: &actions)
        }
        reportNoise(now: now, into: &actions)
        return actions
    }

    mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        guard !stopped else { return [] }
        var actions: [Action] = []
        if let redialAt, now >= redialAt {
            self.redialAt = nil
            restartSession(now: now, into: &actions)
        }
        if let deadline = session.nextDeadline, now >= deadline {
            apply(session.timerFired(now: now), now: now, into: &actions)
        }
        while let oldest = pendingPings.first, now >= oldest.sentAt + settings.linkPolicy.pongTimeout {
            pendingPings.removeFirst()
            if let token = oldest.token { actions.append(.pingUnanswered(token)) }
        }
        let attempts = settings.datagramPolicy.handshakeAttempts
        switch exchange {
        case .idle:
            break
        case let .awaitingRemoteInit(sent, nextRetry) where now >= nextRetry:
            guard sent < attempts else {
                // Keys without an `init` are of no use to anyone: start over.
                _ = session.close()
                sessionClosed(reason: "the peer's init did not arrive after \(sent) of ours", now: now, into: &actions)
                break
            }
            exchange = .awaitingRemoteInit(sent: sent + 1, nextRetry: now + retryInterval(afterSending: sent + 1))
            sendMessage(localInitBytes, now: now, into: &actions)
        case let .ready(remote, remoteInit, false, sent, nextRetry) where now >= nextRetry:
            guard sent < attempts else {
                // The peer never showed it has our `init` (or refuses it): start over.
                _ = session.close()
                sessionClosed(reason: "the peer did not acknowledge our init after \(sent) of them", now: now, into: &actions)
                break
            }
            exchange = .ready(remote: remote, remoteInit: remoteInit, acknowledged: false, sent: sent + 1,
                              nextRetry: now + retryInterval(afterSending: sent + 1))
            sendMessage(localInitBytes, now: now, into: &actions)
        default:
            break
        }
        return actions
    }

    /// Frames the owner's messages; throws before anything is sealed when one is unfit.
    mutating func send(_ messages: [[UInt8]], now: ContinuousClock.Instant) throws(TransportError) -> [UInt8] {
        guard let remote = remoteNodeID else { throw .sessionNotReady(reason: "the init exchange has not completed") }
        try Self.check(messages, policy: settings.datagramPolicy)
        var datagrams: [[UInt8]] = []
        for message in messages {
            do {
                datagrams += try session.send(message, now: now)
            } catch {
                throw .connectionClosed(remote, reason: error.description)
            }
        }
        return lineBytes(for: datagrams, now: now)
    }

    /// One rule for every caller: at least a type, within the session's limit, not a
    /// type the link keeps for itself.
    static func check(_ messages: [[UInt8]], policy: DatagramPolicy) throws(TransportError) {
        for (index, message) in messages.enumerated() {
            guard message.count >= 2 else { throw .messageTooShort(index: index, length: message.count) }
            guard message.count <= policy.maximumMessageLength else {
                throw .messageTooLarge(index: index, length: message.count, limit: policy.maximumMessageLength)
            }
            let type = UInt16(message[0]) << 8 | UInt16(message[1])
            guard !PeerLinkCore.reservedMessageTypes.contains(type) else { throw .reservedMessageType(index: index, type: type) }
        }
    }

    /// The most bytes `messages` can take on the line, for the write queue's limit.
    static func lineBytesBound(of messages: [[UInt8]], policy: DatagramPolicy) -> Int {
        messages.reduce(0) { total, message in
            let count = policy.datagramCount(forMessageLength: message.count)
            let datagram = count == 1 ? DatagramFormat.datagramSize(forMessageLength: message.count) : policy.maximumDatagramSize
            return total + count * LineFraming.maximumEncodedSize(forDatagramLength: datagram)
        }
    }

    mutating func ping(pongBytes: UInt16, now: ContinuousClock.Instant) throws(TransportError) -> (PingToken, [UInt8]) {
        guard pongBytes < Ping.noPongThreshold else { throw .invalidPongLength(pongBytes) }
        guard isReady else { throw .sessionNotReady(reason: "the init exchange has not completed") }
        guard pendingPings.count < settings.linkPolicy.maximumPendingPings else {
            throw .tooManyPendingPings(limit: settings.linkPolicy.maximumPendingPings)
        }
        let token = PingToken(rawValue: nextPingToken)
        nextPingToken += 1
        var actions: [Action] = []
        sendPing(pongLength: pongBytes, token: token, now: now, into: &actions)
        let line = actions.reduce(into: [UInt8]()) { line, action in
            if case let .transmit(bytes) = action { line += bytes }
        }
        return (token, line)
    }

    /// Ends everything on this line; the peer is not told (see `DatagramSession.close`).
    mutating func stop() -> [Action] {
        guard !stopped else { return [] }
        stopped = true
        var actions: [Action] = []
        let remote = remoteNodeID
        _ = session.close()
        exchange = .idle
        for ping in pendingPings { if let token = ping.token { actions.append(.pingUnanswered(token)) } }
        pendingPings.removeAll()
        if let remote { actions.append(.lost(nodeID: remote, reason: "disconnected by us", willResume: false)) }
        return actions
    }

    /// The owner drops this responder's session; the line waits for the next handshake.
    mutating func resetResponder(now: ContinuousClock.Instant) -> [Action] {
        guard !stopped, role == .responder else { return [] }
        var actions: [Action] = []
        _ = session.close()
        endExchange(reason: "disconnected by us", willResume: true, into: &actions)
        restartSession(now: now, into: &actions)
        return actions
    }

    // MARK: - Session actions

    private mutating func apply(_ sessionActions: [DatagramSession.Action], now: ContinuousClock.Instant,
                                into actions: inout [Action]) {
        for action in sessionActions {
            switch action {
            case let .send(datagram):
                actions.append(.transmit(lineBytes(for: [datagram], now: now)))
            case let .established(remoteStatic, epoch):
                if let previous = remoteNodeID {
                    // A fresh handshake replaced the keys (the peer restarted): its `init` is due again.
                    let reason = previous == remoteStatic ? "the peer started a new session" : "another node took over the line"
                    actions.append(.lost(nodeID: previous, reason: reason, willResume: true))
                }
                actions.append(.log(notable: false, "session \(epoch) with \(remoteStatic) established; exchanging init"))
                pendingPings.removeAll()
                exchange = .awaitingRemoteInit(sent: 1, nextRetry: now + retryInterval(afterSending: 1))
                sendMessage(localInitBytes, now: now, into: &actions)
            case let .deliver(message):
                handle(message, now: now, into: &actions)
            case let .restarting(failure):
                endExchange(reason: failure.description, willResume: true, into: &actions)
            case let .closed(failure):
                sessionClosed(reason: failure.description, now: now, into: &actions)
            }
        }
    }

    private mutating func sessionClosed(reason: String, now: ContinuousClock.Instant, into actions: inout [Action]) {
        switch role {
        case .responder:
            // The line stays ours: wait for the next act one from whoever is there.
            endExchange(reason: reason, willResume: true, into: &actions)
            restartSession(now: now, into: &actions)
        case let .initiator(_, persistent):
            let wasReady = isReady
            endExchange(reason: reason, willResume: persistent, into: &actions)
            if !wasReady { actions.append(.handshakeFailed(reason: reason, willRetry: persistent)) }
            if persistent {
                redialAt = now + settings.redialDelay
            } else {
                stopped = true
            }
        }
    }

    private mutating func endExchange(reason: String, willResume: Bool, into actions: inout [Action]) {
        if let remote = remoteNodeID {
            actions.append(.lost(nodeID: remote, reason: reason, willResume: willResume))
        }
        exchange = .idle
        for ping in pendingPings { if let token = ping.token { actions.append(.pingUnanswered(token)) } }
        pendingPings.removeAll()
    }

    private mutating func restartSession(now: ContinuousClock.Instant, into actions: inout [Action]) {
        let statistics = self.statistics
        do {
            session = try Self.makeSession(role: role, localKey: localKey, policy: settings.datagramPolicy)
        } catch {
            // The policy was valid when this core was made; it cannot have changed.
            stopped = true
            actions.append(.log(notable: true, "cannot start a new session: \(error)"))
            return
        }
        previousStatistics = statistics
        sessionsStarted += 1
        apply(session.start(now: now), now: now, into: &actions)
    }

    // MARK: - Messages

    private mutating func handle(_ message: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        guard message.count >= 2 else { return dropMessage("a message shorter than its 2-byte type", into: &actions) }
        let type = UInt16(message[0]) << 8 | UInt16(message[1])
        if type == MessageType.`init` { return receiveInit(message, now: now, into: &actions) }
        guard case let .ready(remote, remoteInit, acknowledged, sent, nextRetry) = exchange else {
            // Sent after the peer's `init`, which was lost or is late: the peer's
            // message layer sends it again.
            messagesDropped += 1
            return
        }
        if !acknowledged, type == MessageType.warning || type == MessageType.error {
            // A peer that refuses our `init` says why; that is no acknowledgement.
            let text = (try? Message.decode(message)).map { message -> String in
                switch message {
                case let .warning(warning): warning.printableData
                case let .error(error): error.printableData
                default: ""
                }
            } ?? "(malformed)"
            messagesDropped += 1
            actions.append(.log(notable: true, "the peer objects before the link is ready: \(text.prefix(200))"))
            return
        }
        if !acknowledged {
            // The peer only sends this after it has our `init`: the link is ready.
            exchange = .ready(remote: remote, remoteInit: remoteInit, acknowledged: true, sent: sent, nextRetry: nextRetry)
            actions.append(.ready(nodeID: remote, remoteInit: remoteInit))
        }
        switch type {
        case MessageType.ping:
            guard case let .ping(ping)? = try? Message.decode(message) else { return dropMessage("a malformed ping", into: &actions) }
            guard admitPing(now: now) else { return dropMessage("a ping over the flood limit", into: &actions) }
            if let pong = ping.reply { sendMessage(Message.pong(pong).encode(), now: now, into: &actions) }
        case MessageType.pong:
            guard case let .pong(pong)? = try? Message.decode(message) else { return dropMessage("a malformed pong", into: &actions) }
            // Pings or pongs may be lost: the oldest ping asking for this length is the one answered.
            guard let index = pendingPings.firstIndex(where: { $0.pongLength == pong.ignored.count }) else {
                return dropMessage("a pong nobody asked for", into: &actions)
            }
            let pending = pendingPings.remove(at: index)
            if let token = pending.token { actions.append(.pongReceived(token, roundTrip: now - pending.sentAt)) }
        default:
            if type & 1 == 0, !settings.linkPolicy.acceptedEvenMessageTypes.contains(type) {
                // On a stream this closes the link; here a session costs a handshake on a
                // slow line, so the message is refused and the peer told why.
                let text = "unknown even message type \(type)"
                sendMessage(Message.warning(WarningMessage(allChannels: text)).encode(), now: now, into: &actions)
                return dropMessage(text, into: &actions)
            }
            actions.append(.deliver(from: remote, message))
        }
    }

    private mutating func receiveInit(_ message: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        guard case let .`init`(remoteInit)? = try? Message.decode(message) else {
            return dropMessage("a malformed init", into: &actions)
        }
        switch exchange {
        case .idle:
            messagesDropped += 1
        case let .awaitingRemoteInit(sent, nextRetry):
            do {
                try remoteInit.validateFeatures(known: knownFeatures)
            } catch {
                // The peer's features will not change by resending: say so and keep refusing.
                let text = "incompatible init: \(error)"
                sendMessage(Message.warning(WarningMessage(allChannels: String(text.prefix(1000)))).encode(), now: now, into: &actions)
                return dropMessage(text, into: &actions)
            }
            guard let remote = session.remoteStatic else { return dropMessage("an init without a session", into: &actions) }
            exchange = .ready(remote: remote, remoteInit: remoteInit, acknowledged: false, sent: sent, nextRetry: nextRetry)
            // Tells the peer we have its `init`; its pong (or its own ping) tells us it has ours.
            sendPing(pongLength: 0, token: nil, now: now, into: &actions)
        case .ready:
            // The peer has not yet seen that we have its `init`: show it again (a ping, not
            // an `init`, so two sides never answer each other forever).
            guard pendingPings.count < settings.linkPolicy.maximumPendingPings else { return }
            sendPing(pongLength: 0, token: nil, now: now, into: &actions)
        }
    }

    private mutating func dropMessage(_ what: String, into actions: inout [Action]) {
        messagesDropped += 1
        actions.append(.log(notable: true, "dropped \(what)"))
    }

    private mutating func admitPing(now: ContinuousClock.Instant) -> Bool {
        let windowStart = now - settings.linkPolicy.pingFloodWindow
        recentPings.removeAll { $0 <= windowStart }
        guard recentPings.count < settings.linkPolicy.maximumPingsPerWindow else { return false }
        recentPings.append(now)
        return true
    }

    private mutating func sendPing(pongLength: UInt16, token: PingToken?, now: ContinuousClock.Instant, into actions: inout [Action]) {
        sendMessage(Message.ping(Ping(numPongBytes: pongLength)).encode(), now: now, into: &actions)
        pendingPings.append(PendingPing(token: token, pongLength: Int(pongLength), sentAt: now))
    }

    /// The link's own messages; a failure to seal one is left to the session's timers.
    private mutating func sendMessage(_ message: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        guard let datagrams = try? session.send(message, now: now) else { return }
        actions.append(.transmit(lineBytes(for: datagrams, now: now)))
    }

    /// Line frames for `datagrams`. After a quiet spell the first frame gets a leading
    /// delimiter: noise that came in meanwhile then ends there instead of spoiling the
    /// frame. In bulk transfer (no quiet spells) this costs nothing.
    private mutating func lineBytes(for datagrams: [[UInt8]], now: ContinuousClock.Instant) -> [UInt8] {
        var line: [UInt8] = []
        if let last = lastTransmitAt, now - last < Self.quietSpell {} else { line.append(LineFraming.delimiter) }
        lastTransmitAt = now
        for datagram in datagrams { LineFraming.encode(datagram, appendingTo: &line) }
        return line
    }

    static let quietSpell: Duration = .milliseconds(50)

    private func retryInterval(afterSending count: Int) -> Duration {
        var interval = settings.initRetryInterval
        for _ in 1..<max(count, 1) where interval < settings.datagramPolicy.handshakeRetryIntervalLimit {
            interval *= 2
        }
        return min(interval, settings.datagramPolicy.handshakeRetryIntervalLimit)
    }

    /// Noise on the line shows as one log line at most every ten seconds, not one per frame.
    private mutating func reportNoise(now: ContinuousClock.Instant, into actions: inout [Action]) {
        let dropped = decoder.framesDropped
        guard dropped > noiseAtLastNotice else { return }
        if let last = lastNoiseNotice, now - last < .seconds(10) { return }
        let reason = decoder.lastError.map { ": last, \($0)" } ?? ""
        actions.append(.log(notable: true, "\(dropped - noiseAtLastNotice) line frame(s) dropped as noise\(reason)"))
        noiseAtLastNotice = dropped
        lastNoiseNotice = now
    }
}
