import CZeroMQ

/// Something the context must shut down before it can terminate.
protocol BusNode: AnyObject, Sendable {
    /// Stops the node's thread and waits until it has closed its sockets (unless called
    /// from that thread itself, which cannot wait for itself).
    func shutdown()
    var isOwnerThread: Bool { get }
}

/// The thread of one bus node: it creates its sockets, polls them together with the
/// wake-up pipe, runs commands submitted from other threads, and closes every socket
/// before it ends. Subclasses fill in `setUp`, `handleCommands`, `handleSockets`,
/// `tearDown`.
class NodeCore<Command>: BusNode, @unchecked Sendable {
    let context: ContextCore
    let queue: CommandQueue<Command>
    let threadName: String
    var logger: BusLogger { context.logger }

    private enum Phase {
        case idle
        /// `launch()` was called: `exited` is certain to be fulfilled.
        case launched
        /// Closed before it was ever launched.
        case closed
    }

    private let lifecycle = BusMutex()
    private var phase = Phase.idle
    private let setupResult = OneShot<Result<Void, BusError>>()
    private let exited = OneShot<Bool>()

    /// Poll set: index 0 is the wake-up pipe; subclasses append sockets in `setUp`.
    var pollItems: [zmq_pollitem_t] = []
    private var commandBuffer: [Command] = []

    init(context: ContextCore, threadName: String) throws(BusError) {
        self.context = context
        self.threadName = threadName
        queue = try CommandQueue()
    }

    var isOwnerThread: Bool { CurrentNode.isCurrent(self) }

    /// Registers with the context, starts the thread and waits for `setUp` to finish.
    final func launch() throws(BusError) {
        try lifecycle.withLock { () throws(BusError) in
            switch phase {
            case .idle: phase = .launched
            case .launched: throw BusError(.invalidConfiguration("\(threadName) was already started"))
            case .closed: throw BusError(.closed)
            }
        }
        do {
            try context.register(self)
        } catch {
            failLeftovers(queue.close(), with: BusError(.closed))
            finishWithoutThread()
            throw error
        }
        do {
            try BusThread.spawn(name: threadName) { [self] in threadMain() }
        } catch {
            context.unregister(self)
            failLeftovers(queue.close(), with: BusError(.closed))
            finishWithoutThread()
            throw error
        }
        if case let .failure(error) = setupResult.wait() {
            _ = exited.wait()
            context.unregister(self)
            // A later start() says `.closed`; a node whose set-up failed is not restarted.
            lifecycle.withLock { phase = .closed }
            throw error
        }
    }

    private func finishWithoutThread() {
        exited.fulfil(true)
        lifecycle.withLock { phase = .closed }
    }

    private func threadMain() {
        CurrentNode.set(self)
        pollItems = [zmq_pollitem_t(socket: nil, fd: queue.waker.readFD, events: Int16(ZMQ_POLLIN), revents: 0)]
        do {
            try setUp()
        } catch {
            tearDown(error: BusError(.closed))
            failLeftovers(queue.close(), with: BusError(.closed))
            setupResult.fulfil(.failure(error))
            exited.fulfil(true)
            return
        }
        setupResult.fulfil(.success(()))
        runLoop()
        tearDown(error: BusError(.closed))
        failLeftovers(queue.close(), with: BusError(.closed))
        exited.fulfil(true)
    }

    private func runLoop() {
        var stop = false
        while !stop {
            let now = MonotonicClock.now()
            preparePoll(now: now)
            let timeout = MonotonicClock.pollTimeout(until: nextDeadline(), now: now)
            let count = zmq_poll(&pollItems, Int32(pollItems.count), timeout)
            if count < 0 {
                let code = zmq_errno()
                if code == EINTR { continue }
                logger.log(.error, "\(threadName): zmq_poll failed: \(String(cString: zmq_strerror(code))); stopping")
                return
            }
            if pollItems[0].revents != 0 {
                stop = queue.takeAll(into: &commandBuffer)
                if !commandBuffer.isEmpty {
                    handleCommands(&commandBuffer)
                    commandBuffer.removeAll(keepingCapacity: true)
                }
                if stop { break }
            }
            if count > 0 {
                handleSockets()
            }
            fireTimers(now: MonotonicClock.now())
            if stopRequestedFromOwnThread { stop = true }
        }
    }

    /// Set by `shutdown()` on the node's own thread (from a handler); the loop ends after
    /// the current round, and read loops stop delivering at once.
    private(set) var stopRequestedFromOwnThread = false

    final func shutdown() {
        if isOwnerThread {
            stopRequestedFromOwnThread = true
            queue.requestStop()
            return
        }
        let wasLaunched = lifecycle.withLock { () -> Bool in
            if phase == .idle { phase = .closed }
            return phase == .launched
        }
        if wasLaunched {
            queue.requestStop()
            _ = exited.wait()
        } else {
            failLeftovers(queue.close(), with: BusError(.closed))
        }
        context.unregister(self)
    }

    // MARK: For subclasses (all run on the node's thread)

    /// Creates and binds/connects the sockets and appends them to `pollItems`.
    func setUp() throws(BusError) {}
    /// Adjusts poll events before each poll (e.g. POLLOUT while a backlog waits).
    func preparePoll(now: UInt64) {}
    func nextDeadline() -> UInt64? { nil }
    func handleCommands(_ commands: inout [Command]) {}
    /// Called when `zmq_poll` reported activity; read `pollItems[i].revents`.
    func handleSockets() {}
    func fireTimers(now: UInt64) {}
    /// Closes every socket and fails whatever is still waiting with `error`.
    func tearDown(error: BusError) {}
    /// Commands that never reached the loop (may run on any thread).
    func failLeftovers(_ commands: [Command], with error: BusError) {}
}
