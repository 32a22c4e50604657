import LNPCrypto

/// A Noise_XK session over a link that loses, duplicates and reorders datagrams (UDP, or
/// a serial line under `LineFraming`), as a sans-IO state machine: the owner feeds it the
/// datagrams it reads and the current time, sends the datagrams it is given, and arms one
/// timer for `nextDeadline`.
///
/// The handshake is BOLT-8's (same acts, same keys proven), one act per datagram:
/// - the initiator sends act one again on a timer with backoff, a bounded number of times;
/// - the responder answers a repeated act one with the very same act two, a bounded number
///   of times, and answers nothing larger than what it received;
/// - after act two the initiator may send at once; it sends act three again, with the
///   datagrams sent so far, until anything authentic arrives from the responder, who
///   confirms act three with a keepalive;
/// - a new act one on an established session starts a second handshake beside it; only
///   when that one completes does it replace the old keys, so a forged act one cannot end
///   a session (a restarted initiator re-establishes; a restarted responder is noticed by
///   the initiator's dead-peer timer, after which the initiator starts over by itself).
///
/// Each transport datagram names its own counter nonce (see `DatagramFormat`) and passes a
/// replay window, so loss does not desynchronise anything. This layer may lose messages
/// (the message layer above retries, acknowledges and deduplicates), but it never
/// delivers one that is corrupted, replayed or forged. No `init` exchange runs here: the
/// owner may send one as its first message if it needs feature negotiation.
public struct DatagramSession: Sendable {
    public enum Action: Equatable, Sendable {
        /// One datagram for the link.
        case send([UInt8])
        /// Keys are in place; `epoch` counts the handshakes this session has completed, so
        /// the owner can tell a re-established session from the first.
        case established(remoteStatic: PublicKey, epoch: Int)
        /// A whole message from the peer.
        case deliver([UInt8])
        /// The initiator dropped its keys and is starting a new handshake.
        case restarting(DatagramSessionFailure)
        /// The session is over; nothing follows.
        case closed(DatagramSessionFailure)
    }

    private struct InitiatorAttempt: Sendable {
        var handshake: HandshakeInitiator
        let actOne: [UInt8]
        var attempts: Int
        var nextRetry: ContinuousClock.Instant
    }

    private struct ResponderAttempt: Sendable {
        /// Has read act one; waits for act three.
        var handshake: HandshakeResponder
        let actOne: [UInt8]
        let actTwo: [UInt8]
        var repliesLeft: Int
        let expiresAt: ContinuousClock.Instant
        /// Transport datagrams that came before act three (reordered), tried once it is in.
        var early: [[UInt8]] = []
    }

    /// The initiator's act three until the responder proves it has the keys.
    private struct PendingConfirmation: Sendable {
        let actThree: [UInt8]
        var held: [[UInt8]] = []
        var attempts = 1
        var nextRetry: ContinuousClock.Instant
    }

    /// The responder's record of the handshake that made the current keys, to answer its repeats.
    private struct CompletedHandshake: Sendable {
        let actOne: [UInt8]
        let actTwo: [UInt8]
        let actThree: [UInt8]
        var repliesLeft: Int
    }

    private struct Link: Sendable {
        let remoteStatic: PublicKey
        let sendKey: DatagramKey
        let receiveKey: DatagramKey
        var sendCounter: UInt64 = 0
        var window = ReplayWindow()
        var reassembler: DatagramReassembler
        var lastReceivedAt: ContinuousClock.Instant
        var lastSentAt: ContinuousClock.Instant
        var confirmation: PendingConfirmation?
        var completed: CompletedHandshake?
        var rehandshake: ResponderAttempt?
    }

    private enum State: Sendable {
        case notStarted
        case awaitingActOne
        case awaitingActTwo(InitiatorAttempt)
        case awaitingActThree(ResponderAttempt)
        case established(Link)
        case closed(DatagramSessionFailure)
    }

    /// Counters stop well short of 2^64 so that restoring a truncated counter never overflows.
    static let counterLimit: UInt64 = 1 << 62

    public let role: PeerSession.Role
    public let policy: DatagramPolicy
    public private(set) var statistics = DatagramStatistics()
    /// The last handshake act that failed verification, for diagnostics.
    public private(set) var lastHandshakeError: HandshakeError?
    private let localStatic: any StaticKeyAgreement
    private var state: State
    private var epoch = 0

