#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum BusLogLevel: Int, Sendable, Comparable, CustomStringConvertible {
    case debug, info, warning, error

    public static func < (lhs: BusLogLevel, rhs: BusLogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }
}

/// Where the bus reports what it drops or refuses (malformed frames, vanished clients).
/// Called from bus threads: the sink must be quick and thread-safe.
public struct BusLogger: Sendable {
    public var minimumLevel: BusLogLevel
    public let sink: @Sendable (BusLogLevel, String) -> Void

    public init(minimumLevel: BusLogLevel = .info, sink: @escaping @Sendable (BusLogLevel, String) -> Void) {
        self.minimumLevel = minimumLevel
        self.sink = sink
    }

    public static let standardError = BusLogger { level, message in
        let line = Array("lnp-bus \(level): \(message)\n".utf8)
        line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    }

    public static let discard = BusLogger(minimumLevel: .error) { _, _ in }

    @inline(__always)
    func log(_ level: BusLogLevel, _ message: @autoclosure () -> String) {
        if level >= minimumLevel { sink(level, message()) }
    }
}

/// Bounds the log lines one bus thread writes about untrusted input: at most
/// `perSecond` lines, then a count of what was suppressed.
struct LogLimiter {
    let logger: BusLogger
    let perSecond: Int
    private var windowStart: UInt64 = 0
    private var written = 0
    private var suppressed = 0

    init(logger: BusLogger, perSecond: Int = 20) {
        self.logger = logger
        self.perSecond = perSecond
    }

    mutating func log(_ level: BusLogLevel, _ message: @autoclosure () -> String) {
        guard level >= logger.minimumLevel else { return }
        let now = MonotonicClock.now()
        if now &- windowStart >= 1_000_000_000 {
            if suppressed > 0 {
                logger.log(level, "\(suppressed) similar messages suppressed")
            }
            windowStart = now
            written = 0
            suppressed = 0
        }
        if written < perSecond {
            written += 1
            logger.log(level, message())
        } else {
            suppressed += 1
        }
    }
}
