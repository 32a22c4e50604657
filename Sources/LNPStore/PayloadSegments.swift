import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a payload kept outside SQLite lives: `length` bytes at `offset` in segment file
/// number `segment`.
struct PayloadLocation: Sendable, Equatable {
    var segment: Int64
    var offset: Int64
    var length: Int
}

extension RawStatement {
    /// Binds the location as the columns (payload_segment, payload_offset, payload_length)
    /// at parameters `index`, `index + 1`, `index + 2`.
    func bind(_ index: Int32, _ location: PayloadLocation) {
        bind(index, location.segment)
        bind(index + 1, location.offset)
        bind(index + 2, Int64(location.length))
    }
}

/// Large payloads in append-only segment files beside the database
/// (`<database>-payloads/00000001.seg`, ...), each written once.
///
/// Why: a payload in SQLite is written twice per node (into the WAL, then by the
/// checkpoint into the database file), and the page-cache copies of those writes were
/// the largest cost of a node moving 1 MiB messages. A segment takes each byte once. That
/// alone saved no CPU in `Scripts/bench node --only large` (the WAL's pages are reused,
/// a segment's are new, see `cacheWindow`); with `cacheWindow` both nodes together spent
/// 6.2-7.9 s of CPU per 1,000 MiB instead of 8.8-9.1 s.
///
/// Durability order, inside the SQLite write transaction that references the payloads
/// (which also keeps two stores on one file from appending at the same offset): the
/// payloads are written, each segment written to is fdatasynced once, a new segment's
/// directory is fsynced, and only then does the transaction commit. A crash in between
/// leaves bytes past the end that the table `payload_segment` records as committed;
/// nothing refers to them. The next append writes over them (it starts at the committed
/// end, not at the file's end), and opening the store truncates the newest segment to its
/// committed end, so no orphan tail outlives a restart. Truncating on open rather than
/// only writing over the tail keeps a segment's size equal to what rows refer to, which
/// is what an operator (or a future garbage collector) can check.
///
/// Rows are never deleted today, so no segment is ever freed. A change that deletes
/// `outgoing` or `incoming` rows must add collection here: a segment can go once no row
/// refers to it (and, for the newest one, once it has rotated).
final class PayloadSegments: @unchecked Sendable {
    /// A segment is closed once the next payload would take it past this size.
    static let segmentLimit: Int64 = 256 << 20
    /// Segments kept open for reading at once; older ones are reopened when needed.
    static let openFilesLimit = 32
    /// How much of what was last written stays in the page cache, for the reads that
    /// usually follow soon (`recv` on the receiver, delivery past the outbox on the
    /// sender); older payloads are dropped from it once durable.
    ///
    /// Why drop at all: writing into new page-cache pages cost 0.6-1.2 s of CPU per GB on
    /// the build machines (every write lands on a page the kernel has to find, charge and
    /// fault in), against 0.3 s when the pages just written are handed back, so that the
    /// next writes reuse them; that copy was a third of a node's CPU time moving 1 MiB
    /// messages. Dropping pages is safe after `fdatasync`: they are clean.
    static let cacheWindow: Int64 = 128 << 20

    let directory: String
    private let segmentLimit: Int64
    private let files = Locked<[Int64: SegmentFile]>([:])

    /// Creates `directory` (mode 0700) if needed; narrows its mode if someone widened it.
    init(directory: String, segmentLimit: Int64 = PayloadSegments.segmentLimit) throws(StoreError) {
        self.directory = directory
        self.segmentLimit = segmentLimit
        if mkdir(directory, 0o700) == 0 {
            // The directory entry itself must survive a crash before any segment does.
            let parent = (directory as NSString).deletingLastPathComponent
            try Self.syncDirectory(parent.isEmpty ? "." : parent)
        } else if errno != EEXIST {
            throw .cannotOpen(path: directory, reason: String(cString: strerror(errno)))
        }
        guard chmod(directory, 0o700) == 0 else {
            throw .cannotOpen(path: directory, reason: "cannot set mode 0700: \(String(cString: strerror(errno)))")
        }
    }

