import LNPCrypto
import LNPSession
import Testing

@Suite struct DatagramSessionTests {
    /// Sizes with a long tail: most messages fit one datagram, some need a few fragments, a few need many.
    static func messageLength(using random: inout SplitMix64, policy: DatagramPolicy) -> Int {
        switch Int.random(in: 0..<100, using: &random) {
        case 0..<80: Int.random(in: 8...policy.wholeMessageCapacity, using: &random)
        case 80..<95: Int.random(in: (policy.wholeMessageCapacity + 1)...4_000, using: &random)
        default: Int.random(in: 4_000...20_000, using: &random)
        }
    }

    /// Sends `count` numbered messages (every tenth from the responder), one per millisecond,
    /// then lets the channel drain past the reassembly timeout.
    static func exchange(_ count: Int, over harness: inout DatagramHarness, seed: UInt64, firstIndex: UInt32 = 0) throws -> (sent: [UInt32: LinkSide], fragmented: Set<UInt32>) {
        var random = SplitMix64(state: seed)
        var sent: [UInt32: LinkSide] = [:]
        var fragmented: Set<UInt32> = []
        var index = firstIndex
        var length = messageLength(using: &random, policy: harness.policy)
        while index < firstIndex + UInt32(count) {
            let side: LinkSide = index % 10 == 9 ? .responder : .initiator
            if try harness.send(NumberedMessage.make(index, length: length), from: side) {
                sent[index] = side
                if length > harness.policy.wholeMessageCapacity { fragmented.insert(index) }
                index += 1
                length = messageLength(using: &random, policy: harness.policy)
            }
            harness.step()
        }
        harness.run(for: harness.policy.reassemblyTimeout + .seconds(1), step: .milliseconds(5))
        return (sent, fragmented)
    }

    /// Every delivered message is intact, was sent by the other side, and arrives once.
    static func checkDeliveries(_ harness: DatagramHarness, sent: [UInt32: LinkSide]) -> Set<UInt32> {
        var seen: Set<UInt32> = []
        for side in [LinkSide.initiator, .responder] {
            for message in harness.delivered[side, default: []] {
                guard let index = NumberedMessage.verify(message) else {
                    Issue.record("the \(side) was handed a message that was never sent (\(message.count) bytes)")
                    continue
                }
                guard let sender = sent[index] else { continue }
                #expect(sender == side.other, "message \(index) came back to its sender")
                #expect(seen.insert(index).inserted, "message \(index) was delivered twice")
            }
        }
        return seen
    }

    static func connect(_ harness: inout DatagramHarness) {
        harness.start()
        let established = harness.run(upTo: .seconds(60)) { $0.initiator.isConfirmed && $0.responder.isEstablished }
        #expect(established, "the handshake did not complete")
    }

    @Test func tenThousandMessagesSurviveLossDuplicationReorderingAndAnAttacker() throws {
        var harness = try DatagramHarness(
            faults: .init(loss: 0.2, duplication: 0.1, jitter: .milliseconds(30), tampering: 0.02, replay: 0.02), seed: 0xD47A_6001)
        Self.connect(&harness)
        let (sent, fragmented) = try Self.exchange(10_000, over: &harness, seed: 11)
        let delivered = Self.checkDeliveries(harness, sent: sent)

        #expect(sent.count == 10_000)
        // Whole messages arrive with p = 0.8, fragmented ones with 0.8^fragments.
        #expect(delivered.count > 6_500, "only \(delivered.count) of 10,000 arrived")
        #expect(delivered.count < 10_000, "a 20 % lossy channel cannot deliver everything")
        #expect(!delivered.intersection(fragmented).isEmpty, "no fragmented message was reassembled")
        #expect(harness.channel.lost > 0 && harness.channel.duplicated > 0 && harness.channel.tampered > 0 && harness.channel.replayed > 0)
        let drops = harness.initiator.statistics.drops.merging(harness.responder.statistics.drops, uniquingKeysWith: +)
        #expect(drops[.replayed, default: 0] > 0, "duplicates and replays were never refused")
        #expect(drops[.authenticationFailed, default: 0] > 0, "altered datagrams were never refused")
        #expect(harness.initiator.isEstablished && harness.responder.isEstablished)
    }