    public init(role: PeerSession.Role, localStatic: any StaticKeyAgreement, policy: DatagramPolicy = .udp) throws(DatagramSessionError) {
        try policy.validate()
        self.role = role
        self.policy = policy
        self.localStatic = localStatic
        switch role {
        case .initiator: state = .notStarted
        case .responder: state = .awaitingActOne
        }
    }

    public var stage: DatagramSessionStage {
        switch state {
        case .notStarted: .notStarted
        case .awaitingActOne: .awaitingActOne
        case .awaitingActTwo: .awaitingActTwo
        case .awaitingActThree: .awaitingActThree
        case .established: .established
        case .closed: .closed
        }
    }

    public var isEstablished: Bool { stage == .established }

    /// Established, and the peer has proven it holds the keys too (an initiator learns it
    /// from the first authentic datagram after act three; a responder knows at once).
    public var isConfirmed: Bool {
        if case let .established(link) = state { return link.confirmation == nil }
        return false
    }

    /// The peer's node key: known from the start when we dial, after act three otherwise.
    public var remoteStatic: PublicKey? {
        if case let .established(link) = state { return link.remoteStatic }
        if case let .initiator(remoteStatic) = role { return remoteStatic }
        return nil
    }

    /// Fragmented messages waiting for their missing pieces, and the bytes they hold.
    public var incompleteMessageCount: Int {
        if case let .established(link) = state { return link.reassembler.incompleteMessageCount }
        return 0
    }

    public var reassemblyBytes: Int {
        if case let .established(link) = state { return link.reassembler.bufferedBytes }
        return 0
    }

    /// Set once the session is closed.
    public var closeReason: DatagramSessionFailure? {
        if case let .closed(reason) = state { return reason }
        return nil
    }

    /// The initiator's act one; nothing for a responder or a session already started.
    public mutating func start(now: ContinuousClock.Instant) -> [Action] {
        guard case .notStarted = state else { return [] }
        return beginHandshake(now: now)
    }

    /// Our side ends the session. The peer is not told: on a lossy link it would learn
    /// nothing it can trust, and its own timers notice.
    public mutating func close() -> [Action] {
        if case .closed = state { return [] }
        return close(.closedLocally)
    }

    // MARK: - Sending

    /// Seals one message into the datagrams that carry it, fragmented when it does not fit
    /// one datagram. They may be lost; nothing here sends them again once confirmed.
    public mutating func send(_ message: [UInt8], now: ContinuousClock.Instant) throws(DatagramSessionError) -> [[UInt8]] {
        guard case .established(var link) = state else { throw .notEstablished(stage: stage) }
        guard message.count <= policy.maximumMessageLength else {
            throw .messageTooLarge(length: message.count, limit: policy.maximumMessageLength)
        }
        let count = policy.datagramCount(forMessageLength: message.count)
        if let confirmation = link.confirmation, confirmation.held.count + count > policy.earlyDatagramLimit {
            throw .awaitingConfirmation(heldDatagrams: confirmation.held.count)
        }
        guard link.sendCounter < Self.counterLimit - UInt64(count) else {
            // Unreachable in practice; a fresh handshake is the only safe way on.
            _ = close(.counterExhausted)
            throw .notEstablished(stage: .closed)
        }
        // Release the state's copy so the link's buffers are not copied on write.
        state = .notStarted
        var datagrams: [[UInt8]] = []
        datagrams.reserveCapacity(count)
        if count == 1 {
            datagrams.append(link.sendKey.seal(kind: .message, counter: link.sendCounter, [], message[...]))
            link.sendCounter += 1
        } else {
            let capacity = policy.fragmentCapacity
            for index in 0..<count {
                let piece = message[(index * capacity)..<min(message.count, (index + 1) * capacity)]
                let fragmentHeader: [UInt8] = [UInt8(index >> 8), UInt8(index & 0xff), UInt8(count >> 8), UInt8(count & 0xff)]
                datagrams.append(link.sendKey.seal(kind: .fragment, counter: link.sendCounter, fragmentHeader, piece))
                link.sendCounter += 1
            }
        }
        link.lastSentAt = now
        link.confirmation?.held += datagrams
        state = .established(link)
        statistics.messagesSent += 1
        statistics.datagramsSent += datagrams.count
        return datagrams
    }

