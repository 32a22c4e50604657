import Foundation
import GRDB
import LNPCrypto
import Testing
@testable import LNPStore

@Suite struct IncomingTests {
    @Test func duplicatesBySequenceNumberAreDropped() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        let now = Date()
        let first = inbound([1, 2, 3])
        let r1 = try store.storeIncoming(from: alice, messages: first, receivedAt: now)
        #expect(r1.stored.map(\.seq) == [1, 2, 3])
        #expect(r1.duplicates == 0)
        #expect(try store.highestContiguousSeq(from: alice) == 3)

        // The sender resends after a crash: everything it resends that we have is dropped,
        // whether or not the id matches; new ones are kept.
        let r2 = try store.storeIncoming(from: alice, messages: first + inbound([2, 4]), receivedAt: now)
        #expect(r2.stored.map(\.seq) == [4])
        #expect(r2.duplicates == 4)
        #expect(try store.highestContiguousSeq(from: alice) == 4)

        // The same sequence number twice within one batch.
        let r3 = try store.storeIncoming(from: alice, messages: inbound([5, 5, 6]), receivedAt: now)
        #expect(r3.stored.map(\.seq) == [5, 6])
        #expect(r3.duplicates == 1)
        #expect(try store.incoming(afterRowID: 0, from: nil, limit: 100).count == 6)
    }

    @Test func outOfOrderSequenceNumbersCloseTheGapLater() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let alice = newKey()
            let now = Date()
            do {
                let store = try MessageStore(path: path)
                _ = try store.storeIncoming(from: alice, messages: inbound([1, 2, 5, 7]), receivedAt: now)
                #expect(try store.highestContiguousSeq(from: alice) == 2)
                let again = try store.storeIncoming(from: alice, messages: inbound([5, 7, 2]), receivedAt: now)
                #expect(again.stored.isEmpty)
                #expect(again.duplicates == 3)
            }
            // The seen-above-the-gap set survives a restart.
            let store = try MessageStore(path: path)
            #expect(try store.storeIncoming(from: alice, messages: inbound([5]), receivedAt: now).duplicates == 1)
            let fill = try store.storeIncoming(from: alice, messages: inbound([4, 3]), receivedAt: now)
            #expect(fill.stored.map(\.seq) == [4, 3])
            #expect(try store.highestContiguousSeq(from: alice) == 5)
            _ = try store.storeIncoming(from: alice, messages: inbound([6]), receivedAt: now)
            #expect(try store.highestContiguousSeq(from: alice) == 7)
            let ahead = try store.writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM incoming_ahead") }
            #expect(ahead == 0)
        }
    }

    @Test func skippingSeqsTheSenderGaveUpOn() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        let now = Date()
        _ = try store.storeIncoming(from: alice, messages: inbound([1, 4, 5, 8]), receivedAt: now)
        #expect(try store.highestContiguousSeq(from: alice) == 1)
        // The sender says 2 and 3 expired unsent: count them, then 4 and 5 follow.
        #expect(try store.skipIncoming(from: alice, through: 3) == 5)
        #expect(try store.skipIncoming(from: alice, through: 2) == 5)
        #expect(try store.storeIncoming(from: alice, messages: inbound([3, 6]), receivedAt: now).stored.map(\.seq) == [6])
        #expect(try store.highestContiguousSeq(from: alice) == 6)
        #expect(try store.skipIncoming(from: alice, through: 9) == 9)
        #expect(try store.storeIncoming(from: alice, messages: inbound([8, 9, 10]), receivedAt: now).stored.map(\.seq) == [10])
        #expect(try store.skipIncoming(from: newKey(), through: 0) == 0)
    }

    @Test func messagesWithoutSequenceNumbersAreDeduplicatedById() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey(), bob = newKey()
        let now = Date()
        let id = SecureRandom.bytes(16)
        let r1 = try store.storeIncoming(from: alice, messages: inbound([nil, nil], ids: [id, id]), receivedAt: now)
        #expect(r1.stored.count == 1)
        #expect(r1.duplicates == 1)
        let r2 = try store.storeIncoming(from: alice, messages: inbound([nil]), receivedAt: now)
        #expect(r2.stored.count == 1)
        #expect(try store.storeIncoming(from: alice, messages: inbound([nil], ids: [id]), receivedAt: now).duplicates == 1)
        // Ids are per sender.
        #expect(try store.storeIncoming(from: bob, messages: inbound([nil], ids: [id]), receivedAt: now).stored.count == 1)
        #expect(try store.highestContiguousSeq(from: alice) == 0)
        #expect(try store.incoming(afterRowID: 0, from: nil, limit: 100).map(\.seq) == [nil, nil, nil])
    }

    @Test func readingInOrderPerSenderAndInPages() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey(), bob = newKey()
        let time = Date(timeIntervalSince1970: 1_700_000_000.123)
        var expectedAlice: [StoredIncoming] = []
        var expectedAll: [StoredIncoming] = []
        for round in 0..<5 {
            let a = try store.storeIncoming(
                from: alice, messages: inbound((1...3).map { UInt64(round * 3 + $0) }), receivedAt: time).stored
            let b = try store.storeIncoming(
                from: bob, messages: inbound([UInt64(round + 1)], size: 1000), receivedAt: time).stored
            expectedAlice += a
            expectedAll += a + b
        }
        #expect(expectedAll.map(\.rowID) == Array(1...20))
        #expect(try store.incoming(afterRowID: 0, from: nil, limit: 100) == expectedAll)
        #expect(try store.incoming(afterRowID: 0, from: alice, limit: 100) == expectedAlice)
        #expect(try store.incoming(afterRowID: 0, from: bob, limit: 100).map(\.rowID) == [4, 8, 12, 16, 20])
        #expect(try store.incoming(afterRowID: 0, from: newKey(), limit: 100).isEmpty)
        #expect(expectedAll[0].receivedAt == Date(timeIntervalSince1970: 1_700_000_000.123))

        // Pages, starting inside a batch.
        var cursor: Int64 = 2
        var paged: [StoredIncoming] = []
        while true {
            let page = try store.incoming(afterRowID: cursor, from: alice, limit: 4)
            guard let last = page.last else { break }
            #expect(page.count <= 4)
            paged += page
            cursor = last.rowID
        }
        #expect(paged == Array(expectedAlice.dropFirst(2)))
        #expect(try store.incoming(afterRowID: 20, from: nil, limit: 10).isEmpty)
        #expect(try store.incoming(afterRowID: 0, from: nil, limit: 0).isEmpty)
    }

    @Test func aBatchThatFailsHalfWayLeavesNothing() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            let alice = newKey()
            let now = Date()
            _ = try store.storeIncoming(from: alice, messages: inbound([1, 2]), receivedAt: now)
            // 3...1002 with a gap at 7 and an unsequenced message: every kind of write.
            var batch = inbound((3...1002).filter { $0 != 7 }.map { UInt64($0) })
            batch.insert(inbound([nil])[0], at: 10)
            #expect(throws: StoreError.self) {
                try store.storeIncoming(from: alice, messages: batch, receivedAt: now) { index in
                    if index == 600 { throw InjectedFault() }
                }
            }
            #expect(try store.highestContiguousSeq(from: alice) == 2)
            #expect(try store.incoming(afterRowID: 0, from: nil, limit: 10_000).map(\.seq) == [1, 2])
            let ahead = try store.writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM incoming_ahead") }
            #expect(ahead == 0)
            // The same batch, now without the fault, is stored whole.
            let result = try store.storeIncoming(from: alice, messages: batch, receivedAt: now)
            #expect(result.stored.count == 1000)
            #expect(try store.highestContiguousSeq(from: alice) == 6)
        }
    }

    @Test func invalidInputIsRejectedBeforeAnythingIsWritten() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        let now = Date()
        var bad = inbound([1, 2])
        bad[1].id = [1, 2, 3]
        #expect(throws: StoreError.invalidMessageID(length: 3)) {
            try store.storeIncoming(from: alice, messages: bad, receivedAt: now)
        }
        #expect(throws: StoreError.invalidSequence(0)) {
            try store.storeIncoming(from: alice, messages: inbound([1, 0]), receivedAt: now)
        }
        #expect(throws: StoreError.invalidSequence(UInt64.max)) {
            try store.storeIncoming(from: alice, messages: inbound([UInt64.max]), receivedAt: now)
        }
        #expect(try store.incoming(afterRowID: 0, from: nil, limit: 10).isEmpty)
        #expect(try store.storeIncoming(from: alice, messages: [], receivedAt: now).stored.isEmpty)
    }
}
