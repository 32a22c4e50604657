import Foundation
import GRDB
import LNPCrypto

/// A receipt msgd owes a node that sent it messages by spool: everything from that node up to
/// `throughSeq` was received.
public struct SpoolReceiptOwed: Sendable, Equatable {
    public let node: PublicKey
    public let throughSeq: UInt64
}

extension MessageStore {
    /// Remembers that messages from `sender` came in by spool, so the next export carries a
    /// receipt back to it, even when they were all duplicates: a sender re-exports what we
    /// have not acknowledged, which means our last receipt never reached it.
    public func noteSpoolReceiptOwed(to sender: PublicKey) throws(StoreError) {
        try writing { db in
            let node = try node(db, sender, create: true)!
            let upsert = try RawStatement(db, """
                INSERT INTO spool_receipt (node, owed) VALUES (?, 1) ON CONFLICT (node) DO UPDATE SET owed = 1
                """)
            upsert.bind(1, node.ref)
            try upsert.run()
        }
    }

    /// The receipts owed, `only` one node or all: for each node that sent us messages by spool
    /// and either sent more since the last export or has a contiguous mark above the one last
    /// exported. A node whose contiguous mark is still 0 (only messages above a gap came) is
    /// owed nothing yet: a cumulative receipt cannot say anything about it.
    public func spoolReceiptsOwed(only: PublicKey? = nil) throws(StoreError) -> [SpoolReceiptOwed] {
        try reading { db in
            let select = try RawStatement(db, """
                SELECT node.ref, node.in_contiguous FROM spool_receipt JOIN node ON node.ref = spool_receipt.node
                WHERE node.in_contiguous > 0 AND (spool_receipt.owed = 1 OR node.in_contiguous > spool_receipt.exported_through)
                ORDER BY node.ref
                """)
            defer { select.reset() }
            var rows: [(Int64, Int64)] = []
            while try select.step() { rows.append((select.int64(0), select.int64(1))) }
            return try rows.compactMap { ref, through in
                let key = try key(db, ref: ref)
                if let only, only != key { return nil }
                return SpoolReceiptOwed(node: key, throughSeq: UInt64(through))
            }
        }
    }

    /// The receipt to `node` up to `throughSeq` is written into a bundle: nothing more is owed
    /// until more messages come or the mark moves past it.
    public func recordSpoolReceiptExported(to peer: PublicKey, throughSeq: UInt64) throws(StoreError) {
        try writing { db in
            guard let row = try node(db, peer, create: false) else { return }
            let update = try RawStatement(db, """
                UPDATE spool_receipt SET owed = 0, exported_through = max(exported_through, ?) WHERE node = ?
                """)
            update.bind(1, Self.bound(throughSeq))
            update.bind(2, row.ref)
            try update.run()
        }
    }

    /// A receipt from `recipient` lists these message ids: each that was sent to that node and
    /// is still owed becomes delivered. Ids of messages to other nodes are ignored (a receipt
    /// counts only from the node a message was sealed to). Returns how many changed.
    @discardableResult
    public func markDelivered(ids: [[UInt8]], to recipient: PublicKey) throws(StoreError) -> Int {
        try writing { db in
            guard let node = try node(db, recipient, create: false), let slot = node.outSlot else { return 0 }
            let locate = try RawStatement(db, "SELECT first_key, last_key FROM outgoing_batch WHERE prefix = ?")
            let update = try RawStatement(db, """
                UPDATE outgoing SET state = 2 WHERE key BETWEEN ? AND ? AND id = ? AND state = 0 AND key >> \(OutgoingKey.seqBits) = ?
                """)
            var changed = 0
            for id in ids where id.count == 16 {
                locate.bind(1, Array(id[0..<8]))
                defer { locate.reset() }
                guard try locate.step() else { continue }
                update.bind(1, locate.int64(0))
                update.bind(2, locate.int64(1))
                update.bind(3, id)
                update.bind(4, slot)
                try update.run()
                changed += update.changes
            }
            return changed
        }
    }
}

/// What a spool import asks the store before it takes a message in, cheaply for a whole pass:
/// each sender's contiguous mark is read once, and only a message above it costs a lookup.
public final class ReceivedCheck {
    private let store: MessageStore
    private var contiguous: [PublicKey: UInt64] = [:]

    public init(store: MessageStore) { self.store = store }

    /// Whether the store holds this message from `sender`: by sequence number when it has one
    /// (the way the store deduplicates it), else by id. A store error answers "no": the
    /// message then goes on to `storeIncoming`, which drops it if it is held after all.
    public func contains(from sender: PublicKey, seq: UInt64?, id: [UInt8]) -> Bool {
        do throws(StoreError) {
            guard let seq else { return try store.holdsUnsequenced(from: sender, id: id) }
            let mark: UInt64
            if let known = contiguous[sender] {
                mark = known
            } else {
                mark = try store.highestContiguousSeq(from: sender)
                contiguous[sender] = mark
            }
            if seq <= mark { return true }
            return try store.holdsAhead(from: sender, seq: seq)
        } catch {
            return false
        }
    }

    /// Forget the marks read: messages were stored since.
    public func refresh() { contiguous = [:] }
}

extension MessageStore {
    /// Whether a message from `sender` above its contiguous mark was received (`incoming_ahead`).
    public func holdsAhead(from sender: PublicKey, seq: UInt64) throws(StoreError) -> Bool {
        guard seq <= UInt64(Int64.max) else { return false }
        return try reading { db in
            guard let node = try node(db, sender, create: false) else { return false }
            let select = try RawStatement(db, "SELECT 1 FROM incoming_ahead WHERE sender = ? AND seq = ?")
            defer { select.reset() }
            select.bind(1, node.ref)
            select.bind(2, Int64(seq))
            return try select.step()
        }
    }

    /// Whether the store holds a message without a sequence number from `sender` with this id.
    public func holdsUnsequenced(from sender: PublicKey, id: [UInt8]) throws(StoreError) -> Bool {
        try reading { db in
            guard let node = try node(db, sender, create: false) else { return false }
            let select = try RawStatement(db, "SELECT 1 FROM incoming WHERE sender = ? AND id = ? AND seq IS NULL")
            defer { select.reset() }
            select.bind(1, node.ref)
            select.bind(2, id)
            return try select.step()
        }
    }
}
