#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNPBus
import Testing

struct DeadlineExceeded: Error, CustomStringConvertible {
    let seconds: Double
    var description: String { "the test did not finish within \(seconds) s" }
}

/// Thread-safe box for values written by bus threads and read by tests.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private var mutex = pthread_mutex_t()

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body(&value)
    }

    var current: Value { withLock { $0 } }
}

/// Runs `body`, failing the test (instead of hanging the suite) if it takes longer
/// than `seconds`. The body keeps running in the background in that case.
func withDeadline(
    _ seconds: Double = 10,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @escaping @Sendable () async throws -> Void
) async throws {
    let once = Locked<Bool>(false)
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        @Sendable func finish(_ result: Result<Void, any Error>) {
            let first = once.withLock { done -> Bool in
                defer { done = true }
                return !done
            }
            if first { continuation.resume(with: result) }
        }
        Task {
            do {
                try await body()
                finish(.success(()))
            } catch {
                finish(.failure(error))
            }
        }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            finish(.failure(DeadlineExceeded(seconds: seconds)))
        }
    }
}

/// Polls `condition` every 2 ms until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 5, _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: .seconds(seconds))
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// A log sink the tests can inspect.
final class CapturedLog: Sendable {
    let lines = Locked<[String]>([])

    var logger: BusLogger {
        BusLogger(minimumLevel: .debug) { [lines] level, message in
            lines.withLock { $0.append("\(level): \(message)") }
        }
    }

    func contains(_ fragment: String) -> Bool {
        lines.current.contains { $0.contains(fragment) }
    }
}

/// A fresh private directory under /tmp, removed by `remove()`.
struct TemporaryDirectory: Sendable {
    let path: String

    init() {
        var template = Array("/tmp/lnp-bus-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(created != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() {
        removeTree(path)
    }

    private func removeTree(_ path: String) {
        if let directory = opendir(path) {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let child = path + "/" + name
                var info = stat()
                if lstat(child, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
                    removeTree(child)
                } else {
                    unlink(child)
                }
            }
            closedir(directory)
        }
        rmdir(path)
    }
}

func fileMode(_ path: String) -> (isSocket: Bool, isRegular: Bool, permissions: UInt32)? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return ((info.st_mode & S_IFMT) == S_IFSOCK, (info.st_mode & S_IFMT) == S_IFREG, UInt32(info.st_mode & 0o777))
}

/// A base port with `count` consecutive free tcp ports on 127.0.0.1.
func freeTCPBasePort(count: Int) -> UInt16 {
    while true {
        let base = UInt16.random(in: 20_000...60_000)
        var sockets: [Int32] = []
        var allFree = true
        for offset in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = (base + UInt16(offset)).bigEndian
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            sockets.append(fd)
            if result != 0 {
                allFree = false
                break
            }
        }
        for fd in sockets { close(fd) }
        if allFree { return base }
    }
}

private let namespaceCounter = Locked<Int>(0)

func uniqueNamespace(_ prefix: String = "test") -> String {
    let number = namespaceCounter.withLock { value -> Int in
        value += 1
        return value
    }
    return "\(prefix)-\(getpid())-\(number)"
}

/// The transports a test can run over.
enum TransportKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case inproc, ipc, tcp

    var testDescription: String { rawValue }
}

/// One test's bus: a context, a layout for `kind`, and what must be cleaned up.
final class TestBus: @unchecked Sendable {
    let context: BusContext
    let layout: BusLayout
    let log = CapturedLog()
    let directory: TemporaryDirectory?
    let keys: CurveKeyPair?

    init(_ kind: TransportKind, services: [ServiceName] = ServiceName.standard) throws {
        context = try BusContext(logger: log.logger)
        switch kind {
        case .inproc:
            directory = nil
            keys = nil
            layout = BusLayout(transport: .inproc(namespace: uniqueNamespace()), services: services)
        case .ipc:
            let directory = TemporaryDirectory()
            self.directory = directory
            keys = nil
            layout = BusLayout(transport: .ipc(directory: directory.path + "/bus"), services: services)
        case .tcp:
            let directory = TemporaryDirectory()
            self.directory = directory
            let keys = try CurveKeyPair.loadOrCreate(path: directory.path + "/bus.key")
            self.keys = keys
            layout = BusLayout(
                transport: .tcp(host: "127.0.0.1", basePort: freeTCPBasePort(count: 2 * services.count),
                                curve: CurveKeys(server: keys)),
                services: services)
        }
    }

    func close() {
        context.close()
        directory?.remove()
    }
}

/// A server whose handler echoes the payload back, prefixed with the method.
func echoServer(_ bus: TestBus, name: ServiceName = .keyd) throws -> BusServer {
    try BusServer(context: bus.context, layout: bus.layout, name: name) { message, responder in
        responder.reply([UInt8(message.method >> 8), UInt8(message.method & 0xff)] + message.payload)
    }
}
