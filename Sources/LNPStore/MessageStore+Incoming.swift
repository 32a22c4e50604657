import Foundation
import GRDB
import LNPCrypto

extension MessageStore {
    /// Stores a batch of messages from `sender` in one transaction. A message is a
    /// duplicate, and is dropped, when its sequence number was already received (at or
    /// below the highest contiguous one, or above it but seen before) or, for a message
    /// without one, when this store holds a message from `sender` without a sequence
    /// number and with the same id. Returns the messages stored, in batch order, and how
    /// many were duplicates.
    ///
    /// Why sequenced messages are not also checked by id: the sender fixes a message's id
    /// and sequence number together when it enqueues it, so a repeat of either is a repeat
    /// of both; the sequence check is a counter compare, while an id check needs an index
    /// entry per message, which cost about 40 % of this method's time.
    public func storeIncoming(
        from sender: PublicKey,
        messages: [(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])],
        receivedAt: Date
    ) throws(StoreError) -> (stored: [StoredIncoming], duplicates: Int) {
        try storeIncoming(from: sender, messages: messages, receivedAt: receivedAt, beforeRow: { _ in })
    }

    /// `beforeRow` runs inside the transaction before each new message is written; a test
    /// throws from it to prove that a batch failing half-way leaves nothing behind.
    func storeIncoming(
        from sender: PublicKey,
        messages: [(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])],
        receivedAt: Date,
        beforeRow: (Int) throws -> Void
    ) throws(StoreError) -> (stored: [StoredIncoming], duplicates: Int) {
        guard !messages.isEmpty else { return ([], 0) }
        guard messages.count <= Self.maxBatchCount else {
            throw .batchTooLarge(count: messages.count, limit: Self.maxBatchCount)
        }
        var seqs: [Int64?] = []
        seqs.reserveCapacity(messages.count)
        for message in messages {
            guard message.id.count == 16 else { throw .invalidMessageID(length: message.id.count) }
            guard message.payload.count <= Self.maxPayloadBytes else {
                throw .payloadTooLarge(size: message.payload.count, limit: Self.maxPayloadBytes)
            }
            seqs.append(try message.seq.map { seq throws(StoreError) in try Self.checkSeq(seq) })
        }
        let receivedMillis = Millis.from(receivedAt)
        let received = Millis.date(receivedMillis)

        return try writing { db in
            let node = try node(db, sender, create: true)!
            var tracker = try SequenceTracker(db, sender: node.ref, contiguous: node.inContiguous)
            // Sequence numbers deduplicate the messages that have one; the unique index over
            // (sender, id) covers only those that do not (see `Schema`). Rows get explicit
            // row ids, consecutive for the batch, so they can go in as blocks of rows.
            let maxRow = try RawStatement(db, "SELECT coalesce(max(row), 0) FROM incoming")
            _ = try maxRow.step()
            var nextRow = maxRow.int64(0) + 1
            maxRow.reset()
            let insert = try BlockInsert(db, Self.insertIncoming)
            insert.bindShared { statement in
                statement.bind(1, node.ref)
                statement.bind(2, receivedMillis)
            }
            let unsequenced = try RawStatement(db, """
                INSERT INTO incoming (sender, received_at, row, id, seq, type, payload)
                VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6)
                ON CONFLICT (sender, id) WHERE seq IS NULL DO NOTHING
                """)
            unsequenced.bind(1, node.ref)
            unsequenced.bind(2, receivedMillis)

            var stored: [StoredIncoming] = []
            stored.reserveCapacity(messages.count)
            var inBlocks: [(message: Int, row: Int64)] = []
            inBlocks.reserveCapacity(messages.count)
            var large: [(message: Int, row: Int64)] = []
            // Payloads for segment files, with or without a sequence number: appended
            // together after this loop, then their rows inserted. Those without one were
            // checked against the store and the batch here, as their insert cannot be the
            // check (the payload would already be written).
            var external: [(message: Int, row: Int64)] = []
            var externalUnsequencedIDs: Set<[UInt8]> = []
            let heldUnsequenced = try RawStatement(db, "SELECT 1 FROM incoming WHERE sender = ? AND id = ? AND seq IS NULL")
            heldUnsequenced.bind(1, node.ref)
            var duplicates = 0
            for (index, message) in messages.enumerated() {
                if let seq = seqs[index] {
                    guard try tracker.receive(seq) else {
                        duplicates += 1
                        continue
                    }
                    if isExternal(message.payload) {
                        external.append((index, nextRow))
                    } else if message.payload.count <= Self.copiedPayloadLimit {
                        inBlocks.append((index, nextRow))
                    } else {
                        large.append((index, nextRow))
                    }
                } else if isExternal(message.payload) || externalUnsequencedIDs.contains(message.id) {
                    heldUnsequenced.bind(2, message.id)
                    let held = try heldUnsequenced.step()
                    heldUnsequenced.reset()
                    guard !held, externalUnsequencedIDs.insert(message.id).inserted, isExternal(message.payload) else {
                        duplicates += 1
                        continue
                    }
                    external.append((index, nextRow))
                } else {
                    try beforeRow(index)
                    unsequenced.bind(3, nextRow)
                    unsequenced.bind(4, message.id)
                    unsequenced.bind(5, Int64(message.type))
                    try unsequenced.withBorrowed(6, message.payload) { try unsequenced.run() }
                    guard unsequenced.changes == 1 else {
                        duplicates += 1
                        continue
                    }
                }
                stored.append(StoredIncoming(
                    rowID: nextRow, id: message.id, sender: sender, seq: message.seq, type: message.type,
                    payload: message.payload, receivedAt: received))
                nextRow += 1
            }
            try insert.insert(count: inBlocks.count) { statement, parameter, block in
                let (index, row) = inBlocks[block]
                try beforeRow(index)
                statement.bind(parameter, row)
                statement.bind(parameter + 1, messages[index].id)
                statement.bind(parameter + 2, seqs[index])
                statement.bind(parameter + 3, Int64(messages[index].type))
                statement.bind(parameter + 4, messages[index].payload)
            }
            for (index, row) in large {
                try beforeRow(index)
                insert.single.bind(3, row)
                insert.single.bind(4, messages[index].id)
                insert.single.bind(5, seqs[index])
                insert.single.bind(6, Int64(messages[index].type))
                try insert.single.withBorrowed(7, messages[index].payload) { try insert.single.run() }
            }
            if !external.isEmpty {
                let locations = try appendPayloads(db, external.map { messages[$0.message].payload })
                let referring = try RawStatement(db, """
                    INSERT INTO incoming (sender, received_at, row, id, seq, type, payload, payload_segment, payload_offset, payload_length)
                    VALUES (?, ?, ?, ?, ?, ?, X'', ?, ?, ?)
                    """)
                referring.bind(1, node.ref)
                referring.bind(2, receivedMillis)
                for ((index, row), location) in zip(external, locations) {
                    try beforeRow(index)
                    referring.bind(3, row)
                    referring.bind(4, messages[index].id)
                    referring.bind(5, seqs[index])
                    referring.bind(6, Int64(messages[index].type))
                    referring.bind(7, location)
                    try referring.run()
                }
            }
            try tracker.save(initial: node.inContiguous)
            if let first = stored.first?.rowID, let last = stored.last?.rowID {
                let batch = try RawStatement(db, """
                    INSERT INTO incoming_batch (sender, last_row, first_row) VALUES (?, ?, ?)
                    """)
                batch.bind(1, node.ref)
                batch.bind(2, last)
                batch.bind(3, first)
                try batch.run()
            }
            return (stored, duplicates)
        }
    }

    private static let insertIncoming = BlockInsert.Shape(
        into: "incoming", shared: ["sender", "received_at"], perRow: ["row", "id", "seq", "type", "payload"])

    /// The highest S such that messages 1...S from `sender` have all been received (or
    /// skipped, see `skipIncoming`): what msgd acknowledges cumulatively.
    public func highestContiguousSeq(from sender: PublicKey) throws(StoreError) -> UInt64 {
        try reading { db in
            UInt64(try node(db, sender, create: false)?.inContiguous ?? 0)
        }
    }

    /// The sender reports that nothing at or below `seq` will ever come (each such message
    /// was delivered, expired or failed on its side): count them all as received, so the
    /// messages after a gap that will never fill can be acknowledged. Never moves the
    /// count backwards. Returns the highest contiguous sequence number afterwards.
    @discardableResult
    public func skipIncoming(from sender: PublicKey, through seq: UInt64) throws(StoreError) -> UInt64 {
        let through = seq > UInt64(Int64.max) ? Int64.max : Int64(seq)
        return try writing { db in
            let node = try node(db, sender, create: true)!
            var tracker = try SequenceTracker(db, sender: node.ref, contiguous: node.inContiguous)
            try tracker.skip(through: through)
            try tracker.save(initial: node.inContiguous)
            return UInt64(tracker.contiguous)
        }
    }

    /// Stored inbound messages with a row id above `afterRowID`, oldest first, from
    /// `sender` only or from everyone.
    public func incoming(afterRowID: Int64, from sender: PublicKey?, limit: Int) throws(StoreError) -> [StoredIncoming] {
        var rows: [StoredIncoming] = []
        _ = try visitIncoming(afterRowID: afterRowID, from: sender, limit: limit) { row in
            rows.append(StoredIncoming(
                rowID: row.rowID, id: Array(row.id), sender: row.sender, seq: row.seq, type: row.type,
                payload: Array(row.payload), receivedAt: Millis.date(row.receivedAtMillis)))
            return true
        }
        return rows
    }

    /// Visits what `incoming(afterRowID:from:limit:)` returns, one row at a time and without
    /// copying it: a `recv` reply is encoded straight from SQLite's row (or the segment
    /// read), with no arrays and key copies per message in between. `visit` returns false to
    /// stop; the row it was given then does not count. Returns how many rows it took. A
    /// payload that cannot be read throws, after the rows before it were visited.
    public func visitIncoming(
        afterRowID: Int64, from sender: PublicKey?, limit: Int, _ visit: (IncomingRowView) -> Bool
    ) throws(StoreError) -> Int {
        guard limit > 0 else { return 0 }
        return try reading { db in
            var taken = 0
            let select = try RawStatement(db, """
                SELECT row, sender, id, seq, type, received_at, payload, payload_segment, payload_offset, payload_length FROM incoming
                WHERE row > ? AND row <= ? ORDER BY row LIMIT ?
                """)
            defer { select.reset() }
            guard let sender else {
                select.bind(1, afterRowID)
                select.bind(2, Int64.max)
                select.bind(3, Int64(min(limit, Int(Int32.max))))
                _ = try visitRows(db, select, onlyFrom: nil, limit: limit, taken: &taken, visit)
                return taken
            }
            guard let node = try node(db, sender, create: false) else { return 0 }
            // The sender's batches that end past the cursor, each a run of consecutive rows.
            let batches = try RawStatement(db, """
                SELECT first_row, last_row FROM incoming_batch
                WHERE sender = ? AND last_row > ? ORDER BY last_row
                """)
            defer { batches.reset() }
            batches.bind(1, node.ref)
            batches.bind(2, afterRowID)
            while taken < limit, try batches.step() {
                select.bind(1, max(afterRowID, batches.int64(0) - 1))
                select.bind(2, batches.int64(1))
                select.bind(3, Int64(min(limit - taken, Int(Int32.max))))
                guard try visitRows(db, select, onlyFrom: node.ref, limit: limit, taken: &taken, visit) else { break }
                select.reset()
            }
            return taken
        }
    }

    /// Steps `select` and lends each row to `visit`; false once `visit` said stop.
    private func visitRows(
        _ db: Database, _ select: RawStatement, onlyFrom sender: Int64?, limit: Int, taken: inout Int,
        _ visit: (IncomingRowView) -> Bool
    ) throws -> Bool {
        var lastRef: Int64 = -1
        var lastKey: PublicKey? = nil
        while taken < limit, try select.step() {
            let ref = select.int64(1)
            if let sender, ref != sender { continue }
            if ref != lastRef {
                lastKey = try key(db, ref: ref)
                lastRef = ref
            }
            let type = select.int64(4)
            let seq = select.optionalInt64(3)
            guard let type = UInt16(exactly: type), (seq ?? 1) >= 1 else {
                throw StoreError.corruptRow("incoming message \(select.int64(0)) with type \(type), seq \(seq ?? 0)")
            }
            let rowID = select.int64(0), receivedAt = select.int64(5)
            func lend(_ payload: UnsafeRawBufferPointer) -> Bool {
                select.withBlob(2) { id in
                    visit(IncomingRowView(rowID: rowID, id: id, sender: lastKey!, seq: seq.map { UInt64($0) }, type: type,
                                          payload: payload, receivedAtMillis: receivedAt))
                }
            }
            let accepted: Bool
            if select.isNull(7) {
                accepted = select.withBlob(6, lend)
            } else {
                accepted = try payload(select, blob: 6, location: 7).withUnsafeBytes(lend)
            }
            guard accepted else { return false }
            taken += 1
        }
        return true
    }
}

