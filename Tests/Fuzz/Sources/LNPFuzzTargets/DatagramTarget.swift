import LNPCrypto
import LNPSession

/// `datagram`: `DatagramSession` and `DatagramEndpoint` (Noise_XK over a lossy datagram
/// link: UDP, or a serial line under `LineFraming`), under a small policy (128-byte
/// datagrams, 2 KiB messages, 4 incomplete messages in 4 KiB, 4 early datagrams, 3
/// handshake replies) so every bound is within the fuzzer's reach. Layout: `[mode][items]`.
///
/// Mode even — a responder (the BOLT-8 vector's responder key, so the vector's act one,
/// a seed, verifies) and an endpoint (3 sessions, 2 half-open) fed arbitrary datagrams.
/// Items: `0 [seconds]` fires the timers that much later; `1 [address][u16 n][n bytes]`
/// a datagram; `2 [address]` the vector's act one again.
/// Properties: nothing is delivered or established (act three cannot be forged); every
/// datagram is counted as received, and as dropped at most once, with no answer when it
/// is dropped; the only answer is act two, never larger than what it answers, at most
/// `1 + handshakeReplyLimit` times per act one; no reassembly state; a closed session only
/// drops; the endpoint keeps within its session and half-open limits, and counts stray
/// datagrams.
///
/// Mode odd — an established pair (handshake and confirmation done once, in a fixture;
/// every execution works on copies), the link driven by items:
/// `0 [u16 n][fate]` the initiator sends an n-byte message (content derived from n and fate):
/// fate bits 0-1: deliver now, deliver in reverse order, hold, deliver only the even-numbered
/// ones (the rest are lost, leaving incomplete messages to reassemble); bit 2: first inject a
/// copy of one datagram with a byte changed (`[u16 position][xor]` follow);
/// `1` release the held datagrams; `2 [u8 n][n bytes]` a raw datagram to the responder;
/// `3 [u8 n]` the responder sends an n-byte message, delivered at once; `4 [seconds]`
/// time passes and both timers fire; `5 [which]` a recorded handshake act again;
/// `6 [u8 n][n bytes]` a raw datagram to the initiator. Whatever a session answers goes
/// to the other at once.
/// Properties: every delivered message is one the peer sent, each delivered once, so no
/// forged, corrupted or replayed message gets through; a message whose datagrams all pass
/// at once, unchanged, is delivered by them (while no timer has run); a datagram the peer
/// did not send is dropped and counted, with no answer; reassembly stays within
/// `maximumIncompleteMessages` and `maximumReassemblyBytes`; statistics count what was
/// received and delivered.
public enum DatagramTarget {
    static let policy = DatagramPolicy(
        maximumDatagramSize: 128, maximumMessageLength: 2048, maximumIncompleteMessages: 4,
        maximumReassemblyBytes: 4096, earlyDatagramLimit: 4, handshakeReplyLimit: 3)
    static let vectorActOne = [DatagramFormat.Kind.actOne.rawValue] + Bolt8Vector.actOne
    static let pairResponderKey = Bolt8Vector.privateKey("3131313131313131313131313131313131313131313131313131313131313131")

    struct Pair: Sendable {
        var initiator: DatagramSession
        var responder: DatagramSession
        let start: ContinuousClock.Instant
        /// Act one, act two, act three as they went over the link.
        let handshake: [[UInt8]]
    }

    static let pair: Pair = fixture {
        let start = ContinuousClock.now
        guard var initiator = try? DatagramSession(
            role: .initiator(remoteStatic: pairResponderKey.publicKey), localStatic: Bolt8Vector.initiatorStatic, policy: policy),
            var responder = try? DatagramSession(role: .responder, localStatic: pairResponderKey, policy: policy)
        else { fatalError("the fuzz policy is refused") }
        func sends(_ actions: [DatagramSession.Action]) -> [[UInt8]] {
            actions.compactMap { if case let .send(datagram) = $0 { datagram } else { nil } }
        }
        let actOne = sends(initiator.start(now: start))
        let actTwo = sends(responder.receive(actOne[0], now: start))
        let actThree = sends(initiator.receive(actTwo[0], now: start))
        let confirmation = sends(responder.receive(actThree[0], now: start))
        _ = initiator.receive(confirmation[0], now: start)
        guard initiator.isConfirmed, responder.isEstablished else { fatalError("the fixture pair did not establish") }
        return Pair(initiator: initiator, responder: responder, start: start, handshake: [actOne[0], actTwo[0], actThree[0]])
    }

