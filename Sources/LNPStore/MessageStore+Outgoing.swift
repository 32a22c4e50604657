import Foundation
import GRDB
import LNPCrypto

extension MessageStore {
    /// Stores a batch of messages for `recipient` in one transaction and returns them as
    /// stored: each with a fresh random 16-byte id and the next sequence numbers for this
    /// recipient, contiguous with every earlier batch. Either the whole batch is on disk
    /// when this returns, or none of it is.
    public func enqueue(
        to recipient: PublicKey,
        messages: [(type: UInt16, payload: [UInt8])],
        expiresAt: Date? = nil
    ) throws(StoreError) -> [StoredOutgoing] {
        try enqueue(to: recipient, messages: messages, expiresAt: expiresAt, beforeRow: { _ in })
    }

    /// `beforeRow` runs inside the transaction before each row is written; a test throws
    /// from it to prove that a batch failing half-way leaves nothing behind.
    func enqueue(
        to recipient: PublicKey,
        messages: [(type: UInt16, payload: [UInt8])],
        expiresAt: Date?,
        beforeRow: (Int) throws -> Void
    ) throws(StoreError) -> [StoredOutgoing] {
        guard !messages.isEmpty else { return [] }
        guard messages.count <= Self.maxBatchCount else {
            throw .batchTooLarge(count: messages.count, limit: Self.maxBatchCount)
        }
        for message in messages where message.payload.count > Self.maxPayloadBytes {
            throw .payloadTooLarge(size: message.payload.count, limit: Self.maxPayloadBytes)
        }
        let createdMillis = Millis.from(Date())
        let createdAt = Millis.date(createdMillis)
        let expiresMillis = expiresAt.map(Millis.from)
        let expires = expiresMillis.map(Millis.date)

        return try writing { db in
            var node = try node(db, recipient, create: true)!
            guard node.outLastSeq <= OutgoingKey.maxSeq - Int64(messages.count) else {
                throw StoreError.full("\(recipient) would pass sequence number \(OutgoingKey.maxSeq)")
            }
            if node.outSlot == nil {
                node.outSlot = try assignSlot(db, ref: node.ref)
            }
            let ids = try freshIDs(db, count: messages.count)
            let batch = try RawStatement(db, """
                INSERT INTO outgoing_batch (prefix, first_key, last_key) VALUES (?, ?, ?)
                """)
            batch.bind(1, Array(ids[0][0..<8]))
            batch.bind(2, node.key(node.outLastSeq + 1))
            batch.bind(3, node.key(node.outLastSeq + Int64(messages.count)))
            try batch.run()

            // The largest payloads go to segment files first, durably, so the rows that
            // refer to them commit after them (see `PayloadSegments`).
            let external = messages.indices.filter { isExternal(messages[$0].payload) }
            let locations = try appendPayloads(db, external.map { messages[$0].payload })
            // Small payloads in blocks of rows, each copied once into SQLite; larger ones one
            // by one, bound in place.
            let insert = try BlockInsert(db, Self.insertOutgoing)
            insert.bindShared { statement in
                statement.bind(1, createdMillis)
                statement.bind(2, expiresMillis)
            }
            let small = messages.indices.filter {
                messages[$0].payload.count <= Self.copiedPayloadLimit && !isExternal(messages[$0].payload)
            }
            try insert.insert(count: small.count) { statement, parameter, row in
                let index = small[row]
                try beforeRow(index)
                statement.bind(parameter, node.key(node.outLastSeq + 1 + Int64(index)))
                statement.bind(parameter + 1, ids[index])
                statement.bind(parameter + 2, Int64(messages[index].type))
                statement.bind(parameter + 3, messages[index].payload)
            }
            if !external.isEmpty {
                let referring = try RawStatement(db, """
                    INSERT INTO outgoing (created_at, expires_at, key, id, type, payload, payload_segment, payload_offset, payload_length)
                    VALUES (?, ?, ?, ?, ?, X'', ?, ?, ?)
                    """)
                referring.bind(1, createdMillis)
                referring.bind(2, expiresMillis)
                for (index, location) in zip(external, locations) {
                    try beforeRow(index)
                    referring.bind(3, node.key(node.outLastSeq + 1 + Int64(index)))
                    referring.bind(4, ids[index])
                    referring.bind(5, Int64(messages[index].type))
                    referring.bind(6, location)
                    try referring.run()
                }
            }
            if small.count + external.count < messages.count {
                for index in messages.indices
                where messages[index].payload.count > Self.copiedPayloadLimit && !isExternal(messages[index].payload) {
                    try beforeRow(index)
                    insert.single.bind(3, node.key(node.outLastSeq + 1 + Int64(index)))
                    insert.single.bind(4, ids[index])
                    insert.single.bind(5, Int64(messages[index].type))
                    try insert.single.withBorrowed(6, messages[index].payload) { try insert.single.run() }
                }
            }
            let seq = node.outLastSeq + Int64(messages.count)
            let stored = messages.indices.map { index in
                StoredOutgoing(
                    id: ids[index], recipient: recipient, seq: UInt64(node.outLastSeq + 1 + Int64(index)),
                    type: messages[index].type, payload: messages[index].payload, createdAt: createdAt,
                    expiresAt: expires, state: .queued, link: nil)
            }
            let update = try RawStatement(db, "UPDATE node SET out_last_seq = ? WHERE ref = ?")
            update.bind(1, seq)
            update.bind(2, node.ref)
            try update.run()
            return stored
        }
    }

