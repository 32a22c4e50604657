#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOConcurrencyHelpers

/// Hardware flow control on the line; software flow control (XON/XOFF) is never used,
/// since those two byte values occur in ciphertext.
public enum SerialFlowControl: Hashable, Sendable {
    case none
    /// RTS/CTS, for adapters and cables that wire them.
    case hardware
}

/// Why a serial device could not be opened or used.
public enum SerialPortError: Error, Hashable, Sendable, CustomStringConvertible {
    case noSuchDevice(String)
    case permissionDenied(String)
    case notATerminal(String)
    case unsupportedBaudRate(Int)
    /// Another process (or another line of this node) holds the device.
    case busy(String)
    case system(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .noSuchDevice(path): "there is no device at \(path)"
        case let .permissionDenied(path): "permission to open \(path) is denied (is the user in the dialout group?)"
        case let .notATerminal(path): "\(path) is not a serial device (a terminal)"
        case let .unsupportedBaudRate(rate): "\(rate) baud is not a rate this system's serial driver offers"
        case let .busy(path): "\(path) is already in use by another program or line"
        case let .system(path, operation, code): "\(operation) on \(path) failed: \(String(cString: strerror(code)))"
        }
    }
}

/// One open serial device in raw mode (8N1, no echo, no line discipline), with one
/// thread that does all of its IO: it reads whatever arrives, writes what is queued, and
/// gives the owner a periodic tick for its timers. A dedicated thread and not an event
/// loop, because a tty's reads block in ways NIO's selectors do not model well, and a
/// slow line must never stall unrelated sockets.
///
/// Writes go through a bounded queue (`queuedByteLimit`): `enqueue` refuses bytes over
/// the limit instead of growing memory, and `onDrained` tells the owner when the queue
/// has fallen below half.
public final class SerialPort: Sendable {
    public let path: String
    public let baudRate: Int
    public let queuedByteLimit: Int

    /// What the IO thread calls; each must return quickly.
    public struct Handlers: Sendable {
        public var received: @Sendable ([UInt8]) -> Void
        /// Every `tickInterval` at least, and after each read.
        public var tick: @Sendable () -> Void
        /// The queue fell below half after an `enqueue` was refused.
        public var drained: @Sendable () -> Void
        /// The device failed (unplugged) or `close` was called; nothing follows.
        public var closed: @Sendable (SerialPortError?) -> Void

        public init(received: @escaping @Sendable ([UInt8]) -> Void, tick: @escaping @Sendable () -> Void,
                    drained: @escaping @Sendable () -> Void, closed: @escaping @Sendable (SerialPortError?) -> Void) {
            self.received = received
            self.tick = tick
            self.drained = drained
            self.closed = closed
        }
    }

    private struct WriteQueue {
        var chunks: [[UInt8]] = []
        /// Bytes of `chunks[0]` already written.
        var offset = 0
        var bytes = 0
        var refused = false
        var closing = false
        /// The IO thread has closed the descriptors: nothing may touch them (their numbers
        /// may already belong to someone else).
        var descriptorsClosed = false
        var started = false
        var totalQueued = 0
        var totalWritten = 0
        var totalRead = 0
    }

    private let descriptor: Int32
    /// Written to wake the IO thread from `poll` (new bytes queued, or close).
    private let wakePipe: (read: Int32, write: Int32)
    private let queue = NIOLockedValueBox(WriteQueue())
    private let finished = NIOLockedValueBox<[CheckedContinuation<Void, Never>]?>([])
    static let tickInterval: Duration = .milliseconds(20)
    static let readChunkSize = 4096