    static let start: ContinuousClock.Instant = fixture { ContinuousClock.now }

    public static func prepare() { _ = (pair, start, pairResponderKey) }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        if input.byte() & 1 == 0 {
            responder(&input)
        } else {
            var link = LinkDriver(pair: pair)
            link.run(&input)
        }
    }

    // MARK: - Responder and endpoint on arbitrary datagrams

    static func responder(_ input: inout FuzzInput) {
        guard var session = try? DatagramSession(role: .responder, localStatic: Bolt8Vector.responderStatic, policy: policy),
              var endpoint = try? DatagramEndpoint<UInt8>(
                  localStatic: Bolt8Vector.responderStatic, policy: policy, maximumSessions: 3, maximumHalfOpen: 2)
        else { fuzzFailure("the fuzz policy is refused") }
        var now = start
        var received = 0
        var repliesTo: [[UInt8]: Int] = [:]
        var items = 0
        while !input.isAtEnd, items < 64 {
            items += 1
            let tag = input.byte() % 3
            if tag == 0 {
                now += .seconds(Int(input.byte()))
                for action in session.timerFired(now: now) {
                    guard case .closed(.halfOpenExpired) = action else { fuzzFailure("a responder timer did \(action)") }
                }
                for action in endpoint.timerFired(now: now) {
                    guard case .closed(_, .halfOpenExpired) = action else { fuzzFailure("an endpoint timer did \(action)") }
                }
                continue
            }
            let address = input.byte() % 4
            let datagram = tag == 1 ? input.take(Int(input.u16())) : vectorActOne

            let stageBefore = session.stage
            let droppedBefore = session.statistics.totalDropped
            let actions = session.receive(datagram, now: now)
            received += 1
            fuzzCheck(session.statistics.datagramsReceived == received, "datagramsReceived is off")
            let dropped = session.statistics.totalDropped - droppedBefore
            fuzzCheck(dropped == 0 || dropped == 1, "one datagram counted as \(dropped) drops")
            fuzzCheck(dropped == 0 || actions.isEmpty, "a dropped datagram was answered")
            if stageBefore == .closed { fuzzCheck(dropped == 1, "a closed session took a datagram") }
            if datagram.count > policy.maximumDatagramSize { fuzzCheck(dropped == 1, "an oversized datagram was not dropped") }
            for action in actions {
                guard case let .send(answer) = action else { fuzzFailure("a responder fed arbitrary datagrams did \(action)") }
                fuzzCheck(answer.first == DatagramFormat.Kind.actTwo.rawValue && answer.count == DatagramFormat.actTwoSize, "answered \(answer.hex)")
                fuzzCheck(answer.count <= datagram.count, "answered \(datagram.count) bytes with \(answer.count)")
                repliesTo[datagram, default: 0] += 1
                fuzzCheck(repliesTo[datagram]! <= 1 + policy.handshakeReplyLimit, "answered one act one \(repliesTo[datagram]!) times")
            }
            fuzzCheck([.awaitingActOne, .awaitingActThree, .closed].contains(session.stage), "responder reached \(session.stage)")
            fuzzCheck(session.incompleteMessageCount == 0 && session.reassemblyBytes == 0, "reassembly state without keys")
            fuzzCheck(session.remoteStatic == nil, "a remote key without act three")

            let known = endpoint.session(for: address) != nil
            let strayBefore = endpoint.strayDatagrams
            let refusedBefore = endpoint.handshakesRefused
            for action in endpoint.receive(datagram, from: address, now: now) {
                guard case let .send(answer, to) = action, to == address else { fuzzFailure("an endpoint fed arbitrary datagrams did \(action)") }
                fuzzCheck(answer.count <= datagram.count, "endpoint answered \(datagram.count) bytes with \(answer.count)")
            }
            if !known, datagram.first != DatagramFormat.Kind.actOne.rawValue {
                fuzzCheck(endpoint.strayDatagrams == strayBefore + 1, "a stray datagram was not counted")
            }
            fuzzCheck(endpoint.strayDatagrams >= strayBefore && endpoint.handshakesRefused >= refusedBefore, "counters went back")
            fuzzCheck(endpoint.sessionCount <= 3 && endpoint.halfOpenCount <= 2, "endpoint over its limits")
        }
    }

    // MARK: - An established pair on a link the fuzzer drives

    struct LinkDriver {
        var initiator: DatagramSession
        var responder: DatagramSession
        let handshake: [[UInt8]]
        var now: ContinuousClock.Instant
        /// Messages each side sent and the other has not delivered yet.
        var sentByInitiator: [[UInt8]] = []
        var sentByResponder: [[UInt8]] = []
        /// Every datagram either side produced, to tell genuine from injected.
        var genuine: Set<[UInt8]> = []
        var held: [[UInt8]] = []
        var deliveredByResponder = 0
        var receivedByResponder = 0
        /// Timers ran (keepalives, restarts): the strict "delivered at once" check is off.
        var timersRan = false

        init(pair: Pair) {
            initiator = pair.initiator
            responder = pair.responder
            handshake = pair.handshake
            now = pair.start
            genuine = Set(pair.handshake)
            deliveredByResponder = pair.responder.statistics.messagesDelivered
            receivedByResponder = pair.responder.statistics.datagramsReceived
        }

        mutating func run(_ input: inout FuzzInput) {
            var items = 0
            while !input.isAtEnd, items < 48 {
                items += 1
                switch input.byte() % 7 {
                case 0: initiatorSends(&input)
                case 1:
                    let release = held
                    held = []
                    for datagram in release { toResponder(datagram) }
                case 2: injected(input.take(Int(input.byte())), toResponder: true)
                case 3:
                    let length = Int(input.byte())
                    let message = [UInt8](repeating: UInt8(truncatingIfNeeded: length), count: length)
                    guard let datagrams = try? responder.send(message, now: now) else { continue }
                    sentByResponder.append(message)
                    for datagram in datagrams { genuine.insert(datagram); toInitiator(datagram) }
                case 4:
                    now += .seconds(Int(input.byte()))
                    timersRan = true
                    let fromInitiator = initiator.timerFired(now: now)
                    route(fromInitiator, toResponder: true)
                    let fromResponder = responder.timerFired(now: now)
                    route(fromResponder, toResponder: false)
                case 5:
                    let which = Int(input.byte()) % 3
                    if which == 1 { toInitiator(handshake[1]) } else { toResponder(handshake[which]) }
                default: injected(input.take(Int(input.byte())), toResponder: false)
                }
                fuzzCheck(responder.incompleteMessageCount <= policy.maximumIncompleteMessages, "too many incomplete messages")
                fuzzCheck(responder.reassemblyBytes <= policy.maximumReassemblyBytes, "reassembly over its byte limit")
                fuzzCheck(responder.statistics.datagramsReceived == receivedByResponder, "datagramsReceived is off")
                fuzzCheck(responder.statistics.messagesDelivered == deliveredByResponder, "messagesDelivered is off")
            }
        }

        mutating func initiatorSends(_ input: inout FuzzInput) {
            let length = Int(input.u16()) % (policy.maximumMessageLength + 64)
            let fate = input.byte()
            let mutation = fate & 4 != 0 ? (position: Int(input.u16()), xor: input.byte()) : nil
            // The content comes from the length and fate, not the input, so that many
            // large messages cost the fuzzer a few bytes each.
            let message = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(fate) &+ sentByInitiator.count) }
            let datagrams: [[UInt8]]
            do {
                datagrams = try initiator.send(message, now: now)
            } catch {
                if case .messageTooLarge = error {
                    fuzzCheck(length > policy.maximumMessageLength, "a \(length)-byte message refused as too large")
                }
                return
            }
            fuzzCheck(length <= policy.maximumMessageLength, "a \(length)-byte message was sent")
            fuzzCheck(datagrams.count == policy.datagramCount(forMessageLength: length), "datagram count is off")
            fuzzCheck(datagrams.allSatisfy { $0.count <= policy.maximumDatagramSize }, "a datagram over the link's size")
            sentByInitiator.append(message)
            datagrams.forEach { genuine.insert($0) }
            if let mutation, !datagrams.isEmpty, mutation.xor != 0 {
                var copy = datagrams[mutation.position % datagrams.count]
                copy[(mutation.position >> 4) % copy.count] ^= mutation.xor
                injected(copy, toResponder: true)
            }
            let pending = sentByInitiator.count
            let strict = !timersRan && responder.isEstablished && mutation == nil
            switch fate & 3 {
            case 0: datagrams.forEach { toResponder($0) }
            case 1: datagrams.reversed().forEach { toResponder($0) }
            case 2: held += datagrams
            default: datagrams.indices.filter { $0 % 2 == 0 }.forEach { toResponder(datagrams[$0]) }
            }
            if fate & 3 < 2, strict {
                fuzzCheck(sentByInitiator.count == pending - 1, "a \(length)-byte message whose datagrams all passed was not delivered")
            }
        }

        /// A datagram the fuzzer made: unless it happens to be genuine, dropped and counted, unanswered.
        mutating func injected(_ datagram: [UInt8], toResponder: Bool) {
            let isGenuine = genuine.contains(datagram)
            let session = toResponder ? responder : initiator
            let droppedBefore = session.statistics.totalDropped
            let actions = toResponder ? self.toResponder(datagram) : toInitiator(datagram)
            guard !isGenuine, !timersRan else { return }
            let after = toResponder ? responder : initiator
            fuzzCheck(after.statistics.totalDropped == droppedBefore + 1, "an injected datagram \(datagram.hex) was not dropped")
            fuzzCheck(actions.isEmpty, "an injected datagram was answered with \(actions)")
        }

        @discardableResult
        mutating func toResponder(_ datagram: [UInt8]) -> [DatagramSession.Action] {
            receivedByResponder += 1
            let actions = responder.receive(datagram, now: now)
            route(actions, toResponder: false)
            return actions
        }

        @discardableResult
        mutating func toInitiator(_ datagram: [UInt8]) -> [DatagramSession.Action] {
            let actions = initiator.receive(datagram, now: now)
            route(actions, toResponder: true)
            return actions
        }

        /// Handles the actions of one side: deliveries are checked against what the other
        /// side sent, datagrams go to the other side at once (within a bound, as a link
        /// that can carry only so much).
        mutating func route(_ actions: [DatagramSession.Action], toResponder: Bool, depth: Int = 0) {
            for action in actions {
                switch action {
                case let .send(datagram):
                    genuine.insert(datagram)
                    guard depth < 8 else { continue }
                    if toResponder {
                        receivedByResponder += 1
                        route(responder.receive(datagram, now: now), toResponder: false, depth: depth + 1)
                    } else {
                        route(initiator.receive(datagram, now: now), toResponder: true, depth: depth + 1)
                    }
                case let .deliver(message):
                    // Actions of the responder are routed toward the initiator and vice versa.
                    if toResponder {
                        guard let index = sentByResponder.firstIndex(of: message) else {
                            fuzzFailure("the initiator delivered \(message.hex), which the responder did not send (or twice)")
                        }
                        sentByResponder.remove(at: index)
                    } else {
                        deliveredByResponder += 1
                        guard let index = sentByInitiator.firstIndex(of: message) else {
                            fuzzFailure("the responder delivered \(message.count) bytes the initiator did not send (or twice)")
                        }
                        sentByInitiator.remove(at: index)
                    }
                case .established, .restarting, .closed:
                    break
                }
            }
        }
    }
}
