import Foundation
import GRDB
import LNPCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// msgd's durable state: outgoing messages with their per-recipient sequence numbers and
/// delivery state, inbound messages deduplicated per sender, and the peer list.
///
/// Every method is one SQLite transaction, so whatever it reports is on disk when it
/// returns (WAL with `synchronous = FULL`: the commit is fsynced). Writes are serialised
/// on one connection; reads run on a pool of reader connections beside them.
public final class MessageStore: Sendable {
    public static let maxPayloadBytes = 16 * 1024 * 1024
    public static let maxBatchCount = 100_000
    public static let maxAddressLength = 1024
    /// Payloads up to this size are copied into SQLite in blocks of rows; larger ones are
    /// bound in place, one row per statement.
    static let copiedPayloadLimit = 16 * 1024
    /// Payloads of at least this many bytes go to segment files (see `PayloadSegments`),
    /// written once, instead of into SQLite, which writes them twice (WAL, checkpoint).
    ///
    /// Why 64 KiB (`BenchmarkTests.payloadThreshold`, debug build, build machine): in
    /// 32 MiB transactions segments cost less CPU per byte at every size (64 KiB: 0.37 s/GB
    /// against 1.96 s/GB inline; 16 KiB: 0.68 against 2.25), but a transaction that writes
    /// to a segment pays a second fdatasync: one message per transaction took 0.73 ms
    /// instead of 0.42 ms at 16 KiB, 0.76 against 0.60 at 64 KiB, and less than inline from
    /// about 128 KiB on (1 MiB: 1.27 against 2.16 ms). 64 KiB keeps every message that fits
    /// a BOLT-1 frame (at most 65,535 bytes) in SQLite, free of the second fsync, and sends
    /// the bulk of large traffic to segments.
    public static let defaultExternalPayloadThreshold = 64 * 1024

    /// Payloads of at least this size go to `payloads`; the in-memory store keeps all inline.
    let externalPayloadThreshold: Int
    let payloads: PayloadSegments?

    let writer: any DatabaseWriter
    private let checkpointer: WALCheckpointer?
    /// node.ref → key; rows of `node` are never deleted or changed, so entries stay true.
    private let keys = Locked<[Int64: PublicKey]>([:])

    /// The directory of the segment files of the store at `path`: named after the database
    /// file, like SQLite's `-wal` and `-shm`, so two stores in one directory never share it.
    public static func payloadDirectory(forDatabaseAt path: String) -> String { path + "-payloads" }

    /// Opens the store at `path`, creating the file (mode 0600), its schema and its payload
    /// directory (mode 0700, see `payloadDirectory`) if needed.
    public convenience init(path: String) throws(StoreError) {
        try self.init(path: path, externalPayloadThreshold: Self.defaultExternalPayloadThreshold)
    }

