import CZeroMQ

/// Requests to one service. Its DEALER socket lives on a thread of its own; callers on
/// any thread or task hand requests over through a locked queue and one wake-up.
public final class BusClient: Sendable {
    let core: ClientCore
    public let service: ServiceName
    /// Keeps the context open while this client exists.
    private let context: BusContext

    public init(context: BusContext, layout: BusLayout, service: ServiceName) throws(BusError) {
        self.service = service
        self.context = context
        core = try ClientCore(context: context.core, layout: layout, service: service)
        try core.launch()
    }

    /// Sends `message` and returns the reply payload, or throws: `.remote` when the
    /// service failed it, `.timeout` / `.serviceUnavailable` / `.handshakeFailed` when no
    /// answer came within `timeout`, `.cancelled`, `.closed`.
    public func request(_ message: BusMessage, timeout: Duration) async throws(BusError) -> [UInt8] {
        guard !message.isReserved else {
            throw BusError(.invalidConfiguration("method \(message.method) is reserved for the bus itself"))
        }
        try BusFrame.checkPayloadSize(message.payload)
        return try await core.send(method: message.method, payload: message.payload, timeout: timeout)
    }

    /// Asks the service's server (not its handler) to answer; proves it is bound and serving.
    public func ping(timeout: Duration) async throws(BusError) {
        _ = try await core.send(method: BusMessage.pingMethod, payload: [], timeout: timeout)
    }

    /// Fails the requests still waiting with `.closed` and closes the socket.
    public func close() {
        core.shutdown()
    }

    deinit {
        core.shutdown()
    }
}

final class ClientCore: NodeCore<ClientCore.Command>, @unchecked Sendable {
    enum Command {
        case request(OutgoingRequest)
        case cancel(UInt64)
    }

    private let layout: BusLayout
    private let service: ServiceName
    private var channel: RequestChannel?
    /// Guarded by `queue.mutex`.
    private var lastID: UInt64 = 0

    init(context: ContextCore, layout: BusLayout, service: ServiceName) throws(BusError) {
        self.layout = layout
        self.service = service
        _ = try layout.checkedEndpoint(for: service, events: false)
        try super.init(context: context, threadName: "bus-c-\(service.rawValue)")
    }

    func send(method: UInt16, payload: [UInt8], timeout: Duration) async throws(BusError) -> [UInt8] {
        if Task.isCancelled { throw BusError(.cancelled) }
        let id = queue.mutex.withLock {
            lastID &+= 1
            return lastID
        }
        let frame = BusFrame.encode(.request, method: method, id: id, payload: payload)
        let deadline = MonotonicClock.deadline(after: timeout)
        let result: Result<[UInt8], BusError> = await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let request = OutgoingRequest(id: id, method: method, frame: frame, timeout: timeout,
                                              deadline: deadline, completion: .caller(continuation))
                if !queue.submit(.request(request)) {
                    continuation.resume(returning: .failure(BusError(.closed)))
                }
            }
        } onCancel: {
            queue.submit(.cancel(id))
        }
        return try result.get()
    }

    override func setUp() throws(BusError) {
        let channel = try RequestChannel(context: context, layout: layout, service: service,
                                         label: "\(service) client DEALER")
        self.channel = channel
        pollItems.append(channel.socketPollItem)
        if let monitor = channel.monitor {
            pollItems.append(monitor.pollItem)
        }
    }

    override func preparePoll(now: UInt64) {
        if let channel { pollItems[1].events = channel.pollEvents }
    }

    override func nextDeadline() -> UInt64? {
        channel?.nextDeadline
    }

    override func handleCommands(_ commands: inout [Command]) {
        guard let channel else { return }
        for command in commands {
            switch command {
            case let .request(request): channel.submit(request)
            case let .cancel(id): channel.cancel(id: id)
            }
        }
    }

    override func handleSockets() {
        guard let channel else { return }
        let events = pollItems[1].revents
        if events & Int16(ZMQ_POLLIN) != 0 { channel.readReplies() }
        if events & Int16(ZMQ_POLLOUT) != 0 { channel.flushBacklog() }
        if pollItems.count > 2, pollItems[2].revents != 0 { channel.monitor?.drain() }
    }

    override func fireTimers(now: UInt64) {
        channel?.expire(now: now)
    }

    override func tearDown(error: BusError) {
        channel?.failAll(error)
        channel?.close()
        channel = nil
    }

    override func failLeftovers(_ commands: [Command], with error: BusError) {
        for case let .request(request) in commands {
            request.complete(.failure(error))
        }
    }
}
