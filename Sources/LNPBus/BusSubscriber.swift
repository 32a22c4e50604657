import CZeroMQ

/// Events from one or more services. One SUB socket per service (so every event is
/// known to come from its service) on one thread; the handler runs on that thread and
/// must not block.
public final class BusSubscriber: Sendable {
    let core: SubscriberCore
    /// Keeps the context open while this subscriber exists.
    private let context: BusContext

    /// `methods`: the event methods to receive, nil for all. The reserved `ready`
    /// event is never passed to `handler`; see `waitUntilReady`.
    public init(
        context: BusContext,
        layout: BusLayout,
        services: [ServiceName],
        methods: [UInt16]?,
        handler: @escaping @Sendable (ServiceName, BusMessage) -> Void
    ) throws(BusError) {
        self.context = context
        core = try SubscriberCore(context: context.core, layout: layout, services: services,
                                  methods: methods, handler: handler)
        try core.launch()
    }

    /// Returns once every service in `services` is serving and, for the services this
    /// subscriber listens to, once their events reach it.
    ///
    /// A subscribed service counts as ready when its `ready` event arrives through the
    /// SUB socket, which proves the subscription is in place. Until then the subscriber
    /// pings the service every 100 ms and each ping makes the server publish `ready`
    /// again, so a server that started before this subscriber connected (the PUB/SUB
    /// slow joiner) is covered too. A service that is not subscribed to counts as ready
    /// when it answers a ping. Throws at the deadline with the reason the first missing
    /// service gave (`.serviceUnavailable`, `.handshakeFailed`, `.timeout`).
    public func waitUntilReady(_ services: [ServiceName], timeout: Duration) async throws(BusError) {
        try await core.waitUntilReady(Set(services), timeout: timeout)
    }

    public func close() {
        core.shutdown()
    }

    deinit {
        core.shutdown()
    }
}

final class SubscriberCore: NodeCore<SubscriberCore.Command>, @unchecked Sendable {
    typealias ReadyContinuation = UnsafeContinuation<Result<Void, BusError>, Never>

    struct Waiter: Sendable {
        let id: UInt64
        let services: Set<ServiceName>
        let timeout: Duration
        let deadline: UInt64
        let continuation: ReadyContinuation
    }

    enum Command {
        case wait(Waiter)
        case cancelWait(UInt64)
    }

    private enum PollTarget {
        case waker
        case events(Int)
        case pinger(ServiceName)
        case monitor(ServiceName)
    }

    private final class Pinger {
        let channel: RequestChannel
        var nextPing: UInt64 = 0
        var lastID: UInt64 = 0
        init(channel: RequestChannel) { self.channel = channel }
    }

    static let pingInterval: Duration = .milliseconds(100)

    private let layout: BusLayout
    private let services: [ServiceName]
    private let methods: Set<UInt16>?
    private let handler: @Sendable (ServiceName, BusMessage) -> Void
    private var sockets: [ZSocket] = []
    private var targets: [PollTarget] = [.waker]
    private var ready: Set<ServiceName> = []
    private var waiters: [UInt64: Waiter] = [:]
    private var pingers: [ServiceName: Pinger] = [:]
    private let message = ZMessage()
    private var limiter: LogLimiter
    /// Guarded by `queue.mutex`.
    private var lastWaiterID: UInt64 = 0

    init(context: ContextCore, layout: BusLayout, services: [ServiceName], methods: [UInt16]?,
         handler: @escaping @Sendable (ServiceName, BusMessage) -> Void) throws(BusError) {
        try layout.validate()
        self.layout = layout
        var unique: [ServiceName] = []
        for service in services where !unique.contains(service) { unique.append(service) }
        self.services = unique
        self.methods = methods.map(Set.init)
        if let methods, let reserved = methods.first(where: { BusMessage.reservedMethods.contains($0) }) {
            throw BusError(.invalidConfiguration("event method \(reserved) is reserved for the bus"))
        }
        self.handler = handler
        for service in unique { _ = try layout.checkedEndpoint(for: service, events: true) }
        limiter = LogLimiter(logger: context.logger)
        try super.init(context: context, threadName: "bus-sub")
    }

    // MARK: Any thread