    /// `segmentLimit`: a test rotates segments sooner.
    convenience init(path: String, externalPayloadThreshold: Int,
                     segmentLimit: Int64 = PayloadSegments.segmentLimit) throws(StoreError) {
        try protectDatabaseFiles(path: path)
        var configuration = Self.baseConfiguration()
        configuration.label = "LNPStore"
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB switches a pool to WAL after the prepareDatabase functions have run and
            // sets `synchronous = NORMAL` as it does; NORMAL in WAL mode may lose the last
            // commits on power loss, so the writer goes back to FULL here.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                // `WALCheckpointer` checkpoints; the writer only if that falls far behind.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = \(WALCheckpointer.writerThresholdPages)")
            }
        } catch {
            throw .cannotOpen(path: path, reason: StoreError.wrapping(error).description)
        }
        let payloads = try PayloadSegments(directory: Self.payloadDirectory(forDatabaseAt: path), segmentLimit: segmentLimit)
        try self.init(writer: pool, checkpointer: WALCheckpointer(path: path), payloads: payloads,
                      externalPayloadThreshold: externalPayloadThreshold)
    }

    /// A private in-memory store (no WAL, nothing on disk): for tests.
    public static func inMemory() throws(StoreError) -> MessageStore {
        do {
            return try MessageStore(writer: DatabaseQueue(configuration: baseConfiguration()))
        } catch {
            throw .wrapping(error)
        }
    }

    private init(writer: any DatabaseWriter, checkpointer: WALCheckpointer? = nil, payloads: PayloadSegments? = nil,
                 externalPayloadThreshold: Int = Int.max) throws(StoreError) {
        self.writer = writer
        self.checkpointer = checkpointer
        self.payloads = payloads
        self.externalPayloadThreshold = externalPayloadThreshold
        do {
            let migrator = Schema.migrator
            if try writer.read({ try migrator.hasBeenSuperseded($0) }) {
                throw StoreError.unknownSchema("it has migrations this version does not know")
            }
            try migrator.migrate(writer)
            if let payloads {
                // Tidiness, not safety: an uncommitted tail is written over by the next
                // append anyway, so a store that cannot take the write lock now (another
                // process is committing) still opens.
                try? writer.write { db in try payloads.truncateUncommittedTail(db) }
            }
        } catch {
            throw .wrapping(error)
        }
    }

    deinit {
        checkpointer?.stop()
    }

    private static func baseConfiguration() -> Configuration {
        var configuration = Configuration()
        // msgd is the only writer; another process (a backup, sqlite3) may hold a lock briefly.
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // page_size only takes on a new, empty file (here: before GRDB turns WAL on).
            // 16 KiB pages cost 15-20 % less CPU per stored message than SQLite's 4 KiB:
            // fewer WAL frames, fewer page splits and overflow pages.
            try db.execute(sql: """
                PRAGMA page_size = 16384;
                PRAGMA synchronous = FULL;
                PRAGMA cache_size = -65536;
                PRAGMA temp_store = MEMORY;
                """)
        }
        return configuration
    }

    /// Closes every connection; later calls throw. Dropping the store does the same.
    public func close() throws(StoreError) {
        checkpointer?.stop()
        do {
            if let pool = writer as? DatabasePool {
                try pool.close()
            } else if let queue = writer as? DatabaseQueue {
                try queue.close()
            }
        } catch {
            throw .wrapping(error)
        }
    }

    // MARK: - Transactions

    func writing<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do {
            return try writer.write(body)
        } catch {
            throw .wrapping(error)
        }
    }

    func reading<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do {
            return try writer.read(body)
        } catch {
            throw .wrapping(error)
        }
    }

    // MARK: - Nodes

    struct NodeRow {
        var ref: Int64
        /// Set once the first message to this node is enqueued.
        var outSlot: Int64?
        var outLastSeq: Int64
        var outDeliveredThrough: Int64
        var inContiguous: Int64

        /// The `outgoing.key` of this node's message `seq` (needs `outSlot`).
        func key(_ seq: Int64) -> Int64 { OutgoingKey.make(slot: outSlot ?? 0, seq: seq) }
    }

    func node(_ db: Database, _ key: PublicKey, create: Bool) throws -> NodeRow? {
        let select = try RawStatement(db, """
            SELECT ref, out_slot, out_last_seq, out_delivered_through, in_contiguous FROM node WHERE key = ?
            """)
        select.bind(1, key.compressed)
        defer { select.reset() }
        if try select.step() {
            return NodeRow(ref: select.int64(0), outSlot: select.optionalInt64(1), outLastSeq: select.int64(2),
                           outDeliveredThrough: select.int64(3), inContiguous: select.int64(4))
        }
        guard create else { return nil }
        let insert = try RawStatement(db, "INSERT INTO node (key) VALUES (?)")
        insert.bind(1, key.compressed)
        try insert.run()
        return NodeRow(ref: insert.lastInsertRowID, outSlot: nil, outLastSeq: 0, outDeliveredThrough: 0, inContiguous: 0)
    }

    /// The key of a committed node row. Call only from read transactions (or for refs
    /// read from committed rows), so a rolled-back insert never enters the cache.
    func key(_ db: Database, ref: Int64) throws -> PublicKey {
        if let key = keys.withLock({ $0[ref] }) { return key }
        let select = try RawStatement(db, "SELECT key FROM node WHERE ref = ?")
        select.bind(1, ref)
        defer { select.reset() }
        guard try select.step() else { throw StoreError.corruptRow("a message refers to node \(ref), which does not exist") }
        let bytes = select.blob(0)
        let key: PublicKey
        do {
            key = try PublicKey(bytes)
        } catch {
            throw StoreError.corruptRow("node \(ref) holds an invalid public key (\(error))")
        }
        keys.withLock { $0[ref] = key }
        return key
    }

    // MARK: - Payloads

    /// Whether `payload` goes to a segment file rather than into its row.
    func isExternal(_ payload: [UInt8]) -> Bool {
        payloads != nil && payload.count >= externalPayloadThreshold
    }

    /// Writes these payloads to segment files, durably, inside the write transaction that
    /// will refer to them (see `PayloadSegments`).
    func appendPayloads(_ db: Database, _ payloads: [[UInt8]]) throws -> [PayloadLocation] {
        guard let segments = self.payloads, !payloads.isEmpty else { return [] }
        return try segments.append(db, payloads)
    }

    /// A row's payload: the blob in column `blob`, or, when the columns from `location` on
    /// (segment, offset, length) are set, the bytes they point to in a segment file.
    func payload(_ select: RawStatement, blob: Int32, location: Int32) throws -> [UInt8] {
        guard !select.isNull(location) else { return select.blob(blob) }
        let place = PayloadLocation(segment: select.int64(location), offset: select.int64(location + 1),
                                    length: Int(select.int64(location + 2)))
        guard let payloads else {
            throw StoreError.payloadUnreadable(path: "(no payload directory)", offset: place.offset, length: place.length,
                                               reason: "this store keeps no segment files")
        }
        guard place.length <= Self.maxPayloadBytes else {
            throw StoreError.corruptRow("a payload of \(place.length) bytes is past the limit of \(Self.maxPayloadBytes)")
        }
        return try payloads.read(place)
    }

    static func checkSeq(_ seq: UInt64) throws(StoreError) -> Int64 {
        guard seq >= 1, seq <= UInt64(Int64.max) else { throw .invalidSequence(seq) }
        return Int64(seq)
    }

    /// A cumulative bound from a caller (0 = nothing yet), clamped to the largest
    /// sequence number the store can hold.
    static func bound(_ seq: UInt64) -> Int64 {
        seq > UInt64(OutgoingKey.maxSeq) ? OutgoingKey.maxSeq : Int64(seq)
    }
}

