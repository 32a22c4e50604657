#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing

/// A real `tor` started for a test from a torrc of its own, in a fresh temporary
/// directory (its DataDirectory). Use `withTor`, which stops exactly the process it
/// started, also when the test fails.
struct OfflineTor: Sendable {
    struct StartFailed: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t
    let directory: String
    /// From `ControlPortWriteToFile`.
    let controlPort: Int
    /// The first SocksPort listener, asked from the control port; nil when there is none.
    let socksPort: Int?

    var logPath: String { directory + "/tor.log" }

    /// Writes the torrc (the fixture adds DataDirectory, ControlPort, ControlPortWriteToFile
    /// and a notice log to `lines`), starts `tor -f`, and waits until the control port
    /// file exists and the control port names the SOCKS listener.
    static func start(_ lines: [String], timeout: Duration = .seconds(20)) async throws -> OfflineTor {
        var template = Array("/tmp/lnp-tor-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw StartFailed(description: "mkdtemp failed (errno \(errno))") }
        let directory = String(cString: made)
        let torrc = directory + "/torrc"
        let controlPortFile = directory + "/control-port"
        let config = [
            "DataDirectory \(directory)",
            "ControlPort 127.0.0.1:auto",
            "ControlPortWriteToFile \(controlPortFile)",
            "Log notice file \(directory)/tor.log",
            "ShutdownWaitLength 0",
        ] + lines
        guard writeFile(torrc, config.joined(separator: "\n") + "\n") else {
            removeDirectory(directory)
            throw StartFailed(description: "cannot write \(torrc)")
        }

        var pid: pid_t = 0
        let arguments = ["tor", "-f", torrc, "--quiet"]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        // tor inherits our threads' signal mask, where the test runner may block
        // SIGTERM: it would then ignore `stop` until SIGKILL.
        #if os(Linux)
        var attributes = posix_spawnattr_t()
        #else
        var attributes: posix_spawnattr_t?
        #endif
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let spawned = posix_spawnp(&pid, "tor", nil, &attributes, &argv, environ)
        guard spawned == 0 else {
            removeDirectory(directory)
            throw StartFailed(description: "cannot start tor: posix_spawnp failed with \(spawned)")
        }

        do {
            let deadline = ContinuousClock.now + timeout
            var controlPort: Int?
            while controlPort == nil {
                controlPort = readFile(controlPortFile).flatMap(parsePortLine)
                if controlPort != nil { break }
                if hasExited(pid) {
                    pid = 0
                    throw StartFailed(description: "tor exited before opening its control port")
                }
                guard ContinuousClock.now < deadline else { throw StartFailed(description: "tor opened no control port within \(timeout)") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let socksPort = try socksListenerPort(controlPort: controlPort!, directory: directory)
            return OfflineTor(pid: pid, directory: directory, controlPort: controlPort!, socksPort: socksPort)
        } catch {
            let log = readFile(directory + "/tor.log") ?? ""
            if pid != 0 { stop(pid: pid) }
            removeDirectory(directory)
            throw StartFailed(description: "\(error); tor's log:\n\(log.suffix(2000))")
        }
    }

    /// SIGTERM (tor exits within milliseconds), SIGKILL after 5 s; then the directory goes.
    func stop() {
        Self.stop(pid: pid)
        Self.removeDirectory(directory)
    }

    private static func stop(pid: pid_t) {
        kill(pid, SIGTERM)
        for _ in 0..<500 {
            if hasExited(pid) { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        while !hasExited(pid) { usleep(10_000) }
    }

    /// Reaps `pid` if it has exited. ECHILD also means gone: where SIGCHLD is ignored
    /// the system reaps children itself, and waitpid never returns their pid.
    private static func hasExited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result == -1 && errno == ECHILD)
    }

    /// "PORT=127.0.0.1:41865" → 41865.
    private static func parsePortLine(_ text: String) -> Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PORT=") }),
              let colon = line.lastIndex(of: ":") else { return nil }
        return Int(line[line.index(after: colon)...])
    }

    /// GETINFO net/listeners/socks over the control port, with the cookie when tor
    /// wrote one (CookieAuthentication 1), otherwise with no authentication.
    private static func socksListenerPort(controlPort: Int, directory: String) throws -> Int? {
        var authenticate = "AUTHENTICATE"
        if let cookie = readBytes(directory + "/control_auth_cookie") {
            authenticate += " " + cookie.map { ($0 < 0x10 ? "0" : "") + String($0, radix: 16) }.joined()
        }
        let answer = try exchange(port: controlPort, "\(authenticate)\r\nGETINFO net/listeners/socks\r\nQUIT\r\n")
        guard let line = answer.split(separator: "\r\n").first(where: { $0.hasPrefix("250-net/listeners/socks=") })
        else {
            if answer.contains("250 OK\r\n250 closing") || answer.contains("net/listeners/socks=\r\n") { return nil }
            throw StartFailed(description: "the control port answered: \(answer.prefix(300))")
        }
        // 250-net/listeners/socks="127.0.0.1:41865" ["…"]
        let first = line.split(separator: "\"").dropFirst().first ?? ""
        guard let colon = first.lastIndex(of: ":") else { return nil }
        return Int(first[first.index(after: colon)...])
    }

    /// Writes `request` to 127.0.0.1:`port` and reads until the peer closes (5 s at most).
    private static func exchange(port: Int, _ request: String) throws -> String {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socketFD >= 0 else { throw StartFailed(description: "socket() failed (errno \(errno))") }
        defer { close(socketFD) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw StartFailed(description: "cannot connect to the control port (errno \(errno))") }
        let bytes = Array(request.utf8)
        guard send(socketFD, bytes, bytes.count, 0) == bytes.count else { throw StartFailed(description: "cannot write to the control port") }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while answer.count < 65536 {
            let count = recv(socketFD, &chunk, chunk.count, 0)
            guard count > 0 else { break }
            answer += chunk[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    static func readFile(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    private static func readBytes(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return bytes
    }

    private static func writeFile(_ path: String, _ text: String) -> Bool {
        guard let file = fopen(path, "wb") else { return false }
        defer { fclose(file) }
        let bytes = Array(text.utf8)
        return fwrite(bytes, 1, bytes.count, file) == bytes.count
    }

    /// Removes what tor and the fixture wrote (files, and tor's key and cache
    /// directories): whatever `unlink` refuses is a directory, emptied first.
    private static func removeDirectory(_ path: String) {
        guard let directory = opendir(path) else { return }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != ".", name != ".." else { continue }
            let child = path + "/" + name
            if unlink(child) != 0 { removeDirectory(child) }
        }
        closedir(directory)
        rmdir(path)
    }
}

/// Runs `body` with a tor started from `lines`; the tor is stopped whatever happens.
func withTor<R>(_ lines: [String], _ body: (OfflineTor) async throws -> R) async throws -> R {
    let tor = try await OfflineTor.start(lines)
    do {
        let result = try await body(tor)
        tor.stop()
        return result
    } catch {
        tor.stop()
        throw error
    }
}

/// A single tor that cannot reach any network: its only directory authority is a closed
/// port on loopback. It starts in about a second, opens its SocksPort, and answers SOCKS
/// errors without touching the internet (see /work/shared/notes/tor-testnet.md).
let offlineTorLines = [
    "SocksPort 127.0.0.1:auto ExtendedErrors IsolateSOCKSAuth",
    "GeoIPFile /dev/null",
    "GeoIPv6File /dev/null",
    "DirAuthority offline orport=1 no-v2 v3ident=0000000000000000000000000000000000000000 127.0.0.1:1 0000000000000000000000000000000000000000",
]
