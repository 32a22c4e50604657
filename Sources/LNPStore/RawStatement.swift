import GRDB
import GRDBSQLite

/// A prepared statement from GRDB's per-connection cache, driven through the SQLite C API.
///
/// The hot paths bind and step thousands of rows per transaction; GRDB's
/// `StatementArguments` boxes every value, which costs more than SQLite's own work on a
/// 100-byte row. The statement still belongs to GRDB (its cache, its connection, its
/// transaction); this only binds, steps and reads columns.
struct RawStatement {
    /// Held so the handle stays valid even if GRDB drops it from its cache.
    private let statement: Statement
    let handle: OpaquePointer
    let connection: OpaquePointer

    init(_ db: Database, _ sql: String) throws {
        statement = try db.cachedStatement(sql: sql)
        handle = statement.sqliteStatement
        connection = db.sqliteConnection!
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    /// Ready for the next set of arguments. Bindings that are not rebound keep their values.
    @inline(__always)
    func reset() {
        sqlite3_reset(handle)
    }

    @inline(__always)
    func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(handle, index, value)
    }

    @inline(__always)
    func bind(_ index: Int32, _ value: Int64?) {
        if let value { sqlite3_bind_int64(handle, index, value) } else { sqlite3_bind_null(handle, index) }
    }

    @inline(__always)
    func bind(_ index: Int32, _ value: String?) {
        if let value {
            sqlite3_bind_text(handle, index, value, -1, sqliteTransient)
        } else {
            sqlite3_bind_null(handle, index)
        }
    }

    /// Copies the bytes into SQLite: the binding outlives `bytes`.
    @inline(__always)
    func bind(_ index: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer -> Void in
            if let base = buffer.baseAddress, buffer.count > 0 {
                sqlite3_bind_blob64(handle, index, base, sqlite3_uint64(buffer.count), sqliteTransient)
            } else {
                sqlite3_bind_zeroblob(handle, index, 0)
            }
        }
    }

    /// Binds without a copy: only for `withBorrowed`, which scopes the borrow. An empty
    /// buffer binds a zero-length blob (not NULL, which a nil base address would).
    @inline(__always)
    private func bind(_ index: Int32, borrowing bytes: UnsafeRawBufferPointer) {
        if let base = bytes.baseAddress, bytes.count > 0 {
            sqlite3_bind_blob64(handle, index, base, sqlite3_uint64(bytes.count), nil)
        } else {
            sqlite3_bind_zeroblob(handle, index, 0)
        }
    }

    /// Binds `bytes` without copying them, runs `body` while they are borrowed, then resets
    /// the statement and unbinds them, so SQLite holds no pointer into them afterwards.
    @inline(__always)
    func withBorrowed<R>(_ index: Int32, _ bytes: [UInt8], _ body: () throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { buffer in
            bind(index, borrowing: buffer)
            defer {
                sqlite3_reset(handle)
                sqlite3_bind_null(handle, index)
            }
            return try body()
        }
    }

    /// Steps once: true when a row is available, false when the statement is done.
    @inline(__always)
    func step() throws(StoreError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw lastError()
        }
    }

    /// Runs a statement that returns no rows, then resets it.
    @inline(__always)
    func run() throws(StoreError) {
        let code = sqlite3_step(handle)
        guard code == SQLITE_DONE || code == SQLITE_ROW else {
            let error = lastError()
            sqlite3_reset(handle)
            throw error
        }
        sqlite3_reset(handle)
    }

    var changes: Int { Int(sqlite3_changes(connection)) }
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(connection) }

    func lastError() -> StoreError {
        .database(code: sqlite3_extended_errcode(connection), message: String(cString: sqlite3_errmsg(connection)))
    }

    @inline(__always)
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    @inline(__always)
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    @inline(__always)
    func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    /// Lends the column's bytes without copying them; valid until the next step or reset.
    @inline(__always)
    func withBlob<R>(_ column: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        // Ask for the pointer first: sqlite3_column_bytes is only valid after the conversion.
        let pointer = sqlite3_column_blob(handle, column)
        let count = Int(sqlite3_column_bytes(handle, column))
        guard let pointer, count > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    @inline(__always)
    func blob(_ column: Int32) -> [UInt8] {
        // Ask for the pointer first: sqlite3_column_bytes is only valid after the conversion.
        let pointer = sqlite3_column_blob(handle, column)
        let count = Int(sqlite3_column_bytes(handle, column))
        guard let pointer, count > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            buffer.baseAddress!.initialize(from: pointer.assumingMemoryBound(to: UInt8.self), count: count)
            initialized = count
        }
    }

    @inline(__always)
    func text(_ column: Int32) -> String? {
        guard let pointer = sqlite3_column_text(handle, column) else { return nil }
        return String(cString: pointer)
    }
}