    // MARK: - Receiving

    /// One datagram from the link. Nothing a datagram holds can end the session: what does
    /// not verify is dropped and counted in `statistics`.
    public mutating func receive(_ datagram: [UInt8], now: ContinuousClock.Instant) -> [Action] {
        statistics.datagramsReceived += 1
        guard datagram.count <= policy.maximumDatagramSize else {
            drop(.oversized)
            return []
        }
        guard let first = datagram.first, let kind = DatagramFormat.Kind(rawValue: first) else {
            drop(.malformed)
            return []
        }
        if case .closed = state {
            drop(.sessionClosed)
            return []
        }
        var actions: [Action] = []
        switch kind {
        case .actOne: receiveActOne(datagram, now: now, into: &actions)
        case .actTwo: receiveActTwo(datagram, now: now, into: &actions)
        case .actThree: receiveActThree(datagram, now: now, into: &actions)
        case .message, .fragment, .keepalive: receiveTransport(datagram, kind: kind, now: now, into: &actions)
        }
        return actions
    }

    private mutating func receiveActOne(_ datagram: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        guard case .responder = role else { return drop(.unexpectedHandshake) }
        guard datagram.count == DatagramFormat.actOneSize else { return drop(.malformed) }
        switch state {
        case .awaitingActOne:
            guard let attempt = answerActOne(datagram, now: now, into: &actions) else { return }
            state = .awaitingActThree(attempt)
        case var .awaitingActThree(attempt):
            if attempt.actOne == datagram {
                guard repeatReply(attempt.actTwo, repliesLeft: &attempt.repliesLeft, into: &actions) else { return }
                state = .awaitingActThree(attempt)
            } else if let replacement = answerActOne(datagram, now: now, into: &actions) {
                // The initiator restarted mid-handshake: the new attempt replaces the old.
                state = .awaitingActThree(replacement)
            }
        case var .established(link):
            state = .notStarted
            defer { state = .established(link) }
            if var completed = link.completed, completed.actOne == datagram {
                guard repeatReply(completed.actTwo, repliesLeft: &completed.repliesLeft, into: &actions) else { return }
                link.completed = completed
            } else if var pending = link.rehandshake, pending.actOne == datagram {
                guard repeatReply(pending.actTwo, repliesLeft: &pending.repliesLeft, into: &actions) else { return }
                link.rehandshake = pending
            } else if let attempt = answerActOne(datagram, now: now, into: &actions) {
                // Perhaps the initiator restarted. The current keys stay until act three proves it.
                link.rehandshake = attempt
            }
        case .notStarted, .awaitingActTwo, .closed:
            drop(.unexpectedHandshake)
        }
    }

    private mutating func receiveActTwo(_ datagram: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        guard case let .initiator(remoteStatic) = role else { return drop(.unexpectedHandshake) }
        guard datagram.count == DatagramFormat.actTwoSize else { return drop(.malformed) }
        guard case let .awaitingActTwo(attempt) = state else { return drop(.unexpectedHandshake) }
        // Verify on a copy: a forged act two must not spend the real handshake.
        var handshake = attempt.handshake
        guard let outcome = verify({ () throws(HandshakeError) in try handshake.receiveActTwo(Array(datagram.dropFirst())) }) else { return }
        let actThree = [DatagramFormat.Kind.actThree.rawValue] + outcome.actThree
        var link = makeLink(outcome.result, remoteStatic: remoteStatic, now: now)
        link.confirmation = PendingConfirmation(actThree: actThree, nextRetry: now + policy.retryInterval(afterAttempt: 1))
        link.lastSentAt = now
        state = .established(link)
        statistics.datagramsSent += 1
        actions.append(.send(actThree))
        actions.append(.established(remoteStatic: remoteStatic, epoch: epoch))
    }

