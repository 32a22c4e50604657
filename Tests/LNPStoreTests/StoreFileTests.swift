import Foundation
import GRDB
import LNPCrypto
import Testing
@testable import LNPStore

@Suite struct StoreFileTests {
    func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as! NSNumber).intValue & 0o777
    }

    @Test func filesAreOwnerOnly() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let store = try MessageStore(path: path)
            _ = try store.enqueue(to: newKey(), messages: payloads(10))
            for file in [path, path + "-wal", path + "-shm"] {
                #expect(FileManager.default.fileExists(atPath: file))
                #expect(try mode(file) == 0o600, "\(file)")
            }
            try store.close()
            // A file someone widened is narrowed again on open.
            for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
                chmod(file, 0o644)
            }
            let reopened = try MessageStore(path: path)
            _ = try reopened.enqueue(to: newKey(), messages: payloads(1))
            for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
                #expect(try mode(file) == 0o600, "\(file)")
            }
        }
    }

    /// The writer no longer checkpoints at SQLite's default 1,000 pages; the checkpoint
    /// thread copies committed pages into the database file within a few rounds.
    @Test func checkpointsRunBesideTheWriter() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let store = try MessageStore(path: path)
            let threshold = try store.writer.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") }
            #expect(threshold == Int(WALCheckpointer.writerThresholdPages))
            func size(_ file: String) throws -> Int {
                (try FileManager.default.attributesOfItem(atPath: file)[.size] as! NSNumber).intValue
            }
            let before = try size(path)
            // 4 MiB of messages: far below the writer's own threshold (128 MiB).
            for _ in 0..<4 { _ = try store.enqueue(to: newKey(), messages: payloads(1_000, size: 1_024)) }
            let deadline = Date(timeIntervalSinceNow: 5)
            while try size(path) < before + (3 << 20), Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            #expect(try size(path) >= before + (3 << 20), "the database file did not grow: nothing was checkpointed")
            try store.close()
            let reopened = try MessageStore(path: path)
            #expect(try reopened.recipientsWithUndelivered().count == 4)
            try reopened.close()
        }
    }

    @Test func walFullSyncAndPageSize() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            // 2 = FULL. The writer is the connection that commits.
            let writer = try store.writer.writeWithoutTransaction { db in
                (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
            }
            #expect(writer.0 == "wal")
            #expect(writer.1 == 2)
            let reader = try store.writer.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
            #expect(reader == 2)
            let pageSize = try store.writer.read { db in try Int.fetchOne(db, sql: "PRAGMA page_size") }
            #expect(pageSize == 16384)
        }
    }

    @Test func everythingSurvivesARestart() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let alice = newKey(), bob = newKey()
            let connected = Date(timeIntervalSince1970: 1_750_000_000.5)
            var sent: [StoredOutgoing] = []
            var received: [StoredIncoming] = []
            do {
                let store = try MessageStore(path: path)
                sent = try store.enqueue(to: alice, messages: payloads(6), expiresAt: Date(timeIntervalSinceNow: 3600))
                try store.markSent(to: alice, throughSeq: 4, link: "tcp")
                try store.markDelivered(to: alice, throughSeq: 2)
                received = try store.storeIncoming(from: bob, messages: inbound([1, 2, 4]), receivedAt: Date()).stored
                try store.upsertPeer(alice, address: "\(alice.hex)@127.0.0.1:9735", persistent: true, connectedAt: connected)
                // No close(): the process may die at any point after a call returns.
            }
            let store = try MessageStore(path: path)
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.seq) == [3, 4, 5, 6])
            #expect(try sent.map { try store.status(of: $0.id)!.state }
                == [.delivered, .delivered, .sent, .sent, .queued, .queued])
            #expect(try store.status(of: sent[5].id)!.payload == sent[5].payload)
            #expect(try store.recipientsWithUndelivered() == [alice])
            #expect(try store.incoming(afterRowID: 0, from: nil, limit: 10) == received)
            #expect(try store.highestContiguousSeq(from: bob) == 2)
            #expect(try store.storeIncoming(from: bob, messages: inbound([4, 3]), receivedAt: Date()).stored.map(\.seq) == [3])
            #expect(try store.highestContiguousSeq(from: bob) == 4)
            #expect(try store.peers() == [StoredPeer(
                nodeID: alice, addresses: ["\(alice.hex)@127.0.0.1:9735"], persistent: true, lastConnectedAt: connected)])
            #expect(try store.enqueue(to: alice, messages: payloads(1))[0].seq == 7)
        }
    }

    /// lnpd opens the file once for peerd and once for msgd: two writers on one file take
    /// turns (immediate transactions, busy timeout) and share one numbering.
    @Test func twoStoresOnOneFileTakeTurns() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let first = try MessageStore(path: path), second = try MessageStore(path: path)
            let alice = newKey(), bob = newKey()
            let seqs = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for store in [first, second] {
                    group.addTask {
                        var seqs: [UInt64] = []
                        for round in 0..<20 {
                            seqs += try store.enqueue(to: alice, messages: payloads(50)).map(\.seq)
                            _ = try store.storeIncoming(from: bob, messages: inbound([nil]), receivedAt: Date())
                            try store.upsertPeer(bob, address: "\(bob.hex)@127.0.0.1:\(round + 1)", persistent: true)
                        }
                        return seqs
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(seqs.sorted() == Array(1...2000))
            #expect(try first.incoming(afterRowID: 0, from: bob, limit: 100).count == 40)
            #expect(try second.peer(bob)?.addresses.count == 20)
        }
    }

    @Test func aClosedStoreRefusesCalls() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            try store.close()
            #expect(throws: StoreError.self) { try store.enqueue(to: newKey(), messages: payloads(1)) }
        }
    }

    @Test func aPathThatCannotBeOpenedIsATypedError() throws {
        try withTemporaryDirectory { dir in
            #expect {
                try MessageStore(path: dir + "/missing/store.sqlite")
            } throws: { error in
                guard case let .cannotOpen(path, _)? = error as? StoreError else { return false }
                return path.hasSuffix("missing/store.sqlite")
            }
            // Not a database.
            let junk = dir + "/junk.sqlite"
            try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: junk))
            #expect(throws: StoreError.self) { try MessageStore(path: junk) }
        }
    }

    @Test func aNewerSchemaIsRefused() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            do {
                let store = try MessageStore(path: path)
                try store.writer.write { db in
                    try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v999-from-the-future')")
                }
            }
            #expect(throws: StoreError.unknownSchema("it has migrations this version does not know")) {
                try MessageStore(path: path)
            }
        }
    }

    @Test func errorsReadAsSentences() {
        #expect(StoreError.invalidMessageID(length: 3).description == "a message id must be 16 bytes, got 3")
        #expect(StoreError.payloadTooLarge(size: 20, limit: 10).description
            == "a message payload of 20 bytes exceeds the limit of 10 bytes")
        #expect(StoreError.cannotOpen(path: "/x", reason: "No such file or directory").description
            == "cannot open the message store at /x: No such file or directory")
    }
}