    @Test func withoutLossEveryMessageArrivesExactlyOnce() throws {
        var harness = try DatagramHarness(faults: .init(loss: 0, duplication: 0.2, jitter: .milliseconds(40)), seed: 0xD47A_6002)
        Self.connect(&harness)
        let (sent, fragmented) = try Self.exchange(10_000, over: &harness, seed: 12)
        let delivered = Self.checkDeliveries(harness, sent: sent)
        #expect(delivered.count == 10_000, "\(10_000 - delivered.count) messages were lost on a lossless channel")
        #expect(fragmented.count > 1_000)
        #expect(harness.responder.statistics.dropped(.replayed) > 0)
        #expect(harness.responder.incompleteMessageCount == 0 && harness.responder.reassemblyBytes == 0)
    }

    @Test func aRestartedInitiatorReestablishes() throws {
        var harness = try DatagramHarness(faults: .init(loss: 0.1, duplication: 0.05), seed: 0xD47A_6003)
        Self.connect(&harness)
        _ = try Self.exchange(200, over: &harness, seed: 13)

        try harness.restart(.initiator)
        let reestablished = harness.run(upTo: .seconds(60)) { $0.initiator.isEstablished && $0.establishedCount(.responder) == 2 }
        #expect(reestablished)
        #expect(harness.events[.responder]?.contains(.established(remoteStatic: harness.initiatorKey.publicKey, epoch: 2)) == true)

        harness.delivered = [:]
        let (sent, _) = try Self.exchange(500, over: &harness, seed: 14, firstIndex: 1_000)
        let delivered = Self.checkDeliveries(harness, sent: sent)
        #expect(delivered.count > 300, "after the restart only \(delivered.count) of 500 arrived")
        #expect(delivered.contains { sent[$0] == .responder } && delivered.contains { sent[$0] == .initiator })
    }

    @Test func aRestartedResponderIsNoticedAndTheInitiatorStartsOver() throws {
        let policy = DatagramPolicy(keepaliveInterval: .seconds(1), deadPeerTimeout: .seconds(4))
        var harness = try DatagramHarness(policy: policy, faults: .init(loss: 0.1), seed: 0xD47A_6004)
        Self.connect(&harness)
        _ = try Self.exchange(100, over: &harness, seed: 15)

        try harness.restart(.responder)
        var index: UInt32 = 5_000
        let recovered = harness.run(upTo: .seconds(60)) { $0.establishedCount(.initiator) == 2 && $0.responder.isEstablished }
        #expect(recovered)
        #expect(harness.events[.initiator]?.contains(.restarting(.peerSilent(after: .seconds(4)))) == true)
        // The fresh responder refused what the initiator still sealed with the old keys.
        #expect(harness.responder.statistics.dropped(.noSession) > 0)

        harness.delivered = [:]
        var sent: [UInt32: LinkSide] = [:]
        while index < 5_200 {
            if try harness.send(NumberedMessage.make(index, length: 64), from: .initiator) {
                sent[index] = .initiator
                index += 1
            }
            harness.step()
        }
        harness.run(for: .seconds(1))
        let delivered = Self.checkDeliveries(harness, sent: sent)
        #expect(delivered.count > 150)
    }

    @Test func replayedAndOldDatagramsAreRefused() throws {
        var harness = try DatagramHarness(seed: 0xD47A_6005)
        Self.connect(&harness)
        let now = harness.clock.now
        let first = try harness.initiator.send(NumberedMessage.make(1, length: 100), now: now)
        #expect(first.count == 1)
        #expect(harness.responder.receive(first[0], now: now) == [.deliver(NumberedMessage.make(1, length: 100))])
        #expect(harness.responder.receive(first[0], now: now).isEmpty)
        #expect(harness.responder.statistics.dropped(.replayed) == 1)

        // Push the window past the first datagram.
        for index in 2...(UInt32(ReplayWindow.size) + 10) {
            for datagram in try harness.initiator.send(NumberedMessage.make(index, length: 20), now: now) {
                _ = harness.responder.receive(datagram, now: now)
            }
        }
        #expect(harness.responder.receive(first[0], now: now).isEmpty)
        #expect(harness.responder.statistics.dropped(.tooOld) == 1)

        // A datagram of the earlier session after a re-handshake is not authentic any more.
        let stale = try harness.initiator.send(NumberedMessage.make(99_999, length: 30), now: now)
        try harness.restart(.initiator)
        #expect(harness.run(upTo: .seconds(30)) { $0.initiator.isEstablished && $0.establishedCount(.responder) == 2 })
        #expect(harness.responder.receive(stale[0], now: harness.clock.now).isEmpty)
        #expect(harness.responder.statistics.dropped(.authenticationFailed) >= 1)
    }

