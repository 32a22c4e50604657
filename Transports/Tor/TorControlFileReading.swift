#if canImport(Glibc)
import Glibc
#endif

/// `strerror(errno)` of a failed system call, as errors quote it.
struct SystemCallFailure: Error {
    let reason: String

    init(errno code: Int32 = errno) { reason = String(cString: strerror(code)) }
}

/// Reads at most `limit` bytes from `fd`: files tor or a user hands us (cookies, keys,
/// port files) are tiny, and a wrong path must not make us read a log or a device whole.
/// Callers that must tell "too large" from "exactly full" ask for one byte more.
func readAtMost(_ limit: Int, from fd: Int32) throws(SystemCallFailure) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: limit)
    var filled = 0
    while filled < limit {
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, limit - filled) }
        if count < 0 && errno == EINTR { continue }
        guard count >= 0 else { throw SystemCallFailure() }
        if count == 0 { break }
        filled += count
    }
    bytes.removeSubrange(filled...)
    return bytes
}
