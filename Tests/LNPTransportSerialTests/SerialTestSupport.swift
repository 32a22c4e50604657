#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LNPCrypto
import LNPSession
import LNPTestSupport
import LNPTransport
import LNPTransportSerial
import LNPWire
import Logging
import NIOConcurrencyHelpers
import Testing

/// Two pseudo-terminals joined by socat, like two serial ports joined by a null-modem
/// cable: bytes written to one device come out of the other. socat is stopped by
/// `stop()`, which `withPtyPair` always calls.
final class PtyPair {
    let directory: String
    let process: Process
    var a: String { directory + "/A" }
    var b: String { directory + "/B" }

    struct SocatFailed: Error, CustomStringConvertible {
        let description: String
    }

    init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lnp-serial-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        process.arguments = ["-d", "-d", "pty,raw,echo=0,link=\(directory)/A", "pty,raw,echo=0,link=\(directory)/B"]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw SocatFailed(description: "cannot start socat (Scripts/install-deps test installs it): \(error)")
        }
        let a = directory + "/A", b = directory + "/B"
        do {
            try await waitUntil("socat's pty links") {
                guard process.isRunning else { throw SocatFailed(description: "socat exited with \(process.terminationStatus)") }
                return FileManager.default.fileExists(atPath: a) && FileManager.default.fileExists(atPath: b)
            }
        } catch {
            stop()
            throw error
        }
    }

    /// SIGTERM first; SIGKILL if socat is still there after a second (a child started
    /// from a thread that blocks SIGTERM inherits the block).
    func stop() {
        let pid = process.processIdentifier
        if process.isRunning {
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(1)
            while process.isRunning, ContinuousClock.now < deadline { usleep(10_000) }
            if process.isRunning { kill(pid, SIGKILL) }
            while process.isRunning { usleep(10_000) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Writes `bytes` straight into device `path` (not through its transport): they come
    /// out at the other end as line noise. Root may open a device held with `TIOCEXCL`.
    func inject(_ bytes: [UInt8], into path: String) throws {
        let fd = open(path, O_WRONLY | O_NOCTTY)
        guard fd >= 0 else { throw SocatFailed(description: "cannot open \(path) to inject noise: errno \(errno)") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written > 0 else { throw SocatFailed(description: "writing noise to \(path) failed: errno \(errno)") }
            offset += written
        }
    }
}

func withPtyPair<R>(_ body: (PtyPair) async throws -> R) async throws -> R {
    let pair = try await PtyPair()
    do {
        let result = try await body(pair)
        pair.stop()
        return result
    } catch {
        pair.stop()
        throw error
    }
}

/// Every event a transport reported, in order.
final class EventRecorder: Sendable {
    private let events = NIOLockedValueBox<[TransportEvent]>([])

    func record(_ event: TransportEvent) { events.withLockedValue { $0.append(event) } }
    var all: [TransportEvent] { events.withLockedValue { $0 } }

    func messages(from nodeID: PublicKey) -> [[UInt8]] {
        all.compactMap { if case let .message(from, bytes) = $0, from == nodeID { bytes } else { nil } }
    }

    func connections(of nodeID: PublicKey) -> [PeerInfo] {
        all.compactMap { if case let .connected(info) = $0, info.nodeID == nodeID { info } else { nil } }
    }

    func disconnections(of nodeID: PublicKey) -> [String] {
        all.compactMap { if case let .disconnected(id, reason) = $0, id == nodeID { reason } else { nil } }
    }

    func writableEvents() -> Int {
        all.filter { if case .writable = $0 { true } else { false } }.count
    }
}

/// A serial transport with its key and its recorder.
struct SerialNode {
    let key: PrivateKey
    let transport: SerialTransport
    let events: EventRecorder

    var nodeID: PublicKey { key.publicKey }

    static let features = FeatureVector(features: [.varOnionOptin, .paymentSecret])

    /// Timers short enough for a test to see a restart within seconds.
    static let testPolicy: DatagramPolicy = {
        var policy = DatagramPolicy.serial()
        policy.handshakeRetryInterval = .milliseconds(200)
        policy.handshakeRetryIntervalLimit = .seconds(1)
        policy.keepaliveInterval = .milliseconds(300)
        policy.deadPeerTimeout = .milliseconds(1500)
        return policy
    }()

    static func start(key: PrivateKey = .generate(), listen: [String] = [],
                      _ configure: (inout SerialTransportConfiguration) -> Void = { _ in }) async throws -> SerialNode {
        var configuration = SerialTransportConfiguration(
            localKey: key, localInit: InitMessage(features: features),
            listen: try listen.map { try ListenAddress(parsing: $0) })
        configuration.datagramPolicy = testPolicy
        configuration.initRetryInterval = .milliseconds(200)
        configuration.redialDelay = .milliseconds(200)
        configuration.logger = testLogger
        configure(&configuration)
        let events = EventRecorder()
        let transport = SerialTransport(configuration: configuration) { events.record($0) }
        try await transport.start()
        return SerialNode(key: key, transport: transport, events: events)
    }

    func address(on path: String, baud: Int = 115_200) -> PeerAddress {
        try! PeerAddress(parsing: "serial://\(nodeID.hex)@\(path)?baud=\(baud)")
    }
}

let testLogger: Logger = {
    var logger = Logger(label: "lnp.transport.serial.test")
    logger.logLevel = .notice
    return logger
}()

func customMessage(_ sequence: Int, type: UInt16 = 32769, padding: Int = 0) -> [UInt8] {
    var bytes = [UInt8(type >> 8), UInt8(type & 0xff)]
    withUnsafeBytes(of: UInt32(sequence).bigEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: repeatElement(UInt8(sequence & 0xff), count: padding))
    return bytes
}

/// Sends every message, waiting out `.queueFull` (the line's queue is bounded).
func sendAll(_ messages: [[UInt8]], from node: SerialNode, to peer: PublicKey) async throws {
    for message in messages {
        while try node.transport.send([message], to: peer) == .queueFull {
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}
