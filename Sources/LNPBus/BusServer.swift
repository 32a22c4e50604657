#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CZeroMQ

/// A service's side of the bus: its ROUTER (requests) and PUB (events) sockets on one
/// thread. The handler runs on that thread: it must not block; a handler with slow
/// work hands the `BusResponder` to other code and replies later from any thread.
public final class BusServer: Sendable {
    let core: ServerCore
    public let name: ServiceName
    /// Keeps the context open while this server exists.
    private let context: BusContext

    public init(
        context: BusContext,
        layout: BusLayout,
        name: ServiceName,
        handler: @escaping @Sendable (BusMessage, BusResponder) -> Void
    ) throws(BusError) {
        self.name = name
        self.context = context
        core = try ServerCore(context: context.core, layout: layout, name: name, handler: handler)
    }

    /// Binds both sockets (ipc socket files get mode 0600), then publishes the `ready`
    /// event. Throws if an endpoint is taken, including an ipc socket file another
    /// live server is listening on.
    public func start() throws(BusError) {
        try core.launch()
    }

    /// Publishes an event to the subscribers of this service; callable from any thread.
    /// An event with a reserved method or an oversized payload is dropped and logged.
    public func publish(_ event: BusMessage) {
        guard !event.isReserved else {
            core.logger.log(.error, "\(name): not publishing method \(event.method), which is reserved for the bus")
            return
        }
        guard event.payload.count <= BusMessage.maximumPayloadSize else {
            core.logger.log(.error, "\(name): not publishing an event of \(event.payload.count) bytes (limit \(BusMessage.maximumPayloadSize))")
            return
        }
        core.publish(BusFrame.encode(.event, method: event.method, id: 0, payload: event.payload))
    }

    /// Closes both sockets and joins the thread (unless called from the handler).
    public func close() {
        core.shutdown()
    }

    deinit {
        core.shutdown()
    }
}

/// The reply side of one request. Copies share one answer: the first `reply` or `fail`
/// is sent, later calls are ignored. If every copy is dropped unanswered, the client
/// gets `.remote(code: BusRemoteCode.unanswered, ...)` at once instead of a timeout.
public struct BusResponder: Sendable {
    let state: ResponderState

    /// The method of the request being answered.
    public var method: UInt16 { state.method }

    public func reply(_ payload: [UInt8]) {
        guard payload.count <= BusMessage.maximumPayloadSize else {
            state.core.logger.log(.error, "\(state.core.name): a reply of \(payload.count) bytes exceeds the bus limit; failing the request instead")
            fail(code: BusRemoteCode.unanswered, message: "the reply of \(payload.count) bytes exceeds the bus limit of \(BusMessage.maximumPayloadSize) bytes")
            return
        }
        guard state.claim() else { return }
        state.core.deliver(routing: state.routing,
                           frame: BusFrame.encode(.reply, method: state.method, id: state.id, payload: payload))
    }

    public func fail(code: UInt16, message: String) {
        guard state.claim() else { return }
        state.core.deliver(routing: state.routing,
                           frame: BusFrame.encodeFailure(method: state.method, id: state.id, code: code, message: message))
    }
}

final class ResponderState: @unchecked Sendable {
    let core: ServerCore
    let routing: [UInt8]
    let id: UInt64
    let method: UInt16
    /// Guarded by `core.queue.mutex`.
    private var answered = false

    init(core: ServerCore, routing: [UInt8], id: UInt64, method: UInt16) {
        self.core = core
        self.routing = routing
        self.id = id
        self.method = method
    }

    func claim() -> Bool {
        core.queue.mutex.withLock {
            if answered { return false }
            answered = true
            return true
        }
    }

    deinit {
        if !answered {
            core.deliver(routing: routing, frame: BusFrame.encodeFailure(
                method: method, id: id, code: BusRemoteCode.unanswered,
                message: "\(core.name) dropped the request without answering"))
        }
    }
}