    private static let insertOutgoing = BlockInsert.Shape(
        into: "outgoing", shared: ["created_at", "expires_at"], perRow: ["key", "id", "type", "payload"])

    /// The next free slot, for a node's first outgoing message.
    private func assignSlot(_ db: Database, ref: Int64) throws -> Int64 {
        let next = try RawStatement(db, "SELECT coalesce(max(out_slot), 0) + 1 FROM node")
        defer { next.reset() }
        _ = try next.step()
        let slot = next.int64(0)
        guard slot <= OutgoingKey.maxSlot else {
            throw StoreError.full("it sends to \(OutgoingKey.maxSlot) nodes already")
        }
        let update = try RawStatement(db, "UPDATE node SET out_slot = ? WHERE ref = ?")
        update.bind(1, slot)
        update.bind(2, ref)
        try update.run()
        return slot
    }

    /// Ids for a new batch whose prefix no earlier batch used.
    private func freshIDs(_ db: Database, count: Int) throws -> [[UInt8]] {
        let used = try RawStatement(db, "SELECT 1 FROM outgoing_batch WHERE prefix = ?")
        defer { used.reset() }
        while true {
            let ids = Self.messageIDs(count: count)
            used.bind(1, Array(ids[0][0..<8]))
            if try !used.step() { return ids }
            used.reset()
        }
    }

    /// Fresh ids for one batch, all 16 bytes from the system's random source (libsodium):
    /// 8 bytes drawn once for the batch, then 8 bytes per message, in ascending order.
    ///
    /// Why not 16 independent bytes each: looking a message up by id then needs an index
    /// over every id, and a thousand independent random keys land on a thousand different
    /// B-tree pages, each rewritten in full to the WAL at commit: about one 4 KiB page per
    /// message once the index outgrows a few MB, which capped the store below 100,000
    /// messages/s. With a shared prefix the store indexes the batch instead (see
    /// `outgoing_batch`). A receiver that indexes ids still finds them side by side. The
    /// recipient learns nothing from the prefix or the order that the adjacent sequence
    /// numbers did not already tell it, and two ids collide only if a batch prefix repeats
    /// (the store checks) and then 64 more random bits match.
    static func messageIDs(count: Int) -> [[UInt8]] {
        let random = SecureRandom.bytes(8 + 8 * count)
        var suffixes = random.withUnsafeBytes { bytes in
            (0..<count).map { bytes.loadUnaligned(fromByteOffset: 8 + $0 * 8, as: UInt64.self) }
        }
        suffixes.sort()
        if zip(suffixes, suffixes.dropFirst()).contains(where: { $0 == $1 }) {
            return messageIDs(count: count)
        }
        return suffixes.map { suffix in
            [UInt8](unsafeUninitializedCapacity: 16) { id, initialized in
                for k in 0..<8 {
                    id[k] = random[k]
                    id[8 + k] = UInt8(truncatingIfNeeded: suffix >> (56 - 8 * k))
                }
                initialized = 16
            }
        }
    }

