import Foundation
import GRDB
import LNPCrypto
import Testing
@testable import LNPStore

@Suite struct OutgoingTests {
    @Test func sequenceNumbersAreContiguousPerRecipientAcrossBatchesAndReopen() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let alice = newKey(), bob = newKey()
            var ids = Set<[UInt8]>()
            do {
                let store = try MessageStore(path: path)
                let a1 = try store.enqueue(to: alice, messages: payloads(3))
                let b1 = try store.enqueue(to: bob, messages: payloads(2))
                let a2 = try store.enqueue(to: alice, messages: payloads(4, start: 3))
                #expect((a1 + a2).map(\.seq) == Array(1...7))
                #expect(b1.map(\.seq) == [1, 2])
                #expect((a1 + a2).allSatisfy { $0.recipient == alice && $0.state == .queued && $0.link == nil })
                ids.formUnion((a1 + b1 + a2).map(\.id))
                try store.close()
            }
            let store = try MessageStore(path: path)
            let a3 = try store.enqueue(to: alice, messages: payloads(2, start: 7))
            let b2 = try store.enqueue(to: bob, messages: payloads(1))
            #expect(a3.map(\.seq) == [8, 9])
            #expect(b2.map(\.seq) == [3])
            ids.formUnion((a3 + b2).map(\.id))
            #expect(ids.count == 12)
            #expect(ids.allSatisfy { $0.count == 16 })