/// The database, its WAL and its shared-memory index hold every message in clear: only
/// the owner may read them. SQLite gives the -wal and -shm files the mode of the database
/// file when it creates them, so creating that file 0600 covers all three.
private func protectDatabaseFiles(path: String) throws(StoreError) {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
        throw .cannotOpen(path: path, reason: String(cString: strerror(errno)))
    }
    defer { close(fd) }
    guard fchmod(fd, 0o600) == 0 else {
        throw .cannotOpen(path: path, reason: "cannot set mode 0600: \(String(cString: strerror(errno)))")
    }
    for suffix in ["-wal", "-shm"] {
        // Left by an earlier run, possibly with a wider mode.
        if chmod(path + suffix, 0o600) != 0 && errno != ENOENT {
            throw .cannotOpen(path: path + suffix, reason: "cannot set mode 0600: \(String(cString: strerror(errno)))")
        }
    }
}

/// `outgoing.key`: the recipient's slot in the high 23 bits, the sequence number in the
/// low 40, so one integer orders messages by recipient, then sequence number.
enum OutgoingKey {
    static let seqBits: Int64 = 40
    /// 1.1 × 10^12 messages per recipient.
    static let maxSeq: Int64 = (1 << seqBits) - 1
    /// 8.4 million recipients (slots go only to nodes we send to).
    static let maxSlot: Int64 = Int64.max >> seqBits

    static func make(slot: Int64, seq: Int64) -> Int64 { slot << seqBits | seq }
    static func seq(_ key: Int64) -> Int64 { key & maxSeq }
}

/// A lock-protected value for the few bits of in-memory state. (Synchronization.Mutex
/// needs macOS 15; the package supports 14.)
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