    /// Messages still owed to `recipient` (queued or sent) with a sequence number above
    /// `afterSeq`, lowest first.
    public func undelivered(to recipient: PublicKey, afterSeq: UInt64, limit: Int) throws(StoreError) -> [StoredOutgoing] {
        guard limit > 0 else { return [] }
        return try reading { db in
            guard let node = try node(db, recipient, create: false), node.outSlot != nil else { return [] }
            let select = try RawStatement(db, """
                SELECT key, id, type, created_at, expires_at, payload, payload_segment, payload_offset, payload_length FROM outgoing
                WHERE key > ? AND key <= ? AND state = 0
                ORDER BY key LIMIT ?
                """)
            defer { select.reset() }
            // Nothing at or below the delivered mark is owed: start the scan above it.
            select.bind(1, node.key(max(Self.bound(afterSeq), node.outDeliveredThrough)))
            select.bind(2, node.key(node.outLastSeq))
            select.bind(3, Int64(min(limit, Int(Int32.max))))
            var rows: [StoredOutgoing] = []
            while try select.step() {
                let seq = OutgoingKey.seq(select.int64(0))
                guard let type = UInt16(exactly: select.int64(2)) else {
                    throw StoreError.corruptRow("outgoing message \(seq) with type \(select.int64(2))")
                }
                rows.append(StoredOutgoing(
                    id: select.blob(1), recipient: recipient, seq: UInt64(seq), type: type,
                    payload: try payload(select, blob: 5, location: 6), createdAt: Millis.date(select.int64(3)),
                    expiresAt: select.optionalInt64(4).map(Millis.date), state: .queued, link: nil))
            }
            guard let first = rows.first?.seq, let last = rows.last?.seq else { return rows }
            var ranges = try sentRanges(db, recipient: node.ref, overlapping: Int64(first), Int64(last))[...]
            for index in rows.indices {
                let seq = Int64(rows[index].seq)
                while let range = ranges.first, range.through < seq { ranges.removeFirst() }
                if let range = ranges.first, range.after < seq {
                    rows[index].state = .sent
                    rows[index].link = range.link
                }
            }
            return rows
        }
    }

    /// Every recipient with at least one message still owed (queued or sent).
    public func recipientsWithUndelivered() throws(StoreError) -> [PublicKey] {
        try reading { db in
            let select = try RawStatement(db, """
                SELECT ref FROM node
                WHERE out_last_seq > out_delivered_through
                  AND EXISTS (SELECT 1 FROM outgoing
                              WHERE key > (node.out_slot << \(OutgoingKey.seqBits)) + node.out_delivered_through
                                AND key <= (node.out_slot << \(OutgoingKey.seqBits)) + node.out_last_seq
                                AND state = 0)
                ORDER BY ref
                """)
            defer { select.reset() }
            var refs: [Int64] = []
            while try select.step() { refs.append(select.int64(0)) }
            return try refs.map { try key(db, ref: $0) }
        }
    }

    /// Records that the messages to `recipient` numbered above `afterSeq` and up to
    /// `throughSeq` went out on `link`: those still owed become sent (a later call over the
    /// same messages, after a reconnect, records the new link). Costs the same for one
    /// message or a million: the store keeps ranges, not a flag per message.
    ///
    /// Pass the `afterSeq` of the `undelivered` page that was sent; the default covers every
    /// message not yet acknowledged.
    public func markSent(
        to recipient: PublicKey, afterSeq: UInt64 = 0, throughSeq: UInt64, link: String
    ) throws(StoreError) {
        try writing { db in
            guard let node = try node(db, recipient, create: false) else { return }
            let after = max(Self.bound(afterSeq), node.outDeliveredThrough)
            let through = min(Self.bound(throughSeq), node.outLastSeq)
            guard through > after else { return }
            try recordSent(db, recipient: node.ref, SentRange(after: after, through: through, link: link))
        }
    }

    /// The receiver acknowledged everything up to `throughSeq`: every message to it at or
    /// below that which was still owed is delivered. Acknowledgements are cumulative, so an
    /// older one arriving late changes nothing; one beyond the last assigned sequence
    /// number counts up to it only. Costs the same for any number of messages.
    public func markDelivered(to recipient: PublicKey, throughSeq: UInt64) throws(StoreError) {
        try writing { db in
            guard let node = try node(db, recipient, create: false) else { return }
            let through = min(Self.bound(throughSeq), node.outLastSeq)
            guard through > node.outDeliveredThrough else { return }
            let mark = try RawStatement(db, "UPDATE node SET out_delivered_through = ? WHERE ref = ?")
            mark.bind(1, through)
            mark.bind(2, node.ref)
            try mark.run()
        }
    }

