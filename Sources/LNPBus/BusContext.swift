import CZeroMQ

/// The process's libzmq context. Create one per process (or per node in tests) and
/// close it last: `close()` first shuts down every server, client and subscriber still
/// open on it, so it cannot hang on a forgotten socket. Servers, clients and subscribers
/// keep their context alive; it closes itself when the last reference goes.
public final class BusContext: Sendable {
    let core: ContextCore

    public init(logger: BusLogger = .standardError) throws(BusError) {
        core = try ContextCore(logger: logger)
    }

    /// Closes the nodes still open on this context, then terminates it. Must not be
    /// called from a bus handler (the handler's own thread cannot be waited for).
    public func close() {
        core.close()
    }

    deinit {
        core.close()
    }
}

final class ContextCore: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    let logger: BusLogger

    private let mutex = BusMutex()
    private var closed = false
    private var nodes: [ObjectIdentifier: any BusNode] = [:]
    private var zap: ZAPHandler?
    private var zapDomains: [String: Set<[UInt8]>] = [:]
    private var serial: UInt64 = 0

    init(logger: BusLogger) throws(BusError) {
        guard let handle = zmq_ctx_new() else {
            throw BusError.lastZMQ("cannot create the ZeroMQ context")
        }
        self.handle = handle
        self.logger = logger
    }

    func register(_ node: any BusNode) throws(BusError) {
        try mutex.withLock { () throws(BusError) in
            guard !closed else { throw BusError(.closed) }
            nodes[ObjectIdentifier(node)] = node
        }
    }

    func unregister(_ node: any BusNode) {
        _ = mutex.withLock { nodes.removeValue(forKey: ObjectIdentifier(node)) }
    }

    /// A number unique within this context (monitor endpoints, ZAP domains, thread names).
    func nextSerial() -> UInt64 {
        mutex.withLock {
            serial += 1
            return serial
        }
    }

    // MARK: CURVE client authorisation (ZAP)

    /// Makes CURVE server sockets with ZAP domain `domain` accept exactly `keys`,
    /// starting the context's ZAP handler on first use.
    func authorize(domain: String, keys: Set<[UInt8]>) throws(BusError) {
        let handler: ZAPHandler? = try mutex.withLock { () throws(BusError) -> ZAPHandler? in
            guard !closed else { throw BusError(.closed) }
            zapDomains[domain] = keys
            if zap != nil { return nil }
            let handler = try ZAPHandler(context: self)
            zap = handler
            return handler
        }
        if let handler {
            do {
                try handler.launch()
            } catch {
                mutex.withLock {
                    if zap === handler { zap = nil }
                    zapDomains[domain] = nil
                }
                throw error
            }
        }
    }

    func revoke(domain: String) {
        _ = mutex.withLock { zapDomains.removeValue(forKey: domain) }
    }

    func isAuthorized(domain: String, key: [UInt8]) -> Bool {
        mutex.withLock { zapDomains[domain]?.contains(key) ?? false }
    }

    // MARK: Termination

    func close() {
        enum Outcome {
            case alreadyClosed
            case calledFromBusThread
            case shutDown([any BusNode], ZAPHandler?)
        }
        let outcome: Outcome = mutex.withLock {
            if closed { return .alreadyClosed }
            if nodes.values.contains(where: \.isOwnerThread) { return .calledFromBusThread }
            closed = true
            return .shutDown(Array(nodes.values), zap)
        }
        switch outcome {
        case .alreadyClosed:
            return
        case .calledFromBusThread:
            logger.log(.error, "BusContext.close() was called from a bus thread; the context stays open rather than hang")
        case let .shutDown(remaining, handler):
            for node in remaining where node !== handler {
                node.shutdown()
            }
            handler?.shutdown()
            while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
        }
    }
}
