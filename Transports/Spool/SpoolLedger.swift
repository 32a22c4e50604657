#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The bundle ids a node is done with: bundles it imported completely, and bundles it wrote
/// itself into a shared directory. The importer reads a bundle's 29-byte header, finds its id
/// here and skips the file, so importing the same bundles again costs a few small reads.
///
/// The file (`spool-ledger` in the node's data directory) is a first line `lnp-spool-ledger 1`
/// and one 32-digit hex id per line, appended and fsynced one bundle at a time. A line torn
/// by a crash is ignored on load: that bundle is imported again, and msgd drops its
/// messages by id, so forgetting is always safe, only slower. That is also why the ledger
/// can be bounded: beyond `capacity` ids the oldest half is dropped.
public final class SpoolLedger: Sendable {
    public static let fileName = "spool-ledger"
    static let firstLine = "lnp-spool-ledger 1"
    static let lineLength = SpoolBundleID.length * 2 + 1

    public let path: String
    public let capacity: Int
    private let state: Mutex<State>

    private struct State {
        var ids: Set<SpoolBundleID> = []
        /// In the order they were recorded, to drop the oldest.
        var order: [SpoolBundleID] = []
    }

    /// Loads the ledger at `path`, or starts an empty one. At most `capacity` ids are kept
    /// and at most the last `capacity` lines are read, however large the file has grown.
    public init(path: String, capacity: Int = 200_000) throws(SpoolFileError) {
        self.path = path
        self.capacity = max(capacity, 2)
        var state = State()
        if SpoolFiles.exists(path) {
            let limit = Self.firstLine.utf8.count + 1 + self.capacity * Self.lineLength
            let bytes = try Self.readTail(path: path, limit: limit)
            for line in bytes.split(separator: UInt8(ascii: "\n")) where line.count == Self.lineLength - 1 {
                guard let id = SpoolBundleID(hex: String(decoding: line, as: UTF8.self)), !state.ids.contains(id) else { continue }
                state.ids.insert(id)
                state.order.append(id)
            }
        } else {
            try SpoolFiles.writeAtomically(directory: Self.directory(of: path), name: Self.name(of: path),
                                           contents: Array((Self.firstLine + "\n").utf8))
        }
        self.state = Mutex(state)
    }

    public func contains(_ id: SpoolBundleID) -> Bool { state.withLock { $0.ids.contains(id) } }

    public var count: Int { state.withLock { $0.ids.count } }

    /// Records `id` durably: when this returns the line is on disk.
    public func record(_ id: SpoolBundleID) throws(SpoolFileError) {
        try state.withLock { (state: inout State) throws(SpoolFileError) in
            guard !state.ids.contains(id) else { return }
            state.ids.insert(id)
            state.order.append(id)
            if state.order.count > capacity {
                let dropped = state.order.prefix(state.order.count - capacity / 2)
                for old in dropped { state.ids.remove(old) }
                state.order.removeFirst(dropped.count)
                let lines = Self.firstLine + "\n" + state.order.map { $0.hex + "\n" }.joined()
                try SpoolFiles.writeAtomically(directory: Self.directory(of: path), name: Self.name(of: path),
                                               contents: Array(lines.utf8))
            } else {
                try Self.append(path: path, line: id.hex + "\n")
            }
        }
    }

    private static func append(path: String, line: String) throws(SpoolFileError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotWrite(path: path, reason: SpoolFiles.errnoText()) }
        defer { close(fd) }
        let bytes = Array(line.utf8)
        // 33 bytes in one O_APPEND write: whole or, after a crash, a torn line that load skips.
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else { throw .cannotWrite(path: path, reason: SpoolFiles.errnoText()) }
    }

    private static func readTail(path: String, limit: Int) throws(SpoolFileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotRead(path: path, reason: SpoolFiles.errnoText()) }
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        let start = max(0, size - limit)
        var bytes = [UInt8](repeating: 0, count: size - start)
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + filled, $0.count - filled, off_t(start + filled)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw .cannotRead(path: path, reason: count < 0 ? SpoolFiles.errnoText() : "the file shrank while it was read") }
            filled += count
        }
        return bytes
    }

    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func name(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