    /// Opens `path` at `baudRate`, 8N1, raw, and takes it exclusively: `TIOCEXCL` keeps
    /// other (unprivileged) programs out, and an advisory `flock` keeps out every other
    /// process that also asks, root included, so two nodes never share one line.
    public init(path: String, baudRate: Int, flowControl: SerialFlowControl = .none,
                queuedByteLimit: Int = 128 << 10) throws(SerialPortError) {
        guard let speed = Self.speed(for: baudRate) else { throw .unsupportedBaudRate(baudRate) }
        // Non-blocking: without CLOCAL yet set, a blocking open would wait for carrier.
        let fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            switch code {
            case ENOENT, ENODEV, ENXIO: throw .noSuchDevice(path)
            case EACCES, EPERM: throw .permissionDenied(path)
            case EBUSY: throw .busy(path)
            default: throw .system(path: path, operation: "open", errno: code)
            }
        }
        var failure: SerialPortError?
        defer { if failure != nil { closeDescriptor(fd) } }
        guard isatty(fd) == 1 else {
            failure = .notATerminal(path)
            throw failure!
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            failure = errno == EWOULDBLOCK ? .busy(path) : .system(path: path, operation: "flock", errno: errno)
            throw failure!
        }
        if ioctl(fd, UInt(TIOCEXCL)) != 0 {
            failure = .system(path: path, operation: "ioctl(TIOCEXCL)", errno: errno)
            throw failure!
        }
        do throws(SerialPortError) {
            try Self.configure(fd, path: path, speed: speed, flowControl: flowControl)
        } catch {
            failure = error
            throw error
        }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            failure = .system(path: path, operation: "pipe", errno: errno)
            throw failure!
        }
        for end in pipeEnds {
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        self.path = path
        self.baudRate = baudRate
        self.queuedByteLimit = max(queuedByteLimit, 1)
        descriptor = fd
        wakePipe = (pipeEnds[0], pipeEnds[1])
    }

    private static func configure(_ fd: Int32, path: String, speed: speed_t,
                                  flowControl: SerialFlowControl) throws(SerialPortError) {
        var settings = termios()
        guard tcgetattr(fd, &settings) == 0 else {
            throw errno == ENOTTY ? .notATerminal(path) : .system(path: path, operation: "tcgetattr", errno: errno)
        }
        cfmakeraw(&settings)
        settings.c_cflag |= tcflag_t(CLOCAL | CREAD)
        settings.c_cflag &= ~tcflag_t(PARENB | CSTOPB | CSIZE)
        settings.c_cflag |= tcflag_t(CS8)
        switch flowControl {
        case .none: settings.c_cflag &= ~tcflag_t(CRTSCTS)
        case .hardware: settings.c_cflag |= tcflag_t(CRTSCTS)
        }
        settings.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        // The IO thread polls, so reads return whatever is there.
        withUnsafeMutableBytes(of: &settings.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        guard cfsetispeed(&settings, speed) == 0, cfsetospeed(&settings, speed) == 0 else {
            throw .system(path: path, operation: "cfsetspeed", errno: errno)
        }
        guard tcsetattr(fd, TCSANOW, &settings) == 0 else {
            throw .system(path: path, operation: "tcsetattr", errno: errno)
        }
        // Bytes left in the driver from before we opened belong to nobody.
        _ = tcflush(fd, TCIOFLUSH)
    }

    /// The termios constant for a baud rate; nil when the system has none.
    static func speed(for baudRate: Int) -> speed_t? {
        let table: [Int: Int32]
        #if os(Linux)
        table = [50: B50, 75: B75, 110: B110, 134: B134, 150: B150, 200: B200, 300: B300, 600: B600, 1200: B1200,
                 1800: B1800, 2400: B2400, 4800: B4800, 9600: B9600, 19200: B19200, 38400: B38400, 57600: B57600,
                 115_200: B115200, 230_400: B230400, 460_800: B460800, 500_000: B500000, 576_000: B576000,
                 921_600: B921600, 1_000_000: B1000000, 1_152_000: B1152000, 1_500_000: B1500000,
                 2_000_000: B2000000, 2_500_000: B2500000, 3_000_000: B3000000, 3_500_000: B3500000,
                 4_000_000: B4000000]
        #else
        table = [50: B50, 75: B75, 110: B110, 134: B134, 150: B150, 200: B200, 300: B300, 600: B600, 1200: B1200,
                 1800: B1800, 2400: B2400, 4800: B4800, 9600: B9600, 19200: B19200, 38400: B38400, 57600: B57600,
                 115_200: B115200, 230_400: B230400]
        #endif
        return table[baudRate].map { speed_t($0) }
    }

    // MARK: - IO thread

    /// Starts the IO thread; call once.
    public func start(_ handlers: Handlers) {
        let first = queue.withLockedValue { queue in
            defer { queue.started = true }
            return !queue.started && !queue.closing
        }
        guard first else { return }
        // A plain pthread: FoundationEssentials has no `Thread`, and this one needs nothing from it.
        let context = Unmanaged.passRetained(ThreadContext(body: { [self] in run(handlers) })).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { context in
            let body = Unmanaged<ThreadContext>.fromOpaque(context!).takeRetainedValue().body
            body()
            return nil
        }, context)
        if created == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<ThreadContext>.fromOpaque(context).release()
            closeDescriptors()
            handlers.closed(.system(path: path, operation: "pthread_create", errno: created))
            finish()
        }
    }

    private func run(_ handlers: Handlers) {
        var buffer = [UInt8](repeating: 0, count: Self.readChunkSize)
        var failure: SerialPortError?
        let tickMilliseconds = Int32(Self.tickInterval.components.attoseconds / 1_000_000_000_000_000)
        loop: while true {
            let (wantsWrite, closing) = queue.withLockedValue { (!$0.chunks.isEmpty, $0.closing) }
            if closing { break }
            var descriptors = [
                pollfd(fd: descriptor, events: Int16(POLLIN) | (wantsWrite ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: wakePipe.read, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&descriptors, 2, tickMilliseconds)
            if ready < 0, errno != EINTR {
                failure = .system(path: path, operation: "poll", errno: errno)
                break
            }
            if descriptors[1].revents != 0 {
                var sink = [UInt8](repeating: 0, count: 64)
                while read(wakePipe.read, &sink, sink.count) > 0 {}
            }
            let events = descriptors[0].revents
            if events & Int16(POLLIN) != 0 {
                let count = read(descriptor, &buffer, buffer.count)
                if count > 0 {
                    queue.withLockedValue { $0.totalRead += count }
                    handlers.received(Array(buffer[0..<count]))
                } else if count < 0, errno != EAGAIN, errno != EINTR {
                    failure = .system(path: path, operation: "read", errno: errno)
                    break
                }
            } else if events & Int16(POLLERR | POLLNVAL) != 0 {
                failure = .system(path: path, operation: "poll", errno: EIO)
                break
            }
            // A hung-up pty (its other end closed) reports POLLHUP until reopened; keep
            // the line and let the session's timers decide, but do not spin on it.
            if events & Int16(POLLHUP) != 0, events & Int16(POLLIN) == 0 {
                usleep(UInt32(tickMilliseconds) * 1000)
            }
            if events & Int16(POLLOUT) != 0 {
                switch writeQueued() {
                case .ok: break
                case .drained: handlers.drained()
                case let .failed(error):
                    failure = error
                    break loop
                }
            }
            handlers.tick()
        }
        closeDescriptors()
        handlers.closed(failure)
        finish()
    }

    private func closeDescriptors() {
        queue.withLockedValue { queue in
            guard !queue.descriptorsClosed else { return }
            queue.descriptorsClosed = true
            queue.chunks.removeAll()
            queue.bytes = 0
            closeDescriptor(descriptor)
            closeDescriptor(wakePipe.read)
            closeDescriptor(wakePipe.write)
        }
    }

    private func finish() {
        let waiters = finished.withLockedValue { waiters in
            defer { waiters = nil }
            return waiters ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    private enum WriteResult {
        case ok
        case drained
        case failed(SerialPortError)
    }

    /// Writes from the queue until the driver would block; the queue lock is held only
    /// to take and return chunks, never across a system call.
    private func writeQueued() -> WriteResult {
        while true {
            guard let (chunk, offset) = queue.withLockedValue({ queue in
                queue.chunks.first.map { ($0, queue.offset) }
            }) else { return .ok }
            let written = chunk.withUnsafeBytes { bytes in
                write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            }
            if written < 0 {
                if errno == EAGAIN || errno == EINTR { return .ok }
                return .failed(.system(path: path, operation: "write", errno: errno))
            }
            let drained: Bool = queue.withLockedValue { queue in
                queue.bytes -= written
                queue.totalWritten += written
                queue.offset += written
                if queue.offset == queue.chunks[0].count {
                    queue.chunks.removeFirst()
                    queue.offset = 0
                }
                guard queue.refused, queue.bytes < queuedByteLimit / 2 else { return false }
                queue.refused = false
                return true
            }
            if drained { return .drained }
            if written < chunk.count - offset { return .ok }
        }
    }

    // MARK: - Owner's calls (any thread)

    /// Whether `bytes` more would fit: an empty queue takes anything, so a batch over the
    /// limit can still go out alone. A refusal is remembered, and `drained` follows.
    public func reserve(_ bytes: Int) -> Bool {
        queue.withLockedValue { queue in
            guard !queue.closing else { return false }
            guard queue.bytes == 0 || queue.bytes + bytes <= queuedByteLimit else {
                queue.refused = true
                return false
            }
            return true
        }
    }

    /// Queues bytes for the line without a limit check: the owner has checked with
    /// `reserve`, or these are the session's own small datagrams (handshake, pong,
    /// keepalive), which must not wait behind the owner's bulk.
    ///
    /// Returns the count of bytes ever queued once these are in (`byteCounts.written`
    /// reaches it when they are out), or nil when the port is closing.
    @discardableResult
    public func enqueue(_ bytes: [UInt8]) -> Int? {
        let mark: Int? = queue.withLockedValue { queue in
            guard !queue.closing else { return nil }
            guard !bytes.isEmpty else { return queue.totalQueued }
            queue.chunks.append(bytes)
            queue.bytes += bytes.count
            queue.totalQueued += bytes.count
            return queue.totalQueued
        }
        if mark != nil, !bytes.isEmpty { wake() }
        return mark
    }

    public var queuedBytes: Int { queue.withLockedValue(\.bytes) }
    /// Bytes read from and written to the device since it was opened.
    public var byteCounts: (read: Int, written: Int) { queue.withLockedValue { ($0.totalRead, $0.totalWritten) } }

    /// Stops the IO thread, drops what is still queued, and closes the device.
    public func close() async {
        let neverStarted = queue.withLockedValue { queue in
            queue.closing = true
            return !queue.started
        }
        if neverStarted {
            closeDescriptors()
            finish()
            return
        }
        wake()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyFinished = finished.withLockedValue { waiters in
                guard waiters != nil else { return true }
                waiters!.append(continuation)
                return false
            }
            if alreadyFinished { continuation.resume() }
        }
    }

    private func wake() {
        queue.withLockedValue { queue in
            guard !queue.descriptorsClosed else { return }
            var byte: UInt8 = 1
            _ = write(wakePipe.write, &byte, 1)
        }
    }
}

private final class ThreadContext {
    let body: () -> Void
    init(body: @escaping () -> Void) { self.body = body }
}

private func closeDescriptor(_ fd: Int32) {
    #if canImport(Glibc)
    _ = Glibc.close(fd)
    #else
    _ = Darwin.close(fd)
    #endif
}