    private mutating func receiveActThree(_ datagram: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) {
        guard case .responder = role else { return drop(.unexpectedHandshake) }
        guard datagram.count == DatagramFormat.actThreeSize else { return drop(.malformed) }
        switch state {
        case let .awaitingActThree(attempt):
            guard let link = completeHandshake(attempt, actThree: datagram, now: now) else { return }
            state = .established(link)
            announceEstablished(early: attempt.early, now: now, into: &actions)
        case var .established(link):
            if var completed = link.completed, completed.actThree == datagram {
                // Our confirmation was lost: confirm again (a keepalive is smaller than act three).
                guard completed.repliesLeft > 0 else { return drop(.replyLimitReached) }
                completed.repliesLeft -= 1
                link.completed = completed
                state = .notStarted
                actions.append(.send(keepalive(&link, now: now)))
                state = .established(link)
            } else if let attempt = link.rehandshake {
                guard let replacement = completeHandshake(attempt, actThree: datagram, now: now) else { return }
                state = .established(replacement)
                announceEstablished(early: attempt.early, now: now, into: &actions)
            } else {
                drop(.unexpectedHandshake)
            }
        case .notStarted, .awaitingActOne, .awaitingActTwo, .closed:
            drop(.unexpectedHandshake)
        }
    }

    private mutating func receiveTransport(_ datagram: [UInt8], kind: DatagramFormat.Kind, now: ContinuousClock.Instant,
                                           into actions: inout [Action]) {
        switch state {
        case var .established(link):
            state = .notStarted
            open(datagram, kind: kind, link: &link, now: now, into: &actions)
            state = .established(link)
        case var .awaitingActThree(attempt):
            // Act three may simply be late: keep a few, tried once the keys exist.
            // Duplicates must not crowd out the originals.
            guard !attempt.early.contains(datagram) else { return drop(.replayed) }
            guard attempt.early.count < policy.earlyDatagramLimit else { return drop(.noSession) }
            attempt.early.append(datagram)
            state = .awaitingActThree(attempt)
        case .notStarted, .awaitingActOne, .awaitingActTwo, .closed:
            drop(.noSession)
        }
    }

    private mutating func open(_ datagram: [UInt8], kind: DatagramFormat.Kind, link: inout Link, now: ContinuousClock.Instant,
                               into actions: inout [Action]) {
        guard datagram.count >= DatagramFormat.transportOverhead else { return drop(.malformed) }
        let truncated = UInt32(datagram[1]) << 24 | UInt32(datagram[2]) << 16 | UInt32(datagram[3]) << 8 | UInt32(datagram[4])
        let counter = DatagramFormat.restoreCounter(truncated, highestAccepted: link.window.highestAccepted)
        switch link.window.check(counter) {
        case .fresh: break
        case .duplicate: return drop(.replayed)
        case .tooOld: return drop(.tooOld)
        }
        var buffer = datagram
        guard link.receiveKey.open(&buffer, counter: counter) else {
            if var pending = link.rehandshake, pending.early.count < policy.earlyDatagramLimit {
                // Perhaps sealed with the keys of the handshake in progress.
                guard !pending.early.contains(datagram) else { return drop(.replayed) }
                pending.early.append(datagram)
                link.rehandshake = pending
                return
            }
            return drop(.authenticationFailed)
        }
        link.window.accept(counter)
        link.lastReceivedAt = now
        // Anything authentic from the responder proves it holds the keys.
        link.confirmation = nil
        switch kind {
        case .message:
            // Trim in place rather than copy the plaintext out.
            buffer.removeLast(DatagramFormat.tagSize)
            buffer.removeFirst(DatagramFormat.headerSize)
            statistics.messagesDelivered += 1
            actions.append(.deliver(buffer))
        case .fragment:
            let droppedBefore = link.reassembler.messagesDropped
            let plaintext = buffer[DatagramFormat.headerSize..<(buffer.count - DatagramFormat.tagSize)]
            switch link.reassembler.add(counter: counter, plaintext: plaintext, now: now) {
            case .incomplete: break
            case let .complete(message):
                statistics.messagesDelivered += 1
                actions.append(.deliver(message))
            case let .rejected(reason):
                drop(reason)
            }
            statistics.incompleteMessagesDropped += link.reassembler.messagesDropped - droppedBefore
        default:
            break
        }
    }

    // MARK: - Timers

