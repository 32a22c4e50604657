import Foundation
import LNPCrypto
import Testing
@testable import LNPStore

/// What the store keeps for the spool link: the receipts owed to senders (`spool_receipt`),
/// receipts that list ids, and the replay check of an import.
@Suite struct SpoolReceiptTests {
    @Test func receiptsAreOwedAfterSpoolMessagesAndSettledByAnExport() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey(), carol = newKey()
        #expect(try store.spoolReceiptsOwed().isEmpty)

        _ = try store.storeIncoming(from: alice, messages: inbound([1, 2, 3]), receivedAt: Date())
        // Messages that came over TCP alone are acknowledged there, not by spool.
        #expect(try store.spoolReceiptsOwed().isEmpty)
        try store.noteSpoolReceiptOwed(to: alice)
        #expect(try store.spoolReceiptsOwed() == [SpoolReceiptOwed(node: alice, throughSeq: 3)])
        try store.recordSpoolReceiptExported(to: alice, throughSeq: 3)
        #expect(try store.spoolReceiptsOwed().isEmpty)

        // The mark moves (by any link): owed again, without a new note.
        _ = try store.storeIncoming(from: alice, messages: inbound([4]), receivedAt: Date())
        #expect(try store.spoolReceiptsOwed() == [SpoolReceiptOwed(node: alice, throughSeq: 4)])
        try store.recordSpoolReceiptExported(to: alice, throughSeq: 4)
        // Only duplicates came: the sender did not get our receipt, so it is owed again.
        try store.noteSpoolReceiptOwed(to: alice)
        #expect(try store.spoolReceiptsOwed() == [SpoolReceiptOwed(node: alice, throughSeq: 4)])
        // An older export recorded late does not move the mark back.
        try store.recordSpoolReceiptExported(to: alice, throughSeq: 2)
        try store.noteSpoolReceiptOwed(to: alice)
        try store.recordSpoolReceiptExported(to: alice, throughSeq: 4)
        #expect(try store.spoolReceiptsOwed().isEmpty)

        // A sender whose first message is still missing is owed nothing a mark could say.
        _ = try store.storeIncoming(from: carol, messages: inbound([2]), receivedAt: Date())
        try store.noteSpoolReceiptOwed(to: carol)
        #expect(try store.spoolReceiptsOwed().isEmpty)
        _ = try store.storeIncoming(from: carol, messages: inbound([1]), receivedAt: Date())
        try store.noteSpoolReceiptOwed(to: alice)
        #expect(try store.spoolReceiptsOwed().map(\.node).sorted { $0.hex < $1.hex } == [alice, carol].sorted { $0.hex < $1.hex })
        #expect(try store.spoolReceiptsOwed(only: carol) == [SpoolReceiptOwed(node: carol, throughSeq: 2)])
    }

    @Test func receiptsSurviveReopeningTheFile() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/node.sqlite"
            let alice = newKey()
            do {
                let store = try MessageStore(path: path)
                _ = try store.storeIncoming(from: alice, messages: inbound([1, 2]), receivedAt: Date())
                try store.noteSpoolReceiptOwed(to: alice)
                try store.close()
            }
            let reopened = try MessageStore(path: path)
            #expect(try reopened.spoolReceiptsOwed() == [SpoolReceiptOwed(node: alice, throughSeq: 2)])
            try reopened.close()
        }
    }

    @Test func receiptIdsCountOnlyFromTheRecipient() throws {
        let store = try MessageStore.inMemory()
        let bob = newKey(), mallory = newKey()
        let sent = try store.enqueue(to: bob, messages: payloads(3))
        _ = try store.enqueue(to: mallory, messages: payloads(1))
        #expect(try store.markDelivered(ids: [sent[1].id], to: mallory) == 0)
        #expect(try store.status(of: sent[1].id)?.state == .queued)
        #expect(try store.markDelivered(ids: [sent[1].id, SecureRandom.bytes(16), [1, 2]], to: bob) == 1)
        #expect(try store.status(of: sent[1].id)?.state == .delivered)
        #expect(try store.undelivered(to: bob, afterSeq: 0, limit: 10).map(\.seq) == [1, 3])
        // Again: already delivered, nothing changes.
        #expect(try store.markDelivered(ids: [sent[1].id], to: bob) == 0)
    }

    @Test func theReplayCheckFindsWhatTheStoreHolds() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        let unsequencedID = SecureRandom.bytes(16)
        _ = try store.storeIncoming(from: alice, messages: inbound([1, 2, 5, nil], ids: [SecureRandom.bytes(16), SecureRandom.bytes(16),
                                                                                        SecureRandom.bytes(16), unsequencedID]),
                                    receivedAt: Date())
        let check = ReceivedCheck(store: store)
        #expect(check.contains(from: alice, seq: 2, id: SecureRandom.bytes(16)))
        #expect(check.contains(from: alice, seq: 5, id: SecureRandom.bytes(16)), "held above the gap")
        #expect(!check.contains(from: alice, seq: 3, id: SecureRandom.bytes(16)))
        #expect(check.contains(from: alice, seq: nil, id: unsequencedID))
        #expect(!check.contains(from: alice, seq: nil, id: SecureRandom.bytes(16)))
        #expect(!check.contains(from: newKey(), seq: 1, id: SecureRandom.bytes(16)))
        // Marks are read once per pass; after storing, `refresh` reads them again.
        _ = try store.storeIncoming(from: alice, messages: inbound([3, 4]), receivedAt: Date())
        check.refresh()
        #expect(check.contains(from: alice, seq: 3, id: SecureRandom.bytes(16)))
    }
}
