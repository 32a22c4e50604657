import GRDB

/// The file's layout. Each `registerMigration` is applied once, in order, inside a
/// transaction; a released migration is never edited, only followed by a new one.
///
/// The hot paths write one B-tree entry per message and index batches, not messages:
/// every extra per-message index costs about 0.5 µs per message on the build machines,
/// against a budget of 2 µs (see `BenchmarkTests`).
enum Schema {
    static var migrator: DatabaseMigrator { migrator(through: nil) }

    /// The migrations up to and including `last` (all when nil): a test builds a file as an
    /// earlier version left it.
    static func migrator(through last: String?) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        var done = false
        func register(_ identifier: String, _ migrate: @escaping @Sendable (Database) throws -> Void) {
            guard !done else { return }
            migrator.registerMigration(identifier, migrate: migrate)
            done = identifier == last
        }
        register("v1") { db in
            try db.execute(sql: """
                -- Every node we send to, receive from or peer with, and the sequence state of
                -- both directions. Node rows are never deleted, so `ref` is stable.
                --   out_slot: numbers the nodes we have sent to (see outgoing.key).
                --   out_delivered_through: the receiver acknowledged every message up to it.
                --   in_contiguous: every message 1...in_contiguous from this node was received.
                CREATE TABLE node (
                    ref INTEGER PRIMARY KEY,
                    key BLOB NOT NULL UNIQUE CHECK (length(key) = 33),
                    out_slot INTEGER UNIQUE,
                    out_last_seq INTEGER NOT NULL DEFAULT 0,
                    out_delivered_through INTEGER NOT NULL DEFAULT 0,
                    in_contiguous INTEGER NOT NULL DEFAULT 0
                ) STRICT;

                -- key = recipient's out_slot << 40 | seq: the rowid itself orders messages by
                -- recipient and sequence number, so no second B-tree is kept per message (a
                -- WITHOUT ROWID table on (recipient, seq) enqueued 30 % slower).
                -- state: 0 pending, 2 delivered, 3 expired, 4 failed. A pending message at or
                -- below its recipient's out_delivered_through is delivered (acknowledgements
                -- move the mark, not the rows); one inside an outgoing_sent range is sent.
                -- The payload comes last so reading the other columns never walks the
                -- overflow pages of a large one.
                CREATE TABLE outgoing (
                    key INTEGER PRIMARY KEY,
                    id BLOB NOT NULL CHECK (length(id) = 16),
                    type INTEGER NOT NULL,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER,
                    state INTEGER NOT NULL DEFAULT 0,
                    payload BLOB NOT NULL
                ) STRICT;
                CREATE INDEX outgoing_expiry ON outgoing (expires_at)
                    WHERE state = 0 AND expires_at IS NOT NULL;

                -- One row per enqueued batch, holding the keys first_key...last_key. The ids
                -- of a batch share its random 8-byte prefix, so an id leads to its batch, and
                -- the batch to the message.
                CREATE TABLE outgoing_batch (
                    prefix BLOB PRIMARY KEY CHECK (length(prefix) = 8),
                    first_key INTEGER NOT NULL,
                    last_key INTEGER NOT NULL
                ) STRICT, WITHOUT ROWID;

                -- Disjoint ranges (after_seq, through_seq] of a recipient's messages and the
                -- link they last went out on; adjacent ranges on the same link are merged.
                CREATE TABLE outgoing_sent (
                    recipient INTEGER NOT NULL,
                    through_seq INTEGER NOT NULL,
                    after_seq INTEGER NOT NULL,
                    link TEXT NOT NULL,
                    PRIMARY KEY (recipient, through_seq)
                ) STRICT, WITHOUT ROWID;

                -- `row` is the readers' cursor: it only grows, because rows are never deleted
                -- (a migration that adds deletion must keep it growing, e.g. AUTOINCREMENT).
                -- Messages with a sequence number are deduplicated by it (node.in_contiguous
                -- and incoming_ahead); those without one by (sender, id).
                CREATE TABLE incoming (
                    row INTEGER PRIMARY KEY,
                    sender INTEGER NOT NULL,
                    id BLOB NOT NULL CHECK (length(id) = 16),
                    seq INTEGER,
                    type INTEGER NOT NULL,
                    received_at INTEGER NOT NULL,
                    payload BLOB NOT NULL
                ) STRICT;
                CREATE UNIQUE INDEX incoming_unsequenced ON incoming (sender, id) WHERE seq IS NULL;

                -- The rows of one storeIncoming call are consecutive and from one sender:
                -- this lists them per sender without an index entry per message.
                CREATE TABLE incoming_batch (
                    sender INTEGER NOT NULL,
                    last_row INTEGER NOT NULL,
                    first_row INTEGER NOT NULL,
                    PRIMARY KEY (sender, last_row)
                ) STRICT, WITHOUT ROWID;

                -- Sequence numbers received above a gap, until the gap closes.
                CREATE TABLE incoming_ahead (
                    sender INTEGER NOT NULL,
                    seq INTEGER NOT NULL,
                    PRIMARY KEY (sender, seq)
                ) STRICT, WITHOUT ROWID;

                CREATE TABLE peer (
                    node INTEGER PRIMARY KEY REFERENCES node (ref),
                    persistent INTEGER NOT NULL,
                    last_connected_at INTEGER
                ) STRICT;
                CREATE TABLE peer_address (
                    node INTEGER NOT NULL REFERENCES peer (node) ON DELETE CASCADE,
                    address TEXT NOT NULL,
                    PRIMARY KEY (node, address)
                ) STRICT;
                """)
        }
        register("v2-spool-receipts") { db in
            try db.execute(sql: """
                -- Nodes whose messages came in by spool and the receipts we owe them for the
                -- way back (see MessageStore+Spool). A receipt is owed when messages came
                -- (even duplicates: the sender re-exported because our last receipt did not
                -- reach it) or the contiguous mark passed the one last exported.
                CREATE TABLE spool_receipt (
                    node INTEGER PRIMARY KEY REFERENCES node (ref),
                    owed INTEGER NOT NULL,
                    exported_through INTEGER NOT NULL DEFAULT 0
                ) STRICT;
                """)
        }
        register("v3-payload-segments") { db in
            try db.execute(sql: """
                -- Payloads of at least MessageStore.externalPayloadThreshold bytes live in
                -- segment files (see PayloadSegments): such a row holds an empty `payload`
                -- and the payload's segment, offset and length; the three are NULL for a
                -- payload held inline. Rows are never deleted, so nothing in a segment is
                -- ever freed: a migration that deletes rows must also collect segments.
                ALTER TABLE outgoing ADD COLUMN payload_segment INTEGER;
                ALTER TABLE outgoing ADD COLUMN payload_offset INTEGER;
                ALTER TABLE outgoing ADD COLUMN payload_length INTEGER;
                ALTER TABLE incoming ADD COLUMN payload_segment INTEGER;
                ALTER TABLE incoming ADD COLUMN payload_offset INTEGER;
                ALTER TABLE incoming ADD COLUMN payload_length INTEGER;

                -- Each segment file and the end of what committed transactions wrote into
                -- it: bytes past committed_end belong to a transaction that never
                -- committed, and the next append writes over them.
                CREATE TABLE payload_segment (
                    id INTEGER PRIMARY KEY,
                    committed_end INTEGER NOT NULL
                ) STRICT;
                """)
        }
        return migrator
    }
}