            let pending = try store.undelivered(to: alice, afterSeq: 0, limit: 100)
            #expect(pending.map(\.seq) == Array(1...9))
            #expect(pending.map(\.payload) == payloads(9).map(\.payload))
            #expect(pending.map(\.type) == payloads(9).map(\.type))
        }
    }

    @Test func concurrentBatchesGetDisjointContiguousNumbers() async throws {
        try await withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            let alice = newKey()
            let batches = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var seqs: [UInt64] = []
                        for _ in 0..<25 {
                            let batch = try store.enqueue(to: alice, messages: payloads(10)).map(\.seq)
                            #expect(batch == Array(batch[0]...(batch[0] + 9)))
                            seqs += batch
                            _ = try store.undelivered(to: alice, afterSeq: 0, limit: 50)
                        }
                        return seqs
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(batches.sorted() == Array(1...1000))
        }
    }

    @Test func aRecipientsSequenceNumbersRunOutLoudly() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        _ = try store.enqueue(to: alice, messages: payloads(1))
        try store.writer.write { db in
            try db.execute(sql: "UPDATE node SET out_last_seq = ?", arguments: [OutgoingKey.maxSeq - 1])
        }
        #expect(try store.enqueue(to: alice, messages: payloads(1))[0].seq == UInt64(OutgoingKey.maxSeq))
        #expect {
            try store.enqueue(to: alice, messages: payloads(1))
        } throws: { error in
            guard case .full? = error as? StoreError else { return false }
            return true
        }
        // Another recipient is unaffected.
        #expect(try store.enqueue(to: newKey(), messages: payloads(1))[0].seq == 1)
    }

    @Test func enqueueReturnsWhatStatusReadsBack() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        let expiry = Date(timeIntervalSinceNow: 3600)
        let sent = try store.enqueue(to: alice, messages: payloads(5, size: 33), expiresAt: expiry)
        for message in sent {
            #expect(try store.status(of: message.id) == message)
        }
        #expect(abs(sent[0].expiresAt!.timeIntervalSince(expiry)) < 0.001)
        #expect(abs(sent[0].createdAt.timeIntervalSinceNow) < 5)
        #expect(try store.status(of: SecureRandom.bytes(16)) == nil)
        #expect(try store.status(of: [1, 2, 3]) == nil)
        // Right batch prefix, unknown suffix.
        #expect(try store.status(of: Array(sent[0].id[0..<8]) + [UInt8](repeating: 0xff, count: 8)) == nil)
    }

    @Test func idsOfABatchShareARandomPrefixAndAscend() {
        let ids = MessageStore.messageIDs(count: 1000)
        #expect(Set(ids).count == 1000)
        #expect(ids.allSatisfy { $0[0..<8] == ids[0][0..<8] })
        #expect(ids == ids.sorted { $0.lexicographicallyPrecedes($1) })
        #expect(MessageStore.messageIDs(count: 1)[0][0..<8] != MessageStore.messageIDs(count: 1)[0][0..<8])
    }

    @Test func deliveryIsCumulativeAndSentRangesKeepTheLatestLink() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey(), bob = newKey()
        let messages = try store.enqueue(to: alice, messages: payloads(10))
        _ = try store.enqueue(to: bob, messages: payloads(2))
        func states() throws -> [OutgoingState] { try messages.map { try store.status(of: $0.id)!.state } }
        func links() throws -> [String?] { try messages.map { try store.status(of: $0.id)!.link } }

        try store.markSent(to: alice, afterSeq: 0, throughSeq: 4, link: "tcp:a")
        try store.markSent(to: alice, afterSeq: 4, throughSeq: 6, link: "tcp:a")
        #expect(try states() == Array(repeating: .sent, count: 6) + Array(repeating: .queued, count: 4))
        #expect(try links() == Array(repeating: "tcp:a", count: 6) + Array(repeating: nil, count: 4))

        try store.markDelivered(to: alice, throughSeq: 3)
        #expect(try states() == [.delivered, .delivered, .delivered, .sent, .sent, .sent, .queued, .queued, .queued, .queued])
        #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 100).map(\.seq) == Array(4...10))
        #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 100).map(\.state)
            == [.sent, .sent, .sent, .queued, .queued, .queued, .queued])
        #expect(try store.undelivered(to: alice, afterSeq: 5, limit: 2).map(\.seq) == [6, 7])

        // After a reconnect the unacknowledged messages go out again on another link.
        try store.markSent(to: alice, throughSeq: 8, link: "tor:b")
        #expect(try links() == ["tcp:a", "tcp:a", "tcp:a", "tor:b", "tor:b", "tor:b", "tor:b", "tor:b", nil, nil])
        // A page in the middle of a range splits it.
        try store.markSent(to: alice, afterSeq: 5, throughSeq: 6, link: "udp:c")
        #expect(try links() == ["tcp:a", "tcp:a", "tcp:a", "tor:b", "tor:b", "udp:c", "tor:b", "tor:b", nil, nil])
        let ranges = try store.writer.read { db in try store.sentRanges(db, recipient: 1, overlapping: 0, 100) }
        #expect(ranges.map { [$0.after, $0.through] } == [[0, 3], [3, 5], [5, 6], [6, 8]])

        // A late, older acknowledgement changes nothing; one past the end is clamped.
        try store.markDelivered(to: alice, throughSeq: 2)
        #expect(try states()[3] == .sent)
        try store.markDelivered(to: alice, throughSeq: 1_000)
        #expect(try states() == Array(repeating: .delivered, count: 10))
        #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 100).isEmpty)
        #expect(try store.recipientsWithUndelivered() == [bob])
        // Later messages are not covered by the clamped acknowledgement.
        let more = try store.enqueue(to: alice, messages: payloads(1))
        #expect(more[0].seq == 11)
        #expect(try store.status(of: more[0].id)!.state == .queued)
        #expect(Set(try store.recipientsWithUndelivered()) == [alice, bob])

        // Unknown recipients are no-ops.
        try store.markSent(to: newKey(), throughSeq: 5, link: "x")
        try store.markDelivered(to: newKey(), throughSeq: 5)
        #expect(try store.undelivered(to: newKey(), afterSeq: 0, limit: 10).isEmpty)
    }

    @Test func expiryAndFailure() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        let now = Date()
        let soon = try store.enqueue(to: alice, messages: payloads(3), expiresAt: now.addingTimeInterval(60))
        let never = try store.enqueue(to: alice, messages: payloads(2))
        let later = try store.enqueue(to: alice, messages: payloads(2), expiresAt: now.addingTimeInterval(3600))
        try store.markDelivered(to: alice, throughSeq: 1)

        #expect(try store.expire(now: now) == 0)
        #expect(try store.expire(now: now.addingTimeInterval(61)) == 2)
        #expect(try store.status(of: soon[0].id)!.state == .delivered)
        #expect(try store.status(of: soon[1].id)!.state == .expired)
        #expect(try store.status(of: soon[2].id)!.state == .expired)
        #expect(try store.expire(now: now.addingTimeInterval(61)) == 0)
        #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.seq) == [4, 5, 6, 7])

        #expect(try store.markFailed(id: never[0].id))
        #expect(try !store.markFailed(id: never[0].id))
        #expect(try !store.markFailed(id: soon[0].id))
        #expect(try store.status(of: never[0].id)!.state == .failed)
        #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.seq) == [5, 6, 7])

        // Acknowledged before its expiry: stays delivered when the expiry passes.
        try store.markDelivered(to: alice, throughSeq: 6)
        #expect(try store.expire(now: now.addingTimeInterval(7200)) == 1)
        #expect(try store.status(of: later[0].id)!.state == .delivered)
        #expect(try store.status(of: later[1].id)!.state == .expired)
        #expect(try store.recipientsWithUndelivered().isEmpty)
        // Expired seq 2 and 3 and failed 4 are settled: nothing owed through 7.
        #expect(try store.settledThrough(to: alice) == 7)
    }

    @Test func settledThroughStopsAtTheFirstMessageOwed() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        #expect(try store.settledThrough(to: alice) == 0)
        let first = try store.enqueue(to: alice, messages: payloads(2), expiresAt: Date(timeIntervalSinceNow: -1))
        _ = try store.enqueue(to: alice, messages: payloads(3))
        #expect(try store.settledThrough(to: alice) == 0)
        #expect(try store.expire(now: Date()) == 2)
        #expect(try store.status(of: first[1].id)!.state == .expired)
        #expect(try store.settledThrough(to: alice) == 2)
        try store.markDelivered(to: alice, throughSeq: 4)
        #expect(try store.settledThrough(to: alice) == 4)
    }

    @Test func aBatchThatFailsHalfWayLeavesNothing() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            let alice = newKey()
            _ = try store.enqueue(to: alice, messages: payloads(3))
            #expect(throws: StoreError.self) {
                try store.enqueue(to: alice, messages: payloads(1000), expiresAt: nil) { index in
                    if index == 500 { throw InjectedFault() }
                }
            }
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10_000).map(\.seq) == [1, 2, 3])
            let next = try store.enqueue(to: alice, messages: payloads(2))
            #expect(next.map(\.seq) == [4, 5])
            // The failed batch's prefix was not recorded either.
            let batches = try store.writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outgoing_batch") }
            #expect(batches == 2)
        }
    }

    @Test func rejectsOversizedInput() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        let big = [UInt8](repeating: 0, count: MessageStore.maxPayloadBytes + 1)
        #expect(throws: StoreError.payloadTooLarge(size: big.count, limit: MessageStore.maxPayloadBytes)) {
            try store.enqueue(to: alice, messages: [(type: 1, payload: [1]), (type: 1, payload: big)])
        }
        #expect(try store.enqueue(to: alice, messages: []).isEmpty)
        #expect(try store.enqueue(to: alice, messages: [(type: 1, payload: [])])[0].seq == 1)
        #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 1)[0].payload == [])
    }

    @Test func largePayloadsRoundTrip() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            let alice = newKey()
            let payload = SecureRandom.bytes(1 << 20)
            let sent = try store.enqueue(to: alice, messages: [(type: 9, payload: payload), (type: 10, payload: [1, 2])])
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 5).map(\.payload) == [payload, [1, 2]])
            #expect(try store.status(of: sent[0].id)?.payload == payload)
        }
    }
}
