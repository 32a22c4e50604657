#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few POSIX file operations the spool needs, each with the crash-safety rule it keeps.
enum SpoolFiles {
    /// Writes `contents` to `directory/name` so that the name holds either nothing or all of
    /// it, even across a crash: a temporary file (a dot name the importer ignores), fsync,
    /// rename, fsync of the directory so the rename itself survives a power cut.
    static func writeAtomically(directory: String, name: String, contents: [UInt8]) throws(SpoolFileError) {
        let temporary = try writeTemporary(directory: directory, name: name, contents: contents)
        let path = directory + "/" + name
        guard rename(temporary, path) == 0 else {
            let reason = errnoText()
            unlink(temporary)
            throw .cannotWrite(path: path, reason: reason)
        }
        try syncDirectory(directory)
    }

    static func temporaryName(for name: String) -> String { "." + name + ".part" }

    /// The first half of `writeAtomically`: what a crash before the rename leaves behind.
    static func writeTemporary(directory: String, name: String, contents: [UInt8]) throws(SpoolFileError) -> String {
        let temporary = directory + "/" + temporaryName(for: name)
        // Bundles hold only ciphertext without names, so a peer's node running as another
        // user on a shared directory may read them.
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotWrite(path: temporary, reason: errnoText()) }
        var failure: String?
        contents.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errnoText()
                    return
                }
                offset += written
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = errnoText() }
        close(fd)
        if let failure {
            unlink(temporary)
            throw .cannotWrite(path: temporary, reason: failure)
        }
        return temporary
    }

    static func syncDirectory(_ directory: String) throws(SpoolFileError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotWrite(path: directory, reason: errnoText()) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .cannotWrite(path: directory, reason: errnoText()) }
    }

    /// Reads at most `limit` bytes from the start of a file; `.tooLarge` when the whole file
    /// is longer and `whole` is asked for. The size is checked before anything is read.
    static func readFile(path: String, limit: Int, whole: Bool) throws(SpoolFileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .cannotRead(path: path, reason: errnoText()) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .cannotRead(path: path, reason: errnoText()) }
        guard status.st_mode & S_IFMT == S_IFREG else { throw .cannotRead(path: path, reason: "not a regular file") }
        let size = Int(status.st_size)
        if whole, size > limit { throw .tooLarge(path: path, size: size, limit: limit) }
        // One byte more than expected, so that a file that grew since fstat is noticed.
        let capacity = min(size, limit) + (whole ? 1 : 0)
        var contents = [UInt8](repeating: 0, count: capacity)
        var filled = 0
        while filled < capacity {
            let count = contents.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, capacity - filled) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .cannotRead(path: path, reason: errnoText())
            }
            if count == 0 { break }
            filled += count
        }
        if whole, filled > size { throw .cannotRead(path: path, reason: "the file grew while it was read") }
        contents.removeLast(capacity - filled)
        return contents
    }

    /// The names in `directory` that pass `keep`, at most `limit` of them, sorted.
    static func list(_ directory: String, limit: Int, keep: (String) -> Bool) throws(SpoolFileError) -> (names: [String], more: Bool) {
        guard let handle = opendir(directory) else { throw .cannotList(path: directory, reason: errnoText()) }
        defer { closedir(handle) }
        var names = [String]()
        var more = false
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard keep(name) else { continue }
            guard names.count < limit else {
                more = true
                break
            }
            names.append(name)
        }
        return (names.sorted(), more)
    }

    static func isTemporaryName(_ name: String) -> Bool { name.hasPrefix(".") && name.hasSuffix(".part") }

    /// Removes temporary files last modified more than `age` seconds ago (by the system
    /// clock, which is what stamps files), at most a bounded number per call; failures are
    /// left for the next call.
    static func removeTemporaries(in directory: String, olderThan age: Int) {
        guard let names = try? list(directory, limit: 1_000, keep: isTemporaryName).names else { return }
        let now = time(nil)
        for name in names {
            var status = stat()
            let path = directory + "/" + name
            guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { continue }
            #if canImport(Darwin)
            let modified = status.st_mtimespec.tv_sec
            #else
            let modified = status.st_mtim.tv_sec
            #endif
            if modified + age < now { unlink(path) }
        }
    }

    static func remove(_ path: String) throws(SpoolFileError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .cannotWrite(path: path, reason: errnoText()) }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