    @Test func forgedDatagramsAreDroppedAndDoNotDisturbTheHandshake() throws {
        var harness = try DatagramHarness(seed: 0xD47A_6006)
        var random = SplitMix64(state: 16)
        let now = harness.clock.now
        // Noise to a responder that has no session: nothing is answered.
        for kind in DatagramFormat.Kind.allCases where kind != .actOne {
            let size = kind == .actThree ? DatagramFormat.actThreeSize : 60
            let forged = [kind.rawValue] + (0..<(size - 1)).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(harness.responder.receive(forged, now: now).isEmpty)
        }
        let forgedActOne = [DatagramFormat.Kind.actOne.rawValue] + [0x00, 0x02] + (0..<48).map { _ in UInt8.random(in: 0...255, using: &random) }
        #expect(harness.responder.receive(forgedActOne, now: now).isEmpty)
        #expect(harness.responder.statistics.dropped(.handshakeRejected) == 1)
        #expect(harness.responder.stage == .awaitingActOne)

        // A forged act two does not spend the initiator's handshake.
        let actOne = harness.initiator.start(now: now)
        let forgedActTwo = [DatagramFormat.Kind.actTwo.rawValue, 0] + PrivateKey.generate().publicKey.compressed + [UInt8](repeating: 7, count: 16)
        #expect(harness.initiator.receive(forgedActTwo, now: now).isEmpty)
        #expect(harness.initiator.statistics.dropped(.handshakeRejected) == 1)
        guard case let .send(actOneDatagram)? = actOne.first else { Issue.record("no act one"); return }
        let reply = harness.responder.receive(actOneDatagram, now: now)
        guard case let .send(actTwo)? = reply.first else { Issue.record("no act two"); return }
        let completion = harness.initiator.receive(actTwo, now: now)
        #expect(harness.initiator.isEstablished)
        guard case let .send(actThree)? = completion.first else { Issue.record("no act three"); return }

        // A forged act three does not spend the responder's handshake either.
        var forgedActThree = actThree
        forgedActThree[20] ^= 0x40
        #expect(harness.responder.receive(forgedActThree, now: now).isEmpty)
        #expect(harness.responder.stage == .awaitingActThree)
        let confirmation = harness.responder.receive(actThree, now: now)
        #expect(harness.responder.isEstablished)
        #expect(confirmation.contains(.established(remoteStatic: harness.initiatorKey.publicKey, epoch: 1)))

        // Random transport datagrams never deliver anything.
        for _ in 0..<2_000 {
            let kind = [DatagramFormat.Kind.message, .fragment, .keepalive].randomElement(using: &random)!
            let body = (0..<Int.random(in: 16...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(harness.responder.receive([kind.rawValue] + body, now: now).allSatisfy { if case .deliver = $0 { false } else { true } })
        }
        #expect(harness.responder.statistics.messagesDelivered == 0)
    }

    @Test func theInitiatorRetriesActOneWithBackoffAndGivesUp() throws {
        var harness = try DatagramHarness(seed: 0xD47A_6007)
        let origin = harness.clock.now
        var sentAt: [Duration] = []
        var actOnes: Set<[UInt8]> = []
        var closed: DatagramSessionFailure?
        var actions = harness.initiator.start(now: origin)
        while closed == nil {
            for action in actions {
                switch action {
                case let .send(datagram):
                    sentAt.append(harness.clock.now - origin)
                    actOnes.insert(datagram)
                case let .closed(reason):
                    closed = reason
                default: break
                }
            }
            guard closed == nil, let deadline = harness.initiator.nextDeadline else { break }
            harness.clock.advance(by: deadline - harness.clock.now)
            actions = harness.initiator.timerFired(now: harness.clock.now)
        }
        #expect(sentAt == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 23.5, 31.5].map { Duration.milliseconds(Int($0 * 1000)) })
        #expect(actOnes.count == 1, "a retry must repeat the same act one")
        #expect(closed == .handshakeTimedOut(attempts: 8))
        #expect(harness.clock.now - origin == .milliseconds(39_500))
    }

    @Test func theResponderRepeatsTheSameActTwoWithinItsLimitAndNeverAmplifies() throws {
        var harness = try DatagramHarness(seed: 0xD47A_6008)
        let now = harness.clock.now
        guard case let .send(actOne)? = harness.initiator.start(now: now).first else { Issue.record("no act one"); return }
        var replies: [[UInt8]] = []
        for _ in 0..<(1 + harness.policy.handshakeReplyLimit + 5) {
            for case let .send(reply) in harness.responder.receive(actOne, now: now) { replies.append(reply) }
        }
        #expect(replies.count == 1 + harness.policy.handshakeReplyLimit)
        #expect(Set(replies).count == 1)
        #expect(replies[0].count <= actOne.count)
        #expect(harness.responder.statistics.dropped(.replyLimitReached) == 5)

        // A half-open handshake is forgotten after its timeout.
        let expiry = try #require(harness.responder.nextDeadline)
        #expect(expiry == now + harness.policy.halfOpenTimeout)
        #expect(harness.responder.timerFired(now: expiry) == [.closed(.halfOpenExpired(after: harness.policy.halfOpenTimeout))])
    }

    @Test func overheadPerMessageIsFixedByTheFormat() throws {
        var harness = try DatagramHarness(seed: 0xD47A_6009)
        Self.connect(&harness)
        let message = [UInt8](repeating: 0x5A, count: 100)
        let datagrams = try harness.initiator.send(message, now: harness.clock.now)
        #expect(datagrams.count == 1)
        // UDP: 1 kind byte + 4 counter bytes + 16 tag bytes.
        #expect(datagrams[0].count == 121)
        #expect(DatagramFormat.datagramSize(forMessageLength: 100) == 121)
        // Serial: + 4 CRC-32 + 1 COBS code byte + 1 delimiter = 27 bytes beyond the 100.
        let lineFrame = LineFraming.encode(datagrams[0])
        #expect(lineFrame.count == 127)
        #expect(lineFrame.count - 100 <= 48)
        #expect([DatagramFormat.actOneSize, DatagramFormat.actTwoSize, DatagramFormat.actThreeSize] == [51, 51, 67])

        // Bulk on a serial line with 512-byte datagrams: 487 message bytes per frame of at most 520.
        let serial = DatagramPolicy.serial()
        #expect(serial.fragmentCapacity == 487)
        let worstFrame = LineFraming.maximumEncodedSize(forDatagramLength: serial.maximumDatagramSize)
        #expect(worstFrame == 520)
        #expect(Double(serial.fragmentCapacity) / Double(worstFrame) >= 0.9)
        var serialHarness = try DatagramHarness(policy: serial, seed: 0xD47A_600A)
        Self.connect(&serialHarness)
        let bulk = NumberedMessage.make(7, length: 10_000)
        let pieces = try serialHarness.initiator.send(bulk, now: serialHarness.clock.now)
        #expect(pieces.count == 21)
        #expect(pieces.allSatisfy { $0.count <= 512 })
        #expect(pieces.dropLast().allSatisfy { $0.count == 512 })
        let lineBytes = pieces.reduce(0) { $0 + LineFraming.encode($1).count }
        #expect(Double(bulk.count) / Double(lineBytes) >= 0.9)
    }

    @Test func reassemblyMemoryAndWaitingAreBounded() throws {
        let policy = DatagramPolicy(maximumIncompleteMessages: 4, maximumReassemblyBytes: 70_000)
        var harness = try DatagramHarness(policy: policy, seed: 0xD47A_600B)
        Self.connect(&harness)
        let now = harness.clock.now
        for index in 0..<10 {
            let pieces = try harness.initiator.send(NumberedMessage.make(UInt32(index), length: 5_000), now: now)
            for piece in pieces.dropLast() { #expect(harness.responder.receive(piece, now: now).isEmpty) }
            #expect(harness.responder.incompleteMessageCount <= 4)
        }
        #expect(harness.responder.statistics.incompleteMessagesDropped == 6)
        let held = harness.responder.reassemblyBytes
        #expect(held > 0 && held <= 70_000)
        _ = harness.responder.timerFired(now: now + policy.reassemblyTimeout)
        #expect(harness.responder.incompleteMessageCount == 0 && harness.responder.reassemblyBytes == 0)
        #expect(harness.responder.statistics.incompleteMessagesDropped == 10)
        #expect(harness.responder.statistics.messagesDelivered == 0)
    }

    @Test func limitsAreCheckedBeforeAnythingIsSent() throws {
        #expect(throws: DatagramSessionError.self) {
            _ = try DatagramSession(role: .responder, localStatic: PrivateKey.generate(), policy: DatagramPolicy(maximumDatagramSize: 60))
        }
        #expect(throws: DatagramSessionError.self) {
            _ = try DatagramSession(role: .responder, localStatic: PrivateKey.generate(),
                                    policy: DatagramPolicy(maximumDatagramSize: 100, maximumMessageLength: 16_000_000))
        }
        var harness = try DatagramHarness(seed: 0xD47A_600C)
        #expect(throws: DatagramSessionError.notEstablished(stage: .notStarted)) {
            _ = try harness.initiator.send([1, 2, 3], now: harness.clock.now)
        }
        Self.connect(&harness)
        #expect(throws: DatagramSessionError.messageTooLarge(length: 65_536, limit: 65_535)) {
            _ = try harness.initiator.send([UInt8](repeating: 0, count: 65_536), now: harness.clock.now)
        }
        #expect(harness.initiator.receive([UInt8](repeating: 0x10, count: 1_201), now: harness.clock.now).isEmpty)
        #expect(harness.initiator.statistics.dropped(.oversized) == 1)
    }
}