/// One received message lent to the visitor of `MessageStore.visitIncoming`: `id` and
/// `payload` point into the store's row or read buffer and are valid only during the call.
public struct IncomingRowView {
    public let rowID: Int64
    public let id: UnsafeRawBufferPointer
    public let sender: PublicKey
    public let seq: UInt64?
    public let type: UInt16
    public let payload: UnsafeRawBufferPointer
    /// Milliseconds since the Unix epoch, as stored.
    public let receivedAtMillis: Int64
}

/// The receiving side's view of one sender's sequence numbers inside a write transaction:
/// the highest contiguous one, and those received above a gap (table `incoming_ahead`).
///
/// Invariant between calls: every row in `incoming_ahead` for this sender is above
/// `contiguous + 1`. So in-order traffic (the usual case) never touches the table: one
/// query per batch reads its lowest entry.
struct SequenceTracker {
    let db: Database
    let sender: Int64
    private(set) var contiguous: Int64
    /// Lowest sequence number held in `incoming_ahead` for this sender.
    private var lowestAhead: Int64?

    init(_ db: Database, sender: Int64, contiguous: Int64) throws {
        self.db = db
        self.sender = sender
        self.contiguous = contiguous
        self.lowestAhead = try Self.lowestAhead(db, sender: sender, above: contiguous)
    }

