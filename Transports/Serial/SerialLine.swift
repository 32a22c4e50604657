#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import NIOConcurrencyHelpers

/// One open line: the thin adapter between a `SerialPort` (bytes, ticks) and a
/// `SerialLinkCore` (decisions). Frames go to the port while the core's lock is held, so
/// the line carries them in the order the session sealed them; events and waiters are
/// served after the lock is released, since the owner may call back in.
final class SerialLine: Sendable {
    let port: SerialPort
    let role: SerialLinkCore.Role
    /// The listen address, or the dialled peer address.
    let address: String
    let direction: PeerInfo.Direction
    private let transport: SerialTransport
    private let state: NIOLockedValueBox<LineState>

    private struct LineState {
        var core: SerialLinkCore
        var info: PeerInfo?
        var connectWaiters: [CheckedContinuation<Result<PeerInfo, TransportError>, Never>] = []
        var pingWaiters: [SerialLinkCore.PingToken: CheckedContinuation<Result<Duration, TransportError>, Never>] = [:]
        var flushWaiters: [(mark: Int, continuation: CheckedContinuation<Result<Void, TransportError>, Never>)] = []
        var closed: String?
    }

    init(port: SerialPort, core: SerialLinkCore, address: String, direction: PeerInfo.Direction, transport: SerialTransport) {
        self.port = port
        role = core.role
        self.address = address
        self.direction = direction
        self.transport = transport
        state = NIOLockedValueBox(LineState(core: core))
    }

    /// The node this line dials, if it is an initiator's.
    var dialledNode: PublicKey? {
        if case let .initiator(remote, _) = role { return remote }
        return nil
    }

    var remoteNodeID: PublicKey? { state.withLockedValue { $0.info?.nodeID } }
    var peerInfo: PeerInfo? { state.withLockedValue { $0.info } }

    var statistics: SerialLineStatistics {
        let bytes = port.byteCounts
        return state.withLockedValue { state in
            SerialLineStatistics(bytesRead: bytes.read, bytesWritten: bytes.written, framesDecoded: state.core.framesDecoded,
                                 frameDrops: state.core.frameDrops, datagrams: state.core.statistics,
                                 messagesDropped: state.core.messagesDropped, sessionsStarted: state.core.sessionsStarted)
        }
    }

    func start() {
        port.start(SerialPort.Handlers(
            received: { [self] bytes in run { core, now in core.receive(bytes, now: now) } },
            tick: { [self] in tick() },
            drained: { [self] in
                if let nodeID = remoteNodeID { transport.emit(.writable(nodeID)) }
            },
            closed: { [self] error in
                if let error { transport.log(.error, "\(port.path) failed: \(error)") }
                finishWaiters(reason: error?.description ?? "the line is closed")
            }))
        run { core, now in core.start(now: now) }
    }

    private func tick() {
        let now = ContinuousClock.now
        let due = state.withLockedValue { state in state.core.nextDeadline.map { now >= $0 } ?? false }
        if due { run { core, _ in core.timerFired(now: now) } }
        let written = port.byteCounts.written
        let flushed = state.withLockedValue { state in
            let done = state.flushWaiters.filter { $0.mark <= written }
            state.flushWaiters.removeAll { $0.mark <= written }
            return done.map(\.continuation)
        }
        for waiter in flushed { waiter.resume(returning: .success(())) }
    }

    /// Runs one step of the core, transmits its frames under the lock, then serves the rest.
    private func run(_ step: (inout SerialLinkCore, ContinuousClock.Instant) -> [SerialLinkCore.Action]) {
        let now = ContinuousClock.now
        let actions: [SerialLinkCore.Action] = state.withLockedValue { state in
            guard state.closed == nil else { return [] }
            let actions = step(&state.core, now)
            for case let .transmit(bytes) in actions { port.enqueue(bytes) }
            return actions
        }
        perform(actions)
    }

    private func perform(_ actions: [SerialLinkCore.Action]) {
        for action in actions {
            switch action {
            case .transmit:
                break
            case let .ready(nodeID, remoteInit):
                let info = PeerInfo(nodeID: nodeID, address: address, direction: direction,
                                    remoteFeatures: remoteInit.combinedFeatures, connectedAt: Date(),
                                    persistent: { if case .initiator(_, true) = role { true } else { false } }(),
                                    largeFrames: false)
                let waiters = state.withLockedValue { state in
                    state.info = info
                    defer { state.connectWaiters.removeAll() }
                    return state.connectWaiters
                }
                transport.log(.info, "session with \(nodeID) on \(port.path) ready (\(direction))")
                transport.emit(.connected(info))
                for waiter in waiters { waiter.resume(returning: .success(info)) }
            case let .deliver(from, message):
                transport.emit(.message(from: from, bytes: message))
            case let .lost(nodeID, reason, willResume):
                state.withLockedValue { $0.info = nil }
                transport.log(.info, "session with \(nodeID) on \(port.path) ended: \(reason)")
                transport.emit(.disconnected(nodeID: nodeID, reason: reason + (willResume ? "; waiting for a new session" : "")))
            case let .handshakeFailed(reason, willRetry):
                let waiters = state.withLockedValue { state in
                    defer { state.connectWaiters.removeAll() }
                    return state.connectWaiters
                }
                if let peerAddress = PeerAddress(address) {
                    transport.emit(.connectFailed(address: peerAddress, reason: reason, willRetry: willRetry))
                }
                for waiter in waiters { waiter.resume(returning: .failure(.handshakeFailed(address: address, reason: reason))) }
                if !willRetry { transport.lineFinished(self) }
            case let .pongReceived(token, roundTrip):
                state.withLockedValue { $0.pingWaiters.removeValue(forKey: token) }?.resume(returning: .success(roundTrip))
            case let .pingUnanswered(token):
                let reason = "no pong arrived within \(transport.configuration.pongTimeout); the ping or its pong was lost, or the session ended"
                state.withLockedValue { $0.pingWaiters.removeValue(forKey: token) }?
                    .resume(returning: .failure(.sessionNotReady(reason: reason)))
            case let .log(notable, text):
                transport.log(notable ? .notice : .info, "\(port.path): \(text)")
            }
        }
    }

