import CZeroMQ

/// A libzmq socket handle. Whoever holds one uses it from the single bus thread that
/// created it; every socket is created with `ZMQ_LINGER` 0 so that closing it never
/// keeps the context from terminating.
struct ZSocket {
    let handle: UnsafeMutableRawPointer
    let label: String

    static func open(_ context: UnsafeMutableRawPointer, type: Int32, label: String) throws(BusError) -> ZSocket {
        guard let handle = zmq_socket(context, type) else {
            throw BusError.lastZMQ("cannot create the \(label) socket")
        }
        let socket = ZSocket(handle: handle, label: label)
        do {
            try socket.set(ZMQ_LINGER, 0)
        } catch {
            zmq_close(handle)
            throw error
        }
        return socket
    }

    func set(_ option: Int32, _ value: Int32) throws(BusError) {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw BusError.lastZMQ("cannot set option \(option) on the \(label) socket")
        }
    }

    func set(_ option: Int32, int64 value: Int64) throws(BusError) {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int64>.size) == 0 else {
            throw BusError.lastZMQ("cannot set option \(option) on the \(label) socket")
        }
    }

    func set(_ option: Int32, bytes: UnsafeRawBufferPointer) throws(BusError) {
        guard zmq_setsockopt(handle, option, bytes.baseAddress, bytes.count) == 0 else {
            throw BusError.lastZMQ("cannot set option \(option) on the \(label) socket")
        }
    }

    func set(_ option: Int32, bytes: [UInt8]) throws(BusError) {
        let result = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard result == 0 else {
            throw BusError.lastZMQ("cannot set option \(option) on the \(label) socket")
        }
    }

    func bind(_ endpoint: String) throws(BusError) {
        guard zmq_bind(handle, endpoint) == 0 else {
            throw BusError.lastZMQ("cannot bind the \(label) socket to \(endpoint)")
        }
    }

    func connect(_ endpoint: String) throws(BusError) {
        guard zmq_connect(handle, endpoint) == 0 else {
            throw BusError.lastZMQ("cannot connect the \(label) socket to \(endpoint)")
        }
    }

    func close() {
        zmq_close(handle)
    }

    /// Sends one frame without blocking; 0 or the errno (EAGAIN when the peer's queue is full).
    @inline(__always)
    func send(_ bytes: UnsafeRawBufferPointer, more: Bool = false) -> Int32 {
        let flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)
        while true {
            if zmq_send(handle, bytes.baseAddress, bytes.count, flags) >= 0 { return 0 }
            let code = zmq_errno()
            if code != EINTR { return code }
        }
    }

    @inline(__always)
    func send(_ bytes: [UInt8], more: Bool = false) -> Int32 {
        bytes.withUnsafeBytes { send($0, more: more) }
    }

    /// Sends `frame` with `value` written big-endian over bytes `offset..<offset+8`,
    /// in the one copy libzmq makes anyway (the caller's array stays untouched).
    func send(_ frame: [UInt8], stamping value: UInt64, at offset: Int) -> Int32 {
        precondition(offset + 8 <= frame.count)
        var message = zmq_msg_t()
        guard zmq_msg_init_size(&message, frame.count) == 0 else { return zmq_errno() }
        let data = zmq_msg_data(&message)!
        frame.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        withUnsafeBytes(of: value.bigEndian) { (data + offset).copyMemory(from: $0.baseAddress!, byteCount: 8) }
        while true {
            if zmq_msg_send(&message, handle, ZMQ_DONTWAIT) >= 0 { return 0 }
            let code = zmq_errno()
            if code != EINTR {
                zmq_msg_close(&message)
                return code
            }
        }
    }

    /// The mask of `ZMQ_POLLIN`/`ZMQ_POLLOUT` the socket is ready for right now.
    func events() -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        guard zmq_getsockopt(handle, ZMQ_EVENTS, &value, &size) == 0 else { return 0 }
        return value
    }
}

/// A reusable receive buffer (`zmq_msg_t` on the heap, so libzmq's view of it never moves).
final class ZMessage {
    private let raw: UnsafeMutablePointer<zmq_msg_t>

    init() {
        raw = .allocate(capacity: 1)
        raw.initialize(to: zmq_msg_t())
        zmq_msg_init(raw)
    }

    deinit {
        zmq_msg_close(raw)
        raw.deallocate()
    }

    /// Receives the next frame without blocking: 0, or the errno (EAGAIN when none is waiting).
    @inline(__always)
    func receive(from socket: ZSocket) -> Int32 {
        while true {
            if zmq_msg_recv(raw, socket.handle, ZMQ_DONTWAIT) >= 0 { return 0 }
            let code = zmq_errno()
            if code != EINTR { return code }
        }
    }

    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: zmq_msg_data(raw), count: zmq_msg_size(raw))
    }

    var count: Int { zmq_msg_size(raw) }

    var hasMore: Bool { zmq_msg_more(raw) != 0 }

    /// Reads and discards the remaining frames of the current multipart message.
    /// Returns how many were discarded.
    @discardableResult
    func discardRest(of socket: ZSocket) -> Int {
        var discarded = 0
        while hasMore {
            guard receive(from: socket) == 0 else { break }
            discarded += 1
        }
        return discarded
    }
}

/// Options every bus socket shares.
enum SocketTuning {
    /// Queue depth per peer. The bus is internal and every reader drains its socket
    /// continuously, so a deep queue absorbs bursts (1,000 requests in flight) instead of
    /// dropping; a peer that stops reading still hits a bound.
    static let highWaterMark: Int32 = 100_000

    static func apply(to socket: ZSocket, transport: BusTransport) throws(BusError) {
        try socket.set(ZMQ_SNDHWM, highWaterMark)
        try socket.set(ZMQ_RCVHWM, highWaterMark)
        // A peer that sends a bigger frame is disconnected by libzmq (ipc, tcp).
        try socket.set(ZMQ_MAXMSGSIZE, int64: Int64(BusFrame.maximumFrameSize))
        if case .tcp = transport {
            // Dual stack: IPv6 hosts work and IPv4 ones still do.
            try socket.set(ZMQ_IPV6, 1)
            // Detect a vanished host on an idle connection (ZMTP heartbeats).
            try socket.set(ZMQ_HEARTBEAT_IVL, 5_000)
            try socket.set(ZMQ_HEARTBEAT_TIMEOUT, 15_000)
        }
    }
}