    func path(of segment: Int64) -> String {
        directory + "/" + String(format: "%08lld.seg", segment)
    }

    // MARK: - Writing (inside the write transaction)

    /// Appends `payloads` after the committed end of the newest segment (rotating when one
    /// is full), makes them durable, and records the new committed ends in this
    /// transaction. Returns where each one went, in order.
    func append(_ db: Database, _ payloads: [[UInt8]]) throws -> [PayloadLocation] {
        guard !payloads.isEmpty else { return [] }
        let newest = try RawStatement(db, "SELECT id, committed_end FROM payload_segment ORDER BY id DESC LIMIT 1")
        var segment: Int64 = 0, end: Int64 = 0
        if try newest.step() {
            segment = newest.int64(0)
            end = newest.int64(1)
        }
        newest.reset()

        func open(_ segment: Int64, creating: Bool) throws(StoreError) -> SegmentFile {
            do {
                return try self.file(segment, creating: creating)
            } catch {
                throw .payloadWriteFailed(path: error.path, reason: error.reason)
            }
        }
        var file: SegmentFile? = segment > 0 ? try open(segment, creating: false) : nil
        var touched: [(segment: Int64, file: SegmentFile, start: Int64, end: Int64)] = []
        var start = end
        var locations: [PayloadLocation] = []
        locations.reserveCapacity(payloads.count)
        for payload in payloads {
            let length = Int64(payload.count)
            if file == nil || (end > 0 && end + length > segmentLimit) {
                if let file { touched.append((segment, file, start, end)) }
                segment += 1
                end = 0
                start = 0
                file = try open(segment, creating: true)
                let insert = try RawStatement(db, "INSERT INTO payload_segment (id, committed_end) VALUES (?, 0)")
                insert.bind(1, segment)
                try insert.run()
            }
            try file!.write(payload, at: end)
            locations.append(PayloadLocation(segment: segment, offset: end, length: payload.count))
            end += length
        }
        touched.append((segment, file!, start, end))

        let update = try RawStatement(db, "UPDATE payload_segment SET committed_end = ? WHERE id = ?")
        for entry in touched {
            try entry.file.synchronize()
            entry.file.dropFromCache(from: entry.start - Self.cacheWindow, to: entry.end - Self.cacheWindow)
            update.bind(1, entry.end)
            update.bind(2, entry.segment)
            try update.run()
        }
        return locations
    }

    /// Cuts the newest segment back to its committed end: whatever lies past it was
    /// written by a transaction that never committed. Runs inside a write transaction,
    /// so no other store on the file is between its append and its commit.
    func truncateUncommittedTail(_ db: Database) throws {
        let newest = try RawStatement(db, "SELECT id, committed_end FROM payload_segment ORDER BY id DESC LIMIT 1")
        defer { newest.reset() }
        guard try newest.step() else { return }
        let segment = newest.int64(0), end = newest.int64(1)
        // A missing file is reported when a row refers to it; opening stays possible so
        // every other message can still be served.
        guard let file = try? self.file(segment, creating: false) else { return }
        try file.truncate(to: end)
    }

    // MARK: - Reading

