import Foundation
import GRDB
import LNPCrypto
import Testing
@testable import LNPStore

/// Large payloads in segment files: real SQLite files and real segment files in a fresh
/// directory per test.
@Suite struct PayloadSegmentTests {
    static let threshold = MessageStore.defaultExternalPayloadThreshold

    func bytes(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    func size(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as! NSNumber).intValue
    }

    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! NSNumber).intValue & 0o777
    }

    /// (segment, stored blob length) of every outgoing row, in key order.
    func outgoingRows(_ store: MessageStore) throws -> [(segment: Int64?, inline: Int)] {
        try store.writer.read { db in
            try Row.fetchAll(db, sql: "SELECT payload_segment, length(payload) FROM outgoing ORDER BY key").map { ($0[0], $0[1]) }
        }
    }

    func committedEnd(_ store: MessageStore) throws -> Int64? {
        try store.writer.read { db in
            try Int64.fetchOne(db, sql: "SELECT committed_end FROM payload_segment ORDER BY id DESC LIMIT 1")
        }
    }

    @Test func largePayloadsRoundTripOutAndIn() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let store = try MessageStore(path: path)
            let alice = newKey(), bob = newKey()
            let outgoing: [(type: UInt16, payload: [UInt8])] = [
                (40_001, bytes(100)), (40_002, bytes(1 << 20, seed: 2)), (40_003, bytes(Self.threshold, seed: 3)),
                (40_004, bytes(3 << 20, seed: 4)), (40_005, bytes(20_000, seed: 5)),
            ]
            let sent = try store.enqueue(to: alice, messages: outgoing)
            #expect(sent.map(\.payload) == outgoing.map(\.payload))
            let page = try store.undelivered(to: alice, afterSeq: 0, limit: 10)
            #expect(page.map(\.payload) == outgoing.map(\.payload))
            #expect(page.map(\.type) == outgoing.map(\.type))
            #expect(try store.status(of: sent[3].id)?.payload == outgoing[3].payload)
            let rows = try outgoingRows(store)
            #expect(rows.map { $0.segment != nil } == [false, true, true, true, false])
            #expect(rows.map(\.inline) == [100, 0, 0, 0, 20_000])

            let inbound: [(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])] = [
                (SecureRandom.bytes(16), 1, 7, bytes(2 << 20, seed: 6)), (SecureRandom.bytes(16), 2, 7, bytes(10, seed: 7)),
                (SecureRandom.bytes(16), nil, 9, bytes(Self.threshold + 1, seed: 8)),
            ]
            let result = try store.storeIncoming(from: bob, messages: inbound, receivedAt: Date())
            #expect(result.stored.count == 3)
            let read = try store.incoming(afterRowID: 0, from: bob, limit: 10)
            #expect(read == result.stored)
            #expect(read.map(\.payload) == inbound.map(\.payload))
            #expect(try store.incoming(afterRowID: 0, from: nil, limit: 10) == result.stored)

            let directory = MessageStore.payloadDirectory(forDatabaseAt: path)
            #expect(try mode(directory) == 0o700)
            let segment = directory + "/00000001.seg"
            #expect(try mode(segment) == 0o600)
            let external = (1 << 20) + Self.threshold + (3 << 20) + (2 << 20) + Self.threshold + 1
            #expect(try size(segment) == external)
            #expect(try committedEnd(store) == Int64(external))
        }
    }

    @Test func aPayloadBelowTheThresholdStaysInline() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            let alice = newKey()
            let messages: [(type: UInt16, payload: [UInt8])] = [(1, bytes(Self.threshold - 1)), (1, bytes(Self.threshold))]
            _ = try store.enqueue(to: alice, messages: messages)
            let rows = try outgoingRows(store)
            #expect(rows[0].segment == nil && rows[0].inline == Self.threshold - 1)
            #expect(rows[1].segment == 1 && rows[1].inline == 0)
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 2).map(\.payload) == messages.map(\.payload))
        }
    }

    /// With a threshold below the size SQLite copies in blocks of rows, every payload still
    /// goes exactly one way.
    @Test func aLowThresholdSendsSmallPayloadsToSegmentsOnce() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite", externalPayloadThreshold: 1_000)
            let alice = newKey(), bob = newKey()
            let messages: [(type: UInt16, payload: [UInt8])] = [(1, bytes(10)), (1, bytes(2_000)), (1, bytes(20_000)), (1, bytes(999))]
            _ = try store.enqueue(to: alice, messages: messages)
            #expect(try outgoingRows(store).map(\.segment) == [nil, 1, 1, nil])
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == messages.map(\.payload))
            let inbound = messages.enumerated().map { (id: SecureRandom.bytes(16), seq: UInt64?(UInt64($0.offset + 1)), type: $0.element.type, payload: $0.element.payload) }
            _ = try store.storeIncoming(from: bob, messages: inbound, receivedAt: Date())
            #expect(try store.incoming(afterRowID: 0, from: bob, limit: 10).map(\.payload) == messages.map(\.payload))
            #expect(try committedEnd(store) == 2 * 22_000)
        }
    }

    @Test func aRestartReadsOldRows() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let alice = newKey(), bob = newKey()
            let big = bytes(1 << 20, seed: 9)
            var received: [StoredIncoming] = []
            do {
                let store = try MessageStore(path: path)
                _ = try store.enqueue(to: alice, messages: [(1, big), (2, bytes(5))])
                received = try store.storeIncoming(from: bob, messages: [(SecureRandom.bytes(16), 1, 3, big)], receivedAt: Date()).stored
                // No close(): the process may die at any point after a call returns.
            }
            let store = try MessageStore(path: path)
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == [big, bytes(5)])
            #expect(try store.incoming(afterRowID: 0, from: nil, limit: 10) == received)
            // Appending goes on in the same segment after the committed end.
            _ = try store.enqueue(to: alice, messages: [(1, bytes(Self.threshold, seed: 10))])
            #expect(try committedEnd(store) == Int64(2 * big.count + Self.threshold))
            #expect(try store.undelivered(to: alice, afterSeq: 2, limit: 10).map(\.payload) == [bytes(Self.threshold, seed: 10)])
        }
    }

    /// A transaction that wrote its payloads and then did not commit (here: a fault
    /// injected before its rows, as a crash would) leaves bytes nothing refers to. They
    /// are written over by the next append and cut off when the store opens.
    @Test func anUncommittedTailIsHarmlessAndTruncated() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let segment = MessageStore.payloadDirectory(forDatabaseAt: path) + "/00000001.seg"
            let alice = newKey(), bob = newKey()
            let first = bytes(200_000, seed: 1), lost = bytes(500_000, seed: 2), next = bytes(100_000, seed: 3)
            do {
                let store = try MessageStore(path: path)
                _ = try store.enqueue(to: alice, messages: [(1, first)])
                #expect(throws: StoreError.self) {
                    try store.enqueue(to: alice, messages: [(1, lost)], expiresAt: nil, beforeRow: { _ in throw InjectedFault() })
                }
                #expect(throws: StoreError.self) {
                    try store.storeIncoming(from: bob, messages: [(SecureRandom.bytes(16), 1, 1, lost)], receivedAt: Date(),
                                            beforeRow: { _ in throw InjectedFault() })
                }
                #expect(try size(segment) == first.count + lost.count)
                #expect(try committedEnd(store) == Int64(first.count))
                #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == [first])
                #expect(try store.incoming(afterRowID: 0, from: nil, limit: 10).isEmpty)
                // The orphan tail is written over: the next payload starts at the committed end.
                _ = try store.enqueue(to: alice, messages: [(1, next)])
                #expect(try committedEnd(store) == Int64(first.count + next.count))
                #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == [first, next])
                // A crash after a later write: bytes past the end again.
                #expect(throws: StoreError.self) {
                    try store.enqueue(to: alice, messages: [(1, lost)], expiresAt: nil, beforeRow: { _ in throw InjectedFault() })
                }
                #expect(try size(segment) == first.count + next.count + lost.count)
            }
            let reopened = try MessageStore(path: path)
            #expect(try size(segment) == first.count + next.count)
            #expect(try reopened.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == [first, next])
            #expect(try reopened.highestContiguousSeq(from: bob) == 0)
            let stored = try reopened.storeIncoming(from: bob, messages: [(SecureRandom.bytes(16), 1, 1, lost)], receivedAt: Date())
            #expect(try reopened.incoming(afterRowID: 0, from: bob, limit: 10) == stored.stored)
        }
    }

    @Test func aShortOrMissingSegmentIsATypedError() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let segment = MessageStore.payloadDirectory(forDatabaseAt: path) + "/00000001.seg"
            let alice = newKey(), bob = newKey()
            let sent: [StoredOutgoing]
            do {
                let store = try MessageStore(path: path)
                sent = try store.enqueue(to: alice, messages: [(1, bytes(10)), (1, bytes(300_000))])
                _ = try store.storeIncoming(from: bob, messages: [(SecureRandom.bytes(16), 1, 1, bytes(100_000))], receivedAt: Date())
                try store.close()
            }
            // Damaged behind the store's back: cut inside the incoming payload.
            #expect(truncate(segment, 350_000) == 0)
            let store = try MessageStore(path: path)
            // Outgoing payload intact; incoming one short.
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload.count) == [10, 300_000])
            #expect {
                try store.incoming(afterRowID: 0, from: nil, limit: 10)
            } throws: { error in
                guard case let .payloadUnreadable(file, offset, length, reason)? = error as? StoreError else { return false }
                return file == segment && offset == 300_000 && length == 100_000
                    && reason == "the file ends 50000 bytes before the payload does"
            }
            try store.close()

            try FileManager.default.removeItem(atPath: segment)
            let withoutFile = try MessageStore(path: path)
            #expect(try withoutFile.undelivered(to: alice, afterSeq: 0, limit: 1).map(\.payload) == [bytes(10)])
            #expect(throws: StoreError.payloadUnreadable(path: segment, offset: 0, length: 300_000, reason: "the file is missing")) {
                try withoutFile.undelivered(to: alice, afterSeq: 0, limit: 10)
            }
            #expect(throws: StoreError.payloadUnreadable(path: segment, offset: 0, length: 300_000, reason: "the file is missing")) {
                try withoutFile.status(of: sent[1].id)
            }
            // Writing never recreates a segment that rows refer to.
            #expect(throws: StoreError.self) { try withoutFile.enqueue(to: alice, messages: [(1, bytes(70_000))]) }
            #expect(StoreError.payloadUnreadable(path: "/d/00000001.seg", offset: 5, length: 9, reason: "the file is missing").description
                == "the payload of a stored message (9 bytes at offset 5 of /d/00000001.seg) cannot be read: the file is missing")
        }
    }

    @Test func segmentsRotateAtTheirLimit() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let store = try MessageStore(path: path, externalPayloadThreshold: Self.threshold, segmentLimit: 250_000)
            let alice = newKey()
            let messages = (0..<7).map { (type: UInt16(1), payload: bytes(100_000, seed: UInt8($0))) }
            _ = try store.enqueue(to: alice, messages: Array(messages[0..<3]))
            _ = try store.enqueue(to: alice, messages: Array(messages[3...]))
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == messages.map(\.payload))
            let directory = MessageStore.payloadDirectory(forDatabaseAt: path)
            let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
            #expect(files == ["00000001.seg", "00000002.seg", "00000003.seg", "00000004.seg"])
            #expect(try files.map { try size(directory + "/" + $0) } == [200_000, 200_000, 200_000, 100_000])
        }
    }

    @Test func unsequencedLargeDuplicatesWriteNothing() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/store.sqlite")
            let bob = newKey(), id = SecureRandom.bytes(16)
            let big = bytes(Self.threshold, seed: 4)
            let first = try store.storeIncoming(from: bob, messages: [(id, nil, 1, big), (id, nil, 1, big), (id, nil, 1, bytes(3))],
                                                receivedAt: Date())
            #expect(first.stored.map(\.payload) == [big])
            #expect(first.duplicates == 2)
            let again = try store.storeIncoming(from: bob, messages: [(id, nil, 1, big)], receivedAt: Date())
            #expect(again.stored.isEmpty && again.duplicates == 1)
            #expect(try committedEnd(store) == Int64(big.count))
            #expect(try store.incoming(afterRowID: 0, from: bob, limit: 10).map(\.payload) == [big])
        }
    }

    /// A file written by the version before segment files (migrations v1 and v2 only,
    /// rows as that version wrote them, large payloads inline) opens, migrates and reads.
    @Test func aStoreFromThePreviousSchemaOpens() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/store.sqlite"
            let alice = newKey(), bob = newKey()
            let inlineLarge = bytes(200_000, seed: 11)
            do {
                let old = try DatabaseQueue(path: path)
                try Schema.migrator(through: "v2-spool-receipts").migrate(old)
                #expect(try old.read { db in try Schema.migrator.hasCompletedMigrations(db) } == false)
                try old.write { db in
                    try db.execute(sql: """
                        INSERT INTO node (ref, key, out_slot, out_last_seq) VALUES (1, ?, 1, 2);
                        INSERT INTO node (ref, key, in_contiguous) VALUES (2, ?, 1);
                        INSERT INTO outgoing_batch (prefix, first_key, last_key) VALUES (?, ?, ?);
                        INSERT INTO outgoing (key, id, type, created_at, payload) VALUES (?, ?, 5, 1000, ?), (?, ?, 6, 1000, ?);
                        INSERT INTO incoming (row, sender, id, seq, type, received_at, payload) VALUES (1, 2, ?, 1, 7, 2000, ?);
                        INSERT INTO incoming_batch (sender, last_row, first_row) VALUES (2, 1, 1);
                        """, arguments: [
                            Data(alice.compressed), Data(bob.compressed),
                            Data(repeating: 1, count: 8), (1 << 40) | 1, (1 << 40) | 2,
                            (1 << 40) | 1, Data(repeating: 1, count: 16), Data(bytes(10)),
                            (1 << 40) | 2, Data(repeating: 1, count: 8) + Data(repeating: 2, count: 8), Data(inlineLarge),
                            Data(repeating: 3, count: 16), Data(inlineLarge),
                        ])
                }
                try old.close()
            }
            let store = try MessageStore(path: path)
            #expect(try store.writer.read { db in try Schema.migrator.hasCompletedMigrations(db) })
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == [bytes(10), inlineLarge])
            let incoming = try store.incoming(afterRowID: 0, from: bob, limit: 10)
            #expect(incoming.map(\.payload) == [inlineLarge])
            #expect(incoming.map(\.seq) == [1])
            // New large messages go to a segment, numbered after the old ones.
            let sent = try store.enqueue(to: alice, messages: [(1, inlineLarge)])
            #expect(sent.map(\.seq) == [3])
            #expect(try outgoingRows(store).map { $0.segment } == [nil, nil, 1])
            #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).map(\.payload) == [bytes(10), inlineLarge, inlineLarge])
            _ = try store.storeIncoming(from: bob, messages: [(SecureRandom.bytes(16), 2, 7, inlineLarge)], receivedAt: Date())
            #expect(try store.incoming(afterRowID: 0, from: bob, limit: 10).map(\.payload) == [inlineLarge, inlineLarge])
        }
    }
}
