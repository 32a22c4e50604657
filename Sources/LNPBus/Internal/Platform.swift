#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex on the heap, so its address never moves.
final class BusMutex: @unchecked Sendable {
    fileprivate let raw: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        raw = .allocate(capacity: 1)
        raw.initialize(to: pthread_mutex_t())
        pthread_mutex_init(raw, nil)
    }

    deinit {
        pthread_mutex_destroy(raw)
        raw.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(raw) }
    @inline(__always) func unlock() { pthread_mutex_unlock(raw) }

    @inline(__always)
    func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(raw)
        defer { pthread_mutex_unlock(raw) }
        return try body()
    }
}

/// A condition variable bound to one `BusMutex`.
final class BusCondition: @unchecked Sendable {
    private let raw: UnsafeMutablePointer<pthread_cond_t>
    let mutex: BusMutex

    init(mutex: BusMutex = BusMutex()) {
        self.mutex = mutex
        raw = .allocate(capacity: 1)
        raw.initialize(to: pthread_cond_t())
        pthread_cond_init(raw, nil)
    }

    deinit {
        pthread_cond_destroy(raw)
        raw.deallocate()
    }

    /// Caller holds `mutex`.
    func wait() { pthread_cond_wait(raw, mutex.raw) }
    func broadcast() { pthread_cond_broadcast(raw) }
}

/// A value set once by one thread and awaited (blocking) by others.
final class OneShot<Value: Sendable>: @unchecked Sendable {
    private let condition = BusCondition()
    private var value: Value?

    func fulfil(_ newValue: Value) {
        condition.mutex.withLock {
            if value == nil { value = newValue }
            condition.broadcast()
        }
    }

    func wait() -> Value {
        condition.mutex.lock()
        defer { condition.mutex.unlock() }
        while true {
            if let value { return value }
            condition.wait()
        }
    }
}

/// Monotonic nanoseconds, for deadlines computed and compared on bus threads.
enum MonotonicClock {
    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// Nanoseconds in `duration`, clamped to 0...(about 292 years).
    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        if seconds >= Int64(UInt64.max / 1_000_000_000) - 1 { return UInt64.max / 2 }
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }

    static func deadline(after duration: Duration, from now: UInt64 = MonotonicClock.now()) -> UInt64 {
        let (sum, overflow) = now.addingReportingOverflow(nanoseconds(duration))
        return overflow ? UInt64.max : sum
    }

    /// Milliseconds for `zmq_poll` until `deadline` (rounded up so a timer never fires early), -1 for none.
    static func pollTimeout(until deadline: UInt64?, now: UInt64) -> Int {
        guard let deadline else { return -1 }
        if deadline <= now { return 0 }
        let milliseconds = (deadline - now + 999_999) / 1_000_000
        return milliseconds > UInt64(Int32.max) ? Int(Int32.max) : Int(milliseconds)
    }
}

/// Which bus node, if any, owns the current thread: a thread-local slot each node
/// thread fills once, so "am I on my own thread?" is a race-free read of the caller's
/// own slot.
enum CurrentNode {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static func set(_ node: AnyObject) {
        pthread_setspecific(key, Unmanaged.passUnretained(node).toOpaque())
    }

    static func isCurrent(_ node: AnyObject) -> Bool {
        pthread_getspecific(key) == Unmanaged.passUnretained(node).toOpaque()
    }
}

/// Starts a detached OS thread (bus sockets need a thread of their own, never a
/// Swift concurrency executor).
enum BusThread {
    private final class Box {
        let name: String
        let body: () -> Void
        init(name: String, body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    static func spawn(name: String, _ body: @escaping @Sendable () -> Void) throws(BusError) {
        let box = Unmanaged.passRetained(Box(name: name, body: body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        #if canImport(Darwin)
        var thread: pthread_t?
        let result = pthread_create(&thread, &attributes, { raw in
            BusThread.run(raw)
            return nil
        }, box)
        #else
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { raw in
            BusThread.run(raw!)
            return nil
        }, box)
        #endif
        if result != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw BusError(.zmq(errno: result, "cannot start the bus thread \(name): \(String(cString: strerror(result)))"))
        }
    }

    private static func run(_ raw: UnsafeMutableRawPointer) {
        let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
        #if canImport(Darwin)
        pthread_setname_np(box.name)
        #endif
        box.body()
    }
}

/// Wakes a thread blocked in `zmq_poll` from any other thread: the read end of a
/// non-blocking pipe sits in the poll set and one byte is written per wake-up.
final class Waker: @unchecked Sendable {
    let readFD: Int32
    private let writeFD: Int32

    init() throws(BusError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            let code = errno
            throw BusError(.zmq(errno: code, "cannot create the bus wake-up pipe: \(String(cString: strerror(code)))"))
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    func wake() {
        var byte: UInt8 = 1
        while write(writeFD, &byte, 1) < 0 && errno == EINTR {}
        // EAGAIN: the pipe is full, so the reader is certain to wake anyway.
    }

    func drain() {
        var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while true {
            let count = withUnsafeMutableBytes(of: &buffer) { read(readFD, $0.baseAddress, $0.count) }
            if count > 0 { continue }
            if count < 0 && errno == EINTR { continue }
            return
        }
    }

    // Closed only when no submitter can reach the waker any more, so a late wake-up
    // never writes into a file descriptor number the process has reused.
    deinit {
        _ = systemClose(readFD)
        _ = systemClose(writeFD)
    }
}

@inline(__always)
func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #elseif canImport(Musl)
    return Musl.close(fd)
    #else
    return Darwin.close(fd)
    #endif
}

func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code))
}