    /// The highest sequence number S to `recipient` such that no message at or below S is
    /// still owed (each is delivered, expired or failed). msgd tells the receiver, so that
    /// a message that expired unsent does not hold back its count of contiguous messages
    /// (see `skipIncoming(from:through:)`).
    public func settledThrough(to recipient: PublicKey) throws(StoreError) -> UInt64 {
        try reading { db in
            guard let node = try node(db, recipient, create: false), node.outSlot != nil else { return 0 }
            let select = try RawStatement(db, """
                SELECT key FROM outgoing WHERE key > ? AND key <= ? AND state = 0 ORDER BY key LIMIT 1
                """)
            defer { select.reset() }
            select.bind(1, node.key(node.outDeliveredThrough))
            select.bind(2, node.key(node.outLastSeq))
            if try select.step() { return UInt64(OutgoingKey.seq(select.int64(0)) - 1) }
            return UInt64(node.outLastSeq)
        }
    }

    /// The message with this id, in its current state, or nil if this store never sent it.
    public func status(of id: [UInt8]) throws(StoreError) -> StoredOutgoing? {
        guard id.count == 16 else { return nil }
        return try reading { db in
            guard let rowKey = try locate(db, id: id) else { return nil }
            let select = try RawStatement(db, """
                SELECT type, created_at, expires_at, state, payload, out_delivered_through, ref,
                       payload_segment, payload_offset, payload_length
                FROM outgoing JOIN node ON node.out_slot = outgoing.key >> \(OutgoingKey.seqBits)
                WHERE outgoing.key = ?
                """)
            defer { select.reset() }
            select.bind(1, rowKey)
            guard try select.step() else { return nil }
            let ref = select.int64(6), seq = OutgoingKey.seq(rowKey)
            let typeValue = select.int64(0), stateValue = select.int64(3)
            guard let type = UInt16(exactly: typeValue), [0, 2, 3, 4].contains(stateValue) else {
                throw StoreError.corruptRow("outgoing message with type \(typeValue), state \(stateValue)")
            }
            let range = try sentRanges(db, recipient: ref, overlapping: seq, seq).first
            var state = OutgoingState(rawValue: UInt8(stateValue))!
            if state == .queued {
                if seq <= select.int64(5) {
                    state = .delivered
                } else if range != nil {
                    state = .sent
                }
            }
            return StoredOutgoing(
                id: id, recipient: try key(db, ref: ref), seq: UInt64(seq), type: type,
                payload: try payload(select, blob: 4, location: 7), createdAt: Millis.date(select.int64(1)),
                expiresAt: select.optionalInt64(2).map(Millis.date), state: state, link: range?.link)
        }
    }

    /// Every message still owed whose expiry is at or before `now` becomes expired and will
    /// not be sent again. Returns how many.
    @discardableResult
    public func expire(now: Date) throws(StoreError) -> Int {
        try writing { db in
            // The WHERE clauses repeat the partial index's condition so SQLite uses it.
            // Messages acknowledged before their expiry stay delivered; this is when their
            // rows say so, leaving the index.
            let delivered = try RawStatement(db, """
                UPDATE outgoing SET state = 2
                WHERE state = 0 AND expires_at IS NOT NULL AND expires_at <= ?
                  AND (key & \(OutgoingKey.maxSeq))
                      <= (SELECT out_delivered_through FROM node WHERE out_slot = outgoing.key >> \(OutgoingKey.seqBits))
                """)
            delivered.bind(1, Millis.from(now))
            try delivered.run()
            let expired = try RawStatement(db, """
                UPDATE outgoing SET state = 3
                WHERE state = 0 AND expires_at IS NOT NULL AND expires_at <= ?
                """)
            expired.bind(1, Millis.from(now))
            try expired.run()
            return expired.changes
        }
    }