final class ServerCore: NodeCore<ServerCore.Command>, @unchecked Sendable {
    enum Command {
        case reply(routing: [UInt8], frame: [UInt8])
        case publish([UInt8])
    }

    let name: ServiceName
    private let layout: BusLayout
    private let handler: @Sendable (BusMessage, BusResponder) -> Void
    private let rpcEndpoint: String
    private let eventEndpoint: String
    private var router: ZSocket?
    private var publisher: ZSocket?
    private var zapDomain: String?
    private var boundFiles: [(path: String, identity: IPCFiles.FileIdentity)] = []
    private let message = ZMessage()
    private var limiter: LogLimiter

    init(context: ContextCore, layout: BusLayout, name: ServiceName,
         handler: @escaping @Sendable (BusMessage, BusResponder) -> Void) throws(BusError) {
        self.name = name
        self.layout = layout
        self.handler = handler
        rpcEndpoint = try layout.checkedEndpoint(for: name, events: false)
        eventEndpoint = try layout.checkedEndpoint(for: name, events: true)
        if case .tcp = layout.transport, layout.curve?.serverSecretKey == nil {
            throw BusError(.insecureEndpoint("\(name) cannot serve on tcp without the node's CURVE server secret key (CurveKeys(server:))"))
        }
        limiter = LogLimiter(logger: context.logger)
        try super.init(context: context, threadName: "bus-s-\(name.rawValue)")
    }

    // MARK: Any thread

    func deliver(routing: [UInt8], frame: [UInt8]) {
        if isOwnerThread {
            sendReply(routing: routing, frame: frame)
        } else {
            queue.submit(.reply(routing: routing, frame: frame))
        }
    }

    func publish(_ frame: [UInt8]) {
        if isOwnerThread, publisher != nil {
            sendEvent(frame)
        } else if !queue.submit(.publish(frame)) {
            logger.log(.debug, "\(name): event dropped, the server is closed")
        }
    }

    // MARK: Bus thread