@Suite struct ReplayWindowTests {
    @Test func truncatedCountersAreRestoredAcrossThe32BitBoundary() {
        let span: UInt64 = 1 << 32
        #expect(DatagramFormat.restoreCounter(0, highestAccepted: nil) == 0)
        #expect(DatagramFormat.restoreCounter(5, highestAccepted: 3) == 5)
        // Just past a wrap of the low 32 bits.
        #expect(DatagramFormat.restoreCounter(2, highestAccepted: span - 3) == span + 2)
        // A late datagram from just before the wrap.
        #expect(DatagramFormat.restoreCounter(UInt32.max - 1, highestAccepted: span + 10) == span - 2)
        // Far in the past or future within half the span, in the fourth epoch.
        let high = 3 * span + 1_000
        for offset in [-1_000_000, -1, 0, 1, 1_000_000] {
            let counter = UInt64(Int64(high) + Int64(offset))
            #expect(DatagramFormat.restoreCounter(UInt32(truncatingIfNeeded: counter), highestAccepted: high) == counter)
        }
    }

    @Test func theWindowRefusesDuplicatesAndTooOldCounters() {
        var window = ReplayWindow()
        #expect(window.check(0) == .fresh)
        window.accept(0)
        #expect(window.check(0) == .duplicate)
        window.accept(5)
        #expect(window.check(3) == .fresh && window.check(5) == .duplicate)
        window.accept(3)
        #expect(window.check(3) == .duplicate)
        window.accept(5 + ReplayWindow.size - 1)
        #expect(window.check(5) == .duplicate && window.check(4) == .tooOld && window.check(6) == .fresh)
        window.accept(100_000)
        #expect(window.check(100_000 - ReplayWindow.size) == .tooOld)
        #expect(window.check(100_000 - ReplayWindow.size + 1) == .fresh)
        #expect(window.check(5 + ReplayWindow.size - 1) == .tooOld)
        #expect(window.highestAccepted == 100_000)
    }
}