    /// msgd gives up on a message still owed; it will not be sent again. Returns false when
    /// the message is unknown or no longer owed.
    @discardableResult
    public func markFailed(id: [UInt8]) throws(StoreError) -> Bool {
        guard id.count == 16 else { return false }
        return try writing { db in
            guard let key = try locate(db, id: id) else { return false }
            let update = try RawStatement(db, """
                UPDATE outgoing SET state = 4
                WHERE key = ?1 AND state = 0
                  AND (?1 & \(OutgoingKey.maxSeq)) > (SELECT out_delivered_through FROM node WHERE out_slot = ?1 >> \(OutgoingKey.seqBits))
                """)
            update.bind(1, key)
            try update.run()
            return update.changes == 1
        }
    }

    /// The `outgoing.key` of the message with this id: its batch from the id's prefix, then
    /// the message within the batch.
    private func locate(_ db: Database, id: [UInt8]) throws -> Int64? {
        let batch = try RawStatement(db, "SELECT first_key, last_key FROM outgoing_batch WHERE prefix = ?")
        defer { batch.reset() }
        batch.bind(1, Array(id[0..<8]))
        guard try batch.step() else { return nil }
        let message = try RawStatement(db, "SELECT key FROM outgoing WHERE key BETWEEN ? AND ? AND id = ?")
        defer { message.reset() }
        message.bind(1, batch.int64(0))
        message.bind(2, batch.int64(1))
        message.bind(3, id)
        return try message.step() ? message.int64(0) : nil
    }

    // MARK: - Sent ranges

    struct SentRange: Equatable {
        var after: Int64
        var through: Int64
        var link: String
    }

    /// The ranges of `recipient` that hold any of `low...high`, in order.
    func sentRanges(_ db: Database, recipient: Int64, overlapping low: Int64, _ high: Int64) throws -> [SentRange] {
        let select = try RawStatement(db, """
            SELECT after_seq, through_seq, link FROM outgoing_sent
            WHERE recipient = ? AND through_seq >= ? AND after_seq < ?
            ORDER BY through_seq
            """)
        defer { select.reset() }
        select.bind(1, recipient)
        select.bind(2, low)
        select.bind(3, high)
        var ranges: [SentRange] = []
        while try select.step() {
            ranges.append(SentRange(after: select.int64(0), through: select.int64(1), link: select.text(2) ?? ""))
        }
        return ranges
    }

    /// Lays `new` over the recipient's ranges: what it covers now belongs to it, what
    /// stuck out of the ranges it hit stays, and neighbours on the same link merge. In the
    /// usual case (the next page sent on the same link) this extends the last range.
    private func recordSent(_ db: Database, recipient: Int64, _ new: SentRange) throws {
        // Touching ranges too (>=, <=), so that adjacent ones on the same link can merge.
        let select = try RawStatement(db, """
            SELECT after_seq, through_seq, link FROM outgoing_sent
            WHERE recipient = ? AND through_seq >= ? AND after_seq <= ?
            ORDER BY through_seq
            """)
        select.bind(1, recipient)
        select.bind(2, new.after)
        select.bind(3, new.through)
        var old: [SentRange] = []
        while try select.step() {
            old.append(SentRange(after: select.int64(0), through: select.int64(1), link: select.text(2) ?? ""))
        }
        select.reset()

        var pieces: [SentRange] = []
        for range in old where range.after < new.after {
            pieces.append(SentRange(after: range.after, through: min(range.through, new.after), link: range.link))
        }
        pieces.append(new)
        for range in old where range.through > new.through {
            pieces.append(SentRange(after: max(range.after, new.through), through: range.through, link: range.link))
        }
        var merged: [SentRange] = []
        for piece in pieces {
            if let last = merged.last, last.through == piece.after, last.link == piece.link {
                merged[merged.count - 1].through = piece.through
            } else {
                merged.append(piece)
            }
        }
        guard merged != old else { return }

        let delete = try RawStatement(db, "DELETE FROM outgoing_sent WHERE recipient = ? AND through_seq = ?")
        delete.bind(1, recipient)
        for range in old {
            delete.bind(2, range.through)
            try delete.run()
        }
        let insert = try RawStatement(db, """
            INSERT INTO outgoing_sent (recipient, through_seq, after_seq, link) VALUES (?, ?, ?, ?)
            """)
        insert.bind(1, recipient)
        for range in merged {
            insert.bind(2, range.through)
            insert.bind(3, range.after)
            insert.bind(4, range.link)
            try insert.run()
        }
    }
}