    func waitUntilReady(_ wanted: Set<ServiceName>, timeout: Duration) async throws(BusError) {
        if wanted.isEmpty { return }
        if Task.isCancelled { throw BusError(.cancelled) }
        for service in wanted { _ = try layout.checkedEndpoint(for: service, events: false) }
        let id = queue.mutex.withLock {
            lastWaiterID &+= 1
            return lastWaiterID
        }
        let deadline = MonotonicClock.deadline(after: timeout)
        let result: Result<Void, BusError> = await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let waiter = Waiter(id: id, services: wanted, timeout: timeout, deadline: deadline, continuation: continuation)
                if !queue.submit(.wait(waiter)) {
                    continuation.resume(returning: .failure(BusError(.closed)))
                }
            }
        } onCancel: {
            queue.submit(.cancelWait(id))
        }
        try result.get()
    }

    // MARK: Bus thread

    override func setUp() throws(BusError) {
        for service in services {
            let socket = try ZSocket.open(context.handle, type: ZMQ_SUB, label: "\(service) SUB")
            sockets.append(socket)
            try SocketTuning.apply(to: socket, transport: layout.transport)
            if let curve = layout.curve {
                try CurveSetup.configureClient(socket, keys: curve)
            }
            try socket.set(ZMQ_SUBSCRIBE, bytes: BusFrame.subscriptionPrefix(method: BusMessage.readyMethod))
            if let methods {
                for method in methods.sorted() {
                    try socket.set(ZMQ_SUBSCRIBE, bytes: BusFrame.subscriptionPrefix(method: method))
                }
            } else {
                try socket.set(ZMQ_SUBSCRIBE, bytes: BusFrame.subscriptionPrefix(method: nil))
            }
            try socket.connect(try layout.checkedEndpoint(for: service, events: true))
        }
        rebuildPollSet()
    }

    private func rebuildPollSet() {
        pollItems.removeSubrange(1...)
        targets = [.waker]
        for (index, socket) in sockets.enumerated() {
            pollItems.append(zmq_pollitem_t(socket: socket.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
            targets.append(.events(index))
        }
        for (service, pinger) in pingers.sorted(by: { $0.key < $1.key }) {
            pollItems.append(pinger.channel.socketPollItem)
            targets.append(.pinger(service))
            if let monitor = pinger.channel.monitor {
                pollItems.append(monitor.pollItem)
                targets.append(.monitor(service))
            }
        }
    }

    override func preparePoll(now: UInt64) {
        for index in pollItems.indices {
            if case let .pinger(service) = targets[index], let pinger = pingers[service] {
                pollItems[index].events = pinger.channel.pollEvents
            }
        }
    }

    override func nextDeadline() -> UInt64? {
        if waiters.isEmpty && pingers.isEmpty { return nil }
        var earliest = waiters.values.map(\.deadline).min()
        for pinger in pingers.values {
            for candidate in [pinger.nextPing, pinger.channel.nextDeadline].compactMap({ $0 }) {
                earliest = min(earliest ?? candidate, candidate)
            }
        }
        return earliest
    }

    override func handleCommands(_ commands: inout [Command]) {
        for command in commands {
            switch command {
            case let .wait(waiter):
                if waiter.services.isSubset(of: ready) {
                    waiter.continuation.resume(returning: .success(()))
                } else {
                    waiters[waiter.id] = waiter
                }
            case let .cancelWait(id):
                waiters.removeValue(forKey: id)?.continuation.resume(returning: .failure(BusError(.cancelled)))
            }
        }
        updatePingers()
    }

    override func handleSockets() {
        for index in pollItems.indices.dropFirst() where pollItems[index].revents != 0 {
            let events = pollItems[index].revents
            switch targets[index] {
            case .waker:
                break
            case let .events(socketIndex):
                readEvents(from: sockets[socketIndex], service: services[socketIndex])
            case let .pinger(service):
                guard let channel = pingers[service]?.channel else { continue }
                if events & Int16(ZMQ_POLLIN) != 0 { channel.readReplies() }
                if events & Int16(ZMQ_POLLOUT) != 0 { channel.flushBacklog() }
            case let .monitor(service):
                pingers[service]?.channel.monitor?.drain()
            }
        }
        updatePingers()
    }

    private func readEvents(from socket: ZSocket, service: ServiceName) {
        for _ in 0..<1024 {
            let code = message.receive(from: socket)
            guard code == 0 else {
                if code != EAGAIN { limiter.log(.error, "receiving events of \(service) failed: \(errnoDescription(code))") }
                return
            }
            if message.hasMore {
                let extra = message.discardRest(of: socket)
                limiter.log(.warning, "dropped a \(extra + 1)-part event from \(service); events are one frame")
                continue
            }
            let frame = message.bytes
            let header: FrameHeader
            do {
                header = try BusFrame.decodeHeader(frame)
            } catch {
                limiter.log(.warning, "dropped an event from \(service): \(error)")
                continue
            }
            guard header.kind == .event else {
                limiter.log(.warning, "dropped a frame of kind \(header.kind) from \(service)'s event socket")
                continue
            }
            noteSequence(header.id, method: header.method, service: service)
            if header.method == BusMessage.readyMethod {
                markReady(service)
                continue
            }
            if BusMessage.reservedMethods.contains(header.method) { continue }
            if let methods, !methods.contains(header.method) { continue }
            handler(service, BusMessage(method: header.method, payload: BusFrame.payload(of: frame)))
            if stopRequestedFromOwnThread { return }  // the handler closed the subscriber
        }
    }

    /// Last event sequence number seen per service and method.
    private var sequences: [ServiceName: [UInt16: UInt64]] = [:]

    /// PUB/SUB drops events silently when a subscriber falls behind its high-water mark;
    /// a gap in a method's numbering makes the loss visible in the log.
    private func noteSequence(_ sequence: UInt64, method: UInt16, service: ServiceName) {
        let last = sequences[service]?[method] ?? 0
        if last != 0, sequence > last &+ 1 {
            limiter.log(.warning, "lost \(sequence - last - 1) events of method \(method) from \(service): this subscriber fell behind")
        }
        // A lower number means the server restarted and counts from 1 again.
        sequences[service, default: [:]][method] = sequence
    }

    private func markReady(_ service: ServiceName) {
        guard ready.insert(service).inserted else { return }
        for (id, waiter) in waiters where waiter.services.isSubset(of: ready) {
            waiters[id] = nil
            waiter.continuation.resume(returning: .success(()))
        }
    }

    override func fireTimers(now: UInt64) {
        if waiters.isEmpty && pingers.isEmpty { return }
        for pinger in pingers.values {
            pinger.channel.expire(now: now)
        }
        for (id, waiter) in waiters where waiter.deadline <= now {
            waiters[id] = nil
            let missing = waiter.services.subtracting(ready).sorted()
            let service = missing.first ?? waiter.services.sorted()[0]
            let error = pingers[service]?.channel.monitor?.explainSilence(of: service, method: BusMessage.pingMethod, after: waiter.timeout)
                ?? BusError(.timeout(service, method: BusMessage.pingMethod, after: waiter.timeout))
            waiter.continuation.resume(returning: .failure(error))
        }
        updatePingers()
        for pinger in pingers.values where pinger.nextPing <= now {
            pinger.lastID &+= 1
            pinger.nextPing = MonotonicClock.deadline(after: SubscriberCore.pingInterval, from: now)
            pinger.channel.submit(OutgoingRequest(
                id: pinger.lastID, method: BusMessage.pingMethod,
                frame: BusFrame.encode(.request, method: BusMessage.pingMethod, id: pinger.lastID, payload: []),
                timeout: SubscriberCore.pingInterval, deadline: pinger.nextPing, completion: .ping))
        }
    }

    /// Keeps exactly one pinger per service some waiter still needs.
    private func updatePingers() {
        if waiters.isEmpty && pingers.isEmpty { return }
        var needed: Set<ServiceName> = []
        for waiter in waiters.values { needed.formUnion(waiter.services.subtracting(ready)) }
        var changed = false
        for (service, pinger) in pingers where !needed.contains(service) {
            pinger.channel.failAll(BusError(.closed))
            pinger.channel.close()
            pingers[service] = nil
            changed = true
        }
        for service in needed where pingers[service] == nil {
            do {
                let channel = try RequestChannel(context: context, layout: layout, service: service,
                                                 label: "\(service) readiness DEALER")
                let subscribed = services.contains(service)
                channel.onPingCompletion = { [unowned self] result in
                    // A subscribed service is ready only once its re-announced `ready`
                    // arrives through the SUB socket.
                    if case .success = result, !subscribed { markReady(service) }
                }
                pingers[service] = Pinger(channel: channel)
                changed = true
            } catch {
                limiter.log(.error, "cannot ping \(service) for readiness: \(error)")
            }
        }
        if changed { rebuildPollSet() }
    }

    override func tearDown(error: BusError) {
        for (_, waiter) in waiters {
            waiter.continuation.resume(returning: .failure(error))
        }
        waiters.removeAll()
        for pinger in pingers.values {
            pinger.channel.failAll(error)
            pinger.channel.close()
        }
        pingers.removeAll()
        for socket in sockets { socket.close() }
        sockets.removeAll()
    }

    override func failLeftovers(_ commands: [Command], with error: BusError) {
        for case let .wait(waiter) in commands {
            waiter.continuation.resume(returning: .failure(error))
        }
    }
}