    // MARK: - Owner's calls

    func waitUntilReady() async -> Result<PeerInfo, TransportError> {
        await withCheckedContinuation { continuation in
            let outcome: Result<PeerInfo, TransportError>? = state.withLockedValue { state in
                if let closed = state.closed { return .failure(.connectFailed(address: address, reason: closed)) }
                if let info = state.info { return .success(info) }
                state.connectWaiters.append(continuation)
                return nil
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    /// Nil when the queue is full; otherwise the bytes queued and the mark they are out at.
    func send(_ messages: [[UInt8]]) throws(TransportError) -> (bytes: Int, mark: Int)? {
        let policy = transport.configuration.datagramPolicy
        try SerialLinkCore.check(messages, policy: policy)
        guard port.reserve(SerialLinkCore.lineBytesBound(of: messages, policy: policy)) else { return nil }
        let now = ContinuousClock.now
        let result: Result<(bytes: Int, mark: Int), TransportError> = state.withLockedValue { state in
            guard state.closed == nil, let nodeID = state.info?.nodeID else {
                return .failure(.sessionNotReady(reason: state.closed ?? "the session is being re-established"))
            }
            do throws(TransportError) {
                let line = try state.core.send(messages, now: now)
                guard let mark = port.enqueue(line) else { return .failure(.connectionClosed(nodeID, reason: "the line is closed")) }
                return .success((line.count, mark))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    func waitUntilWritten(_ mark: Int, nodeID: PublicKey) async -> Result<Void, TransportError> {
        await withCheckedContinuation { continuation in
            let outcome: Result<Void, TransportError>? = state.withLockedValue { state in
                if let closed = state.closed { return .failure(.connectionClosed(nodeID, reason: closed)) }
                if port.byteCounts.written >= mark { return .success(()) }
                state.flushWaiters.append((mark, continuation))
                return nil
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    func ping(pongBytes: UInt16) async -> Result<Duration, TransportError> {
        await withCheckedContinuation { continuation in
            let outcome: Result<Duration, TransportError>? = state.withLockedValue { state in
                if let closed = state.closed { return .failure(.sessionNotReady(reason: closed)) }
                do throws(TransportError) {
                    let (token, line) = try state.core.ping(pongBytes: pongBytes, now: .now)
                    port.enqueue(line)
                    state.pingWaiters[token] = continuation
                    return nil
                } catch {
                    return .failure(error)
                }
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    /// A listen line drops its session and waits for the next handshake.
    func resetSession() {
        run { core, now in core.resetResponder(now: now) }
    }

    func close(reason: String) async {
        let actions: [SerialLinkCore.Action] = state.withLockedValue { state in
            guard state.closed == nil else { return [] }
            let actions = state.core.stop()
            state.closed = reason
            return actions
        }
        perform(actions.map { action in
            if case let .lost(nodeID, _, willResume) = action { return .lost(nodeID: nodeID, reason: reason, willResume: willResume) }
            return action
        })
        await port.close()
        finishWaiters(reason: reason)
    }

    private func finishWaiters(reason: String) {
        let (connects, pings, flushes, nodeID) = state.withLockedValue { state in
            if state.closed == nil { state.closed = reason }
            defer {
                state.connectWaiters.removeAll()
                state.pingWaiters.removeAll()
                state.flushWaiters.removeAll()
            }
            return (state.connectWaiters, Array(state.pingWaiters.values), state.flushWaiters.map(\.continuation), state.info?.nodeID)
        }
        for waiter in connects { waiter.resume(returning: .failure(.connectFailed(address: address, reason: reason))) }
        for waiter in pings { waiter.resume(returning: .failure(.sessionNotReady(reason: reason))) }
        for waiter in flushes {
            waiter.resume(returning: .failure(nodeID.map { .connectionClosed($0, reason: reason) } ?? .sessionNotReady(reason: reason)))
        }
    }
}