    /// The payload at `location`, read with pread into a buffer of its length.
    func read(_ location: PayloadLocation) throws(StoreError) -> [UInt8] {
        let path = path(of: location.segment)
        func unreadable(_ reason: String) -> StoreError {
            .payloadUnreadable(path: path, offset: location.offset, length: location.length, reason: reason)
        }
        guard location.length >= 0, location.offset >= 0, location.segment > 0 else {
            throw unreadable("the row's reference is invalid")
        }
        let file: SegmentFile
        do {
            file = try self.file(location.segment, creating: false)
        } catch {
            throw unreadable(error.reason)
        }
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: location.length) { buffer, initialized in
            initialized = 0
            while initialized < location.length {
                let count = pread(file.descriptor, buffer.baseAddress! + initialized, location.length - initialized,
                                  off_t(location.offset) + off_t(initialized))
                if count > 0 {
                    initialized += count
                } else if count == 0 {
                    break
                } else if errno != EINTR {
                    failure = errno
                    break
                }
            }
        }
        if failure != 0 { throw unreadable(String(cString: strerror(failure))) }
        guard bytes.count == location.length else {
            throw unreadable("the file ends \(location.length - bytes.count) bytes before the payload does")
        }
        return bytes
    }

    // MARK: - Files

    struct FileError: Error {
        let path: String
        let reason: String
    }

    /// The open segment `segment`. `creating` makes a new, empty one (a file of that name
    /// left by a rotation that never committed is emptied: nothing refers to it); otherwise
    /// a missing file is an error, never silently recreated, since rows refer to it.
    private func file(_ segment: Int64, creating: Bool) throws(FileError) -> SegmentFile {
        if !creating, let open = files.withLock({ $0[segment] }) { return open }
        let path = path(of: segment)
        let flags = O_RDWR | O_CLOEXEC | (creating ? O_CREAT : 0)
        let descriptor = open(path, flags, 0o600)
        guard descriptor >= 0 else {
            throw FileError(path: path, reason: errno == ENOENT ? "the file is missing" : String(cString: strerror(errno)))
        }
        let file = SegmentFile(path: path, descriptor: descriptor)
        if creating {
            guard ftruncate(descriptor, 0) == 0, fchmod(descriptor, 0o600) == 0 else {
                throw FileError(path: path, reason: String(cString: strerror(errno)))
            }
            do {
                try Self.syncDirectory(directory)
            } catch {
                throw FileError(path: path, reason: "\(error)")
            }
        }
        files.withLock { files in
            if files.count >= Self.openFilesLimit, let victim = files.keys.first(where: { $0 != segment }) {
                // Readers still holding it keep it open; it closes when the last lets go.
                files[victim] = nil
            }
            files[segment] = file
        }
        return file
    }

    /// fsync on a directory makes the entries created in it durable.
    static func syncDirectory(_ path: String) throws(StoreError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else {
            throw .cannotOpen(path: path, reason: "cannot sync the directory: \(String(cString: strerror(errno)))")
        }
    }
}

/// One open segment file; closed when the last holder lets go, so a reader never finds
/// its descriptor closed (or reused) under it.
final class SegmentFile: Sendable {
    let path: String
    let descriptor: Int32

    init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    func write(_ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { buffer in
            guard buffer.count > 0 else { return }
            var written = 0
            while written < buffer.count {
                let count = pwrite(descriptor, buffer.baseAddress! + written, buffer.count - written, off_t(offset) + off_t(written))
                if count < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.payloadWriteFailed(path: path, reason: String(cString: strerror(errno)))
                }
                written += count
            }
        }
    }

    func synchronize() throws {
        #if canImport(Darwin)
        let result = fsync(descriptor)
        #else
        let result = fdatasync(descriptor)
        #endif
        guard result == 0 else {
            throw StoreError.payloadWriteFailed(path: path, reason: "cannot sync: \(String(cString: strerror(errno)))")
        }
    }

    /// Hands the clean pages of bytes `from..<to` back to the kernel (see
    /// `PayloadSegments.cacheWindow`); a hint, so failures are ignored.
    func dropFromCache(from start: Int64, to end: Int64) {
        #if os(Linux)
        let start = max(0, start)
        guard end > start else { return }
        _ = posix_fadvise(descriptor, off_t(start), off_t(end - start), POSIX_FADV_DONTNEED)
        #endif
    }

    func truncate(to length: Int64) throws {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw StoreError.payloadWriteFailed(path: path, reason: String(cString: strerror(errno)))
        }
        guard Int64(status.st_size) > length else { return }
        guard ftruncate(descriptor, off_t(length)) == 0 else {
            throw StoreError.payloadWriteFailed(path: path, reason: "cannot truncate: \(String(cString: strerror(errno)))")
        }
    }
}
