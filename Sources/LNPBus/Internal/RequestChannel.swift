import CZeroMQ

typealias ReplyContinuation = UnsafeContinuation<Result<[UInt8], BusError>, Never>

/// A request on its way from a caller's task to a bus thread.
struct OutgoingRequest: Sendable {
    enum Completion: Sendable {
        /// A caller awaiting `BusClient.request`.
        case caller(ReplyContinuation)
        /// A readiness ping the owning thread sent itself.
        case ping
    }

    let id: UInt64
    let method: UInt16
    let frame: [UInt8]
    let timeout: Duration
    let deadline: UInt64
    let completion: Completion

    func complete(_ result: Result<[UInt8], BusError>) {
        if case let .caller(continuation) = completion {
            continuation.resume(returning: result)
        }
    }
}

/// One DEALER connected to one service's ROUTER, with the table of requests awaiting
/// replies, their deadlines, and a backlog for when the socket's queue is full.
/// Lives on, and is used only by, one bus thread.
final class RequestChannel {
    private struct Pending {
        var method: UInt16
        var timeout: Duration
        var deadline: UInt64
        var completion: OutgoingRequest.Completion
        /// Kept only while the request waits in the backlog.
        var frame: [UInt8]
    }

    let service: ServiceName
    let endpoint: String
    let socket: ZSocket
    let monitor: ConnectionMonitor?
    /// Called on the owning thread when a `.ping` request completes.
    var onPingCompletion: (Result<[UInt8], BusError>) -> Void = { _ in }

    private var pending: [UInt64: Pending] = [:]
    private var deadlines = DeadlineHeap()
    private var backlog: [UInt64] = []
    private var backlogHead = 0
    private let message = ZMessage()
    private var limiter: LogLimiter

    init(context: ContextCore, layout: BusLayout, service: ServiceName, label: String) throws(BusError) {
        self.service = service
        endpoint = try layout.checkedEndpoint(for: service, events: false)
        limiter = LogLimiter(logger: context.logger)
        let socket = try ZSocket.open(context.handle, type: ZMQ_DEALER, label: label)
        var monitor: ConnectionMonitor?
        do {
            try SocketTuning.apply(to: socket, transport: layout.transport)
            if let curve = layout.curve {
                try CurveSetup.configureClient(socket, keys: curve)
            }
            if layout.reportsConnections {
                monitor = try ConnectionMonitor(context: context, watching: socket, curve: layout.curve != nil)
            }
            try socket.connect(endpoint)
        } catch {
            monitor?.close()
            socket.close()
            throw error
        }
        self.socket = socket
        self.monitor = monitor
    }

    var hasBacklog: Bool { backlogHead < backlog.count }
    var isIdle: Bool { pending.isEmpty }
    var nextDeadline: UInt64? { deadlines.earliest?.deadline }