    override func setUp() throws(BusError) {
        if case let .ipc(directory) = layout.transport {
            try IPCFiles.prepareDirectory(directory)
            for endpoint in [rpcEndpoint, eventEndpoint] {
                try IPCFiles.refuseLiveSocket(at: endpoint, service: name)
            }
        }
        let router = try ZSocket.open(context.handle, type: ZMQ_ROUTER, label: "\(name) ROUTER")
        self.router = router
        let publisher = try ZSocket.open(context.handle, type: ZMQ_PUB, label: "\(name) PUB")
        self.publisher = publisher
        try SocketTuning.apply(to: router, transport: layout.transport)
        try SocketTuning.apply(to: publisher, transport: layout.transport)
        // A reply to a client that has gone away fails (EHOSTUNREACH) instead of vanishing silently.
        try router.set(ZMQ_ROUTER_MANDATORY, 1)
        if let curve = layout.curve {
            let domain = "lnp-bus/\(name.rawValue)/\(context.nextSerial())"
            try context.authorize(domain: domain, keys: curve.acceptedClientKeys)
            zapDomain = domain
            try CurveSetup.configureServer(router, keys: curve, domain: domain)
            try CurveSetup.configureServer(publisher, keys: curve, domain: domain)
        }
        try router.bind(rpcEndpoint)
        try publisher.bind(eventEndpoint)
        for endpoint in [rpcEndpoint, eventEndpoint] {
            if let path = BusLayout.socketFile(of: endpoint) {
                try IPCFiles.restrict(path)
                if let identity = IPCFiles.identity(of: path) {
                    boundFiles.append((path, identity))
                }
            }
        }
        pollItems.append(zmq_pollitem_t(socket: router.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
        sendEvent(BusFrame.encode(.event, method: BusMessage.readyMethod, id: 0, payload: []))
    }

    override func handleCommands(_ commands: inout [Command]) {
        for command in commands {
            switch command {
            case let .reply(routing, frame): sendReply(routing: routing, frame: frame)
            case let .publish(frame): sendEvent(frame)
            }
        }
    }

    override func handleSockets() {
        guard let router, pollItems[1].revents & Int16(ZMQ_POLLIN) != 0 else { return }
        for _ in 0..<512 {
            var code = message.receive(from: router)
            guard code == 0 else {
                if code != EAGAIN { limiter.log(.error, "\(name): receiving a request failed: \(errnoDescription(code))") }
                return
            }
            guard message.hasMore else {
                limiter.log(.warning, "\(name): dropped a request without a body")
                continue
            }
            let routing = Array(message.bytes)
            code = message.receive(from: router)
            guard code == 0 else { continue }
            if message.hasMore {
                let extra = message.discardRest(of: router)
                limiter.log(.warning, "\(name): dropped a \(extra + 1)-part request; requests are one frame")
                continue
            }
            handleRequest(routing: routing, frame: message.bytes)
            if stopRequestedFromOwnThread { return }  // the handler closed the server
        }
    }

    private func handleRequest(routing: [UInt8], frame: UnsafeRawBufferPointer) {
        let header: FrameHeader
        do {
            header = try BusFrame.decodeHeader(frame)
        } catch {
            limiter.log(.warning, "\(name): dropped a request: \(error)")
            return
        }
        guard header.kind == .request else {
            limiter.log(.warning, "\(name): dropped a frame of kind \(header.kind) where a request was expected")
            return
        }
        if BusMessage.reservedMethods.contains(header.method) {
            if header.method == BusMessage.pingMethod {
                sendReply(routing: routing, frame: BusFrame.encode(.reply, method: header.method, id: header.id, payload: []))
                // Re-announce: a subscriber that connected after the first `ready` (slow
                // joiner) pings until a `ready` reaches it through its SUB socket.
                sendEvent(BusFrame.encode(.event, method: BusMessage.readyMethod, id: 0, payload: []))
            } else {
                sendReply(routing: routing, frame: BusFrame.encodeFailure(
                    method: header.method, id: header.id, code: BusRemoteCode.unknownBusMethod,
                    message: "\(name) does not know bus method \(header.method)"))
            }
            return
        }
        let request = BusMessage(method: header.method, payload: BusFrame.payload(of: frame))
        let responder = BusResponder(state: ResponderState(core: self, routing: routing, id: header.id, method: header.method))
        handler(request, responder)
    }

    private func sendReply(routing: [UInt8], frame: [UInt8]) {
        guard let router else { return }
        var code = router.send(routing, more: true)
        if code == 0 { code = router.send(frame) }
        switch code {
        case 0:
            break
        case EHOSTUNREACH:
            limiter.log(.debug, "\(name): the client of a reply has gone; reply dropped")
        case EAGAIN:
            limiter.log(.warning, "\(name): a client is not reading its replies; reply dropped")
        default:
            limiter.log(.error, "\(name): sending a reply failed: \(errnoDescription(code))")
        }
    }

    private func sendEvent(_ frame: [UInt8]) {
        guard let publisher else { return }
        let code = publisher.send(frame, stamping: nextSequence(for: frame), at: BusFrame.sequenceOffset)
        if code != 0 && code != EAGAIN {
            limiter.log(.error, "\(name): publishing failed: \(errnoDescription(code))")
        }
    }

    /// Events of each method are numbered 1, 2, 3... so a subscriber can tell that the
    /// PUB socket dropped some (it does so silently when a subscriber falls behind).
    private var eventSequences: [UInt16: UInt64] = [:]

    private func nextSequence(for frame: [UInt8]) -> UInt64 {
        let method = UInt16(frame[1]) << 8 | UInt16(frame[2])
        let next = (eventSequences[method] ?? 0) &+ 1
        eventSequences[method] = next
        return next
    }

    override func tearDown(error: BusError) {
        router?.close()
        publisher?.close()
        router = nil
        publisher = nil
        for file in boundFiles {
            IPCFiles.remove(file.path, ifStill: file.identity)
        }
        boundFiles.removeAll()
        if let zapDomain { context.revoke(domain: zapDomain) }
    }
}