/// Inserts rows into one table through a multi-row `INSERT ... VALUES (...), (...), ...`
/// statement, `blockRows` rows per step, and the rows left over one at a time.
///
/// One step of SQLite's virtual machine per row costs more than the row's insert itself
/// (cursor set-up, statement bookkeeping, reset); a 64-row statement pays it once for 64
/// rows. Values bound here are copied (`bind(_:_:)` on blobs), so the caller need not keep
/// them alive: large payloads go through a single-row statement with a borrowed pointer.
struct BlockInsert {
    static let blockRows = 64

    /// The two statements' SQL, built once per table.
    struct Shape: Sendable {
        let single: String
        let block: String
        let shared: Int32
        let perRow: Int32

        /// `shared` columns take the same value in every row (bound once with
        /// `bindShared`), `perRow` columns are bound per row; `suffix` follows the VALUES.
        init(into table: String, shared: [String], perRow: [String], suffix: String = "") {
            let columns = (shared + perRow).joined(separator: ", ")
            func values(rows: Int) -> String {
                (0..<rows).map { row in
                    let sharedParameters = (0..<shared.count).map { "?\($0 + 1)" }
                    let rowParameters = (0..<perRow.count).map { "?\(shared.count + 1 + row * perRow.count + $0)" }
                    return "(" + (sharedParameters + rowParameters).joined(separator: ", ") + ")"
                }.joined(separator: ", ")
            }
            single = "INSERT INTO \(table) (\(columns)) VALUES \(values(rows: 1)) \(suffix)"
            block = "INSERT INTO \(table) (\(columns)) VALUES \(values(rows: BlockInsert.blockRows)) \(suffix)"
            self.shared = Int32(shared.count)
            self.perRow = Int32(perRow.count)
        }
    }

    let single: RawStatement
    let block: RawStatement
    let shared: Int32
    let perRow: Int32

    init(_ db: Database, _ shape: Shape) throws {
        single = try RawStatement(db, shape.single)
        block = try RawStatement(db, shape.block)
        shared = shape.shared
        perRow = shape.perRow
    }

    /// Binds the shared columns (parameters 1...shared) on both statements.
    func bindShared(_ bind: (RawStatement) -> Void) {
        bind(single)
        bind(block)
    }

    /// Inserts `count` rows; `bindRow(statement, firstParameter, row)` binds row `row`'s
    /// columns at parameters firstParameter, firstParameter + 1, ...
    func insert(count: Int, _ bindRow: (RawStatement, Int32, Int) throws -> Void) throws {
        var row = 0
        while count - row >= Self.blockRows {
            for offset in 0..<Self.blockRows {
                try bindRow(block, shared + 1 + Int32(offset) * perRow, row + offset)
            }
            try block.run()
            row += Self.blockRows
        }
        while row < count {
            try bindRow(single, shared + 1, row)
            try single.run()
            row += 1
        }
    }
}

/// SQLite copies the value before the bind call returns.
let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

extension StoreError {
    /// GRDB reports SQLite failures as `DatabaseError`; anything else reaching the store's
    /// boundary is a StoreError already.
    static func wrapping(_ error: any Error) -> StoreError {
        if let error = error as? StoreError { return error }
        if let error = error as? DatabaseError {
            return .database(code: error.extendedResultCode.rawValue, message: error.message ?? "\(error)")
        }
        return .database(code: -1, message: "\(error)")
    }
}