    private static func lowestAhead(_ db: Database, sender: Int64, above: Int64) throws -> Int64? {
        let select = try RawStatement(db, """
            SELECT seq FROM incoming_ahead WHERE sender = ? AND seq > ? ORDER BY seq LIMIT 1
            """)
        defer { select.reset() }
        select.bind(1, sender)
        select.bind(2, above)
        return try select.step() ? select.int64(0) : nil
    }

    /// Records `seq` as received; false if it was received before.
    mutating func receive(_ seq: Int64) throws -> Bool {
        if seq <= contiguous { return false }
        if seq == contiguous + 1 {
            contiguous = seq
            try drain()
            return true
        }
        let insert = try RawStatement(db, """
            INSERT INTO incoming_ahead (sender, seq) VALUES (?, ?) ON CONFLICT DO NOTHING
            """)
        insert.bind(1, sender)
        insert.bind(2, seq)
        try insert.run()
        guard insert.changes == 1 else { return false }
        lowestAhead = min(lowestAhead ?? seq, seq)
        return true
    }

    mutating func skip(through seq: Int64) throws {
        guard seq > contiguous else { return }
        contiguous = seq
        let delete = try RawStatement(db, "DELETE FROM incoming_ahead WHERE sender = ? AND seq <= ?")
        delete.bind(1, sender)
        delete.bind(2, seq)
        try delete.run()
        lowestAhead = try Self.lowestAhead(db, sender: sender, above: contiguous)
        try drain()
    }

    /// Moves `contiguous` over the entries of `incoming_ahead` that now follow it.
    private mutating func drain() throws {
        while let lowest = lowestAhead, lowest == contiguous + 1 {
            let delete = try RawStatement(db, "DELETE FROM incoming_ahead WHERE sender = ? AND seq = ?")
            delete.bind(1, sender)
            delete.bind(2, lowest)
            try delete.run()
            contiguous = lowest
            lowestAhead = try Self.lowestAhead(db, sender: sender, above: contiguous)
        }
    }

    func save(initial: Int64) throws {
        guard contiguous != initial else { return }
        let update = try RawStatement(db, "UPDATE node SET in_contiguous = ? WHERE ref = ?")
        update.bind(1, contiguous)
        update.bind(2, sender)
        try update.run()
    }
}