    var socketPollItem: zmq_pollitem_t {
        zmq_pollitem_t(socket: socket.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
    }

    var pollEvents: Int16 {
        Int16(ZMQ_POLLIN | (hasBacklog ? ZMQ_POLLOUT : 0))
    }

    func submit(_ request: OutgoingRequest) {
        var entry = Pending(method: request.method, timeout: request.timeout, deadline: request.deadline,
                            completion: request.completion, frame: [])
        if !hasBacklog {
            let code = socket.send(request.frame)
            if code == 0 {
                pending[request.id] = entry
                deadlines.push(deadline: request.deadline, id: request.id)
                return
            }
            guard code == EAGAIN else {
                complete(entry, .failure(BusError(.zmq(errno: code, "cannot send to \(service) at \(endpoint): \(errnoDescription(code))"))))
                return
            }
        }
        entry.frame = request.frame
        pending[request.id] = entry
        deadlines.push(deadline: request.deadline, id: request.id)
        backlog.append(request.id)
    }

    /// Sends what waits in the backlog while the socket accepts it.
    func flushBacklog() {
        while backlogHead < backlog.count {
            let id = backlog[backlogHead]
            guard let entry = pending[id], !entry.frame.isEmpty else {
                backlogHead += 1
                continue
            }
            let code = socket.send(entry.frame)
            if code == EAGAIN { break }
            backlogHead += 1
            if code == 0 {
                pending[id]?.frame = []
            } else {
                pending[id] = nil
                complete(entry, .failure(BusError(.zmq(errno: code, "cannot send to \(service) at \(endpoint): \(errnoDescription(code))"))))
            }
        }
        if backlogHead == backlog.count {
            backlog.removeAll(keepingCapacity: true)
            backlogHead = 0
        }
    }

    func cancel(id: UInt64) {
        if let entry = pending.removeValue(forKey: id) {
            complete(entry, .failure(BusError(.cancelled)))
        }
    }

    /// Reads up to `limit` replies.
    func readReplies(limit: Int = 1024) {
        for _ in 0..<limit {
            let code = message.receive(from: socket)
            guard code == 0 else {
                if code != EAGAIN {
                    limiter.log(.error, "receiving from \(service) failed: \(errnoDescription(code))")
                }
                return
            }
            if message.hasMore {
                let extra = message.discardRest(of: socket)
                limiter.log(.warning, "dropped a \(extra + 1)-part message from \(service): replies are one frame")
                continue
            }
            handleReply(message.bytes)
        }
    }

    private func handleReply(_ frame: UnsafeRawBufferPointer) {
        let header: FrameHeader
        do {
            header = try BusFrame.decodeHeader(frame)
        } catch {
            limiter.log(.warning, "dropped a reply from \(service): \(error)")
            return
        }
        guard header.kind == .reply || header.kind == .failure else {
            limiter.log(.warning, "dropped a frame of kind \(header.kind) from \(service) where a reply was expected")
            return
        }
        guard let entry = pending.removeValue(forKey: header.id) else {
            // Late replies after a timeout or cancellation end here.
            limiter.log(.debug, "dropped a reply from \(service) to request \(header.id), which no one awaits any more")
            return
        }
        guard header.method == entry.method else {
            complete(entry, .failure(BusError(.malformed("\(service) answered method \(entry.method) with method \(header.method)"))))
            return
        }
        if header.kind == .reply {
            complete(entry, .success(BusFrame.payload(of: frame)))
        } else {
            do {
                let failure = try BusFrame.decodeFailure(frame)
                complete(entry, .failure(BusError(.remote(code: failure.code, message: failure.message))))
            } catch {
                complete(entry, .failure(error))
            }
        }
    }

    /// Fails every request whose deadline has passed, explaining the silence as well
    /// as the connection monitor allows.
    func expire(now: UInt64) {
        while let earliest = deadlines.earliest, earliest.deadline <= now {
            _ = deadlines.popEarliest()
            guard let entry = pending[earliest.id], entry.deadline == earliest.deadline else { continue }
            pending[earliest.id] = nil
            let error = monitor?.explainSilence(of: service, method: entry.method, after: entry.timeout)
                ?? BusError(.timeout(service, method: entry.method, after: entry.timeout))
            complete(entry, .failure(error))
        }
        if deadlines.count > 1024 && deadlines.count > 2 * pending.count {
            deadlines.rebuild(from: pending.map { DeadlineHeap.Entry(deadline: $0.value.deadline, id: $0.key) })
        }
    }

    private func complete(_ entry: Pending, _ result: Result<[UInt8], BusError>) {
        switch entry.completion {
        case let .caller(continuation):
            continuation.resume(returning: result)
        case .ping:
            onPingCompletion(result)
        }
    }

    func failAll(_ error: BusError) {
        let entries = pending
        pending.removeAll()
        backlog.removeAll()
        backlogHead = 0
        deadlines = DeadlineHeap()
        for entry in entries.values {
            complete(entry, .failure(error))
        }
    }

    func close() {
        monitor?.close()
        socket.close()
    }
}