    /// When `timerFired` next has work; nil when only a datagram can move the session.
    public var nextDeadline: ContinuousClock.Instant? {
        switch state {
        case .notStarted, .awaitingActOne, .closed:
            return nil
        case let .awaitingActTwo(attempt):
            return attempt.nextRetry
        case let .awaitingActThree(attempt):
            return attempt.expiresAt
        case let .established(link):
            let candidates: [ContinuousClock.Instant?] = [
                link.lastSentAt + policy.keepaliveInterval,
                link.lastReceivedAt + policy.deadPeerTimeout,
                link.confirmation?.nextRetry,
                link.reassembler.nextExpiry,
                link.rehandshake?.expiresAt,
            ]
            return candidates.compactMap { $0 }.min()
        }
    }

    /// The owner's timer expired; early or late calls are harmless.
    public mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        switch state {
        case .notStarted, .awaitingActOne, .closed:
            return []
        case var .awaitingActTwo(attempt):
            guard now >= attempt.nextRetry else { return [] }
            guard attempt.attempts < policy.handshakeAttempts else { return close(.handshakeTimedOut(attempts: attempt.attempts)) }
            attempt.attempts += 1
            attempt.nextRetry = now + policy.retryInterval(afterAttempt: attempt.attempts)
            state = .awaitingActTwo(attempt)
            statistics.datagramsSent += 1
            return [.send(attempt.actOne)]
        case let .awaitingActThree(attempt):
            return now >= attempt.expiresAt ? close(.halfOpenExpired(after: policy.halfOpenTimeout)) : []
        case var .established(link):
            if now >= link.lastReceivedAt + policy.deadPeerTimeout {
                let failure = DatagramSessionFailure.peerSilent(after: policy.deadPeerTimeout)
                guard case .initiator = role else { return close(failure) }
                return [.restarting(failure)] + beginHandshake(now: now)
            }
            state = .notStarted
            var actions: [Action] = []
            if var confirmation = link.confirmation, now >= confirmation.nextRetry {
                guard confirmation.attempts < policy.handshakeAttempts else {
                    return close(.handshakeTimedOut(attempts: confirmation.attempts))
                }
                confirmation.attempts += 1
                confirmation.nextRetry = now + policy.retryInterval(afterAttempt: confirmation.attempts)
                link.confirmation = confirmation
                // The held datagrams reuse their counters, so the replay window drops any copy that already arrived.
                actions.append(.send(confirmation.actThree))
                actions += confirmation.held.map(Action.send)
                statistics.datagramsSent += 1 + confirmation.held.count
                link.lastSentAt = now
            }
            if let pending = link.rehandshake, now >= pending.expiresAt {
                link.rehandshake = nil
            }
            let expired = link.reassembler.expire(now: now)
            statistics.incompleteMessagesDropped += expired
            if now >= link.lastSentAt + policy.keepaliveInterval {
                actions.append(.send(keepalive(&link, now: now)))
            }
            state = .established(link)
            return actions
        }
    }

    // MARK: - Handshake steps

    private mutating func beginHandshake(now: ContinuousClock.Instant) -> [Action] {
        guard case let .initiator(remoteStatic) = role else { return [] }
        var handshake = HandshakeInitiator(localStatic: localStatic, remoteStatic: remoteStatic)
        let act: [UInt8]
        do {
            act = try handshake.makeActOne()
        } catch {
            return close(.handshakeFailed(error))
        }
        let datagram = [DatagramFormat.Kind.actOne.rawValue] + act
        state = .awaitingActTwo(InitiatorAttempt(handshake: handshake, actOne: datagram, attempts: 1,
                                                 nextRetry: now + policy.retryInterval(afterAttempt: 1)))
        statistics.datagramsSent += 1
        return [.send(datagram)]
    }

    /// Verifies act one with a fresh ephemeral key and sends act two; nil (counted) when it does not verify.
    private mutating func answerActOne(_ datagram: [UInt8], now: ContinuousClock.Instant, into actions: inout [Action]) -> ResponderAttempt? {
        var handshake = HandshakeResponder(localStatic: localStatic)
        guard let act = verify({ () throws(HandshakeError) in try handshake.receiveActOne(Array(datagram.dropFirst())) }) else { return nil }
        let actTwo = [DatagramFormat.Kind.actTwo.rawValue] + act
        actions.append(.send(actTwo))
        statistics.datagramsSent += 1
        return ResponderAttempt(handshake: handshake, actOne: datagram, actTwo: actTwo,
                                repliesLeft: policy.handshakeReplyLimit, expiresAt: now + policy.halfOpenTimeout)
    }

    /// Runs one handshake step on an act from the link; a failure is a dropped datagram, not an error.
    private mutating func verify<Output>(_ step: () throws(HandshakeError) -> Output) -> Output? {
        do {
            return try step()
        } catch {
            lastHandshakeError = error
            drop(.handshakeRejected)
            return nil
        }
    }

    private mutating func repeatReply(_ reply: [UInt8], repliesLeft: inout Int, into actions: inout [Action]) -> Bool {
        guard repliesLeft > 0 else {
            drop(.replyLimitReached)
            return false
        }
        repliesLeft -= 1
        actions.append(.send(reply))
        statistics.datagramsSent += 1
        return true
    }

    /// Verifies act three on a copy (a forged one must not spend the attempt) and builds the keys.
    private mutating func completeHandshake(_ attempt: ResponderAttempt, actThree: [UInt8], now: ContinuousClock.Instant) -> Link? {
        var handshake = attempt.handshake
        guard let result = verify({ () throws(HandshakeError) in try handshake.receiveActThree(Array(actThree.dropFirst())) }) else { return nil }
        var link = makeLink(result, remoteStatic: result.remoteStatic, now: now)
        link.completed = CompletedHandshake(actOne: attempt.actOne, actTwo: attempt.actTwo, actThree: actThree,
                                            repliesLeft: policy.handshakeReplyLimit)
        return link
    }

    /// The responder's side of a completed handshake: tell the owner, confirm to the
    /// initiator, then open what arrived ahead of act three.
    private mutating func announceEstablished(early: [[UInt8]], now: ContinuousClock.Instant, into actions: inout [Action]) {
        guard case var .established(link) = state else { return }
        actions.append(.established(remoteStatic: link.remoteStatic, epoch: epoch))
        state = .notStarted
        actions.append(.send(keepalive(&link, now: now)))
        state = .established(link)
        for datagram in early {
            guard let kind = DatagramFormat.Kind(rawValue: datagram[0]) else { continue }
            receiveTransport(datagram, kind: kind, now: now, into: &actions)
        }
    }

    /// Both directions' keys, separated from BOLT-8's by their own HKDF label over the final chaining key.
    private mutating func makeLink(_ result: HandshakeResult, remoteStatic: PublicKey, now: ContinuousClock.Instant) -> Link {
        let (initiatorToResponder, responderToInitiator) = Hashing.hkdfTwoKeys(
            salt: result.sendingCipher.chainingKey, inputKeyMaterial: DatagramFormat.keyLabel)
        let isInitiator = if case .initiator = role { true } else { false }
        epoch += 1
        statistics.handshakesCompleted += 1
        return Link(
            remoteStatic: remoteStatic,
            sendKey: DatagramKey(secret: SecretBytes(copying: isInitiator ? initiatorToResponder : responderToInitiator)),
            receiveKey: DatagramKey(secret: SecretBytes(copying: isInitiator ? responderToInitiator : initiatorToResponder)),
            reassembler: DatagramReassembler(
                maximumMessageLength: policy.maximumMessageLength, maximumFragmentCount: policy.maximumFragmentCount,
                maximumIncompleteMessages: policy.maximumIncompleteMessages,
                maximumBufferedBytes: policy.maximumReassemblyBytes, timeout: policy.reassemblyTimeout),
            lastReceivedAt: now, lastSentAt: now)
    }

    private mutating func keepalive(_ link: inout Link, now: ContinuousClock.Instant) -> [UInt8] {
        let datagram = link.sendKey.seal(kind: .keepalive, counter: link.sendCounter, [], [UInt8]()[...])
        link.sendCounter += 1
        link.lastSentAt = now
        statistics.keepalivesSent += 1
        statistics.datagramsSent += 1
        return datagram
    }

    private mutating func drop(_ reason: DatagramDropReason) {
        statistics.drops[reason, default: 0] += 1
    }

    private mutating func close(_ reason: DatagramSessionFailure) -> [Action] {
        state = .closed(reason)
        return [.closed(reason)]
    }
}
