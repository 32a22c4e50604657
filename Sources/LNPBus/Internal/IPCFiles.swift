#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Socket files of the ipc transport: private to the node's user.
enum IPCFiles {
    /// Creates `directory` with mode 0700 if it is missing; an existing one must be a directory.
    static func prepareDirectory(_ directory: String) throws(BusError) {
        if mkdir(directory, 0o700) == 0 { return }
        let code = errno
        guard code == EEXIST else {
            throw BusError(.invalidConfiguration("cannot create the ipc directory \(directory): \(errnoDescription(code))"))
        }
        var info = stat()
        guard stat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw BusError(.invalidConfiguration("the ipc path \(directory) exists and is not a directory"))
        }
    }

    /// libzmq replaces an existing socket file when it binds, which would silently take
    /// the endpoint from a server that is still running. So connect first: if someone
    /// answers, refuse; a stale file (connection refused) is left for libzmq to replace.
    static func refuseLiveSocket(at endpoint: String, service: ServiceName) throws(BusError) {
        guard let path = BusLayout.socketFile(of: endpoint) else { return }
        #if canImport(Darwin)
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #endif
        guard fd >= 0 else { return }
        defer { _ = systemClose(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw BusError(.invalidConfiguration("the ipc socket path \(path) is longer than \(capacity - 1) bytes"))
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result == 0 {
            throw BusError(.zmq(errno: EADDRINUSE, "another process already serves \(service) at \(path)"))
        }
    }

    /// Sets a socket file bound a moment ago to mode 0600 and checks it took effect.
    static func restrict(_ path: String) throws(BusError) {
        guard chmod(path, 0o600) == 0 else {
            throw BusError(.invalidConfiguration("cannot set mode 0600 on the socket file \(path): \(errnoDescription(errno))"))
        }
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK, info.st_mode & 0o777 == 0o600 else {
            throw BusError(.invalidConfiguration("the socket file \(path) is not a socket with mode 0600"))
        }
    }

    struct FileIdentity: Equatable {
        let device: UInt64
        let inode: UInt64
    }

    static func identity(of path: String) -> FileIdentity? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// libzmq leaves ipc socket files behind; remove ours unless another server has
    /// bound the path since (then it is a different file).
    static func remove(_ path: String, ifStill identity: FileIdentity) {
        if self.identity(of: path) == identity {
            unlink(path)
        }
    }
}
