#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import Logging
import NIOConcurrencyHelpers

/// Noise_XK datagram sessions over serial lines: one session per line, each datagram in a
/// COBS + CRC-32 line frame. A listen address (`serial:///dev/ttyS0?baud=115200`) makes
/// this node the responder on that line, for whichever node is at the other end; a peer
/// address (`serial://NODEID@/dev/ttyUSB0?baud=115200`) makes it the initiator to that node.
///
/// Events of one line come from that line's IO thread, in order; the closure must return
/// quickly, since the line is not read while it runs. It may call back into the transport.
public final class SerialTransport: SessionTransport {
    public let configuration: SerialTransportConfiguration
    private let onEvent: @Sendable (TransportEvent) -> Void
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    public var linkKind: LinkKind { .frame }

    public init(configuration: SerialTransportConfiguration, onEvent: @escaping @Sendable (TransportEvent) -> Void) {
        self.configuration = configuration
        self.onEvent = onEvent
        self.logger = configuration.logger
    }

    private struct State {
        enum Phase { case idle, started, shutDown }
        var phase = Phase.idle
        /// Every open line, by device path.
        var lines: [String: SerialLine] = [:]
    }

    // MARK: - Public API

    /// Opens every listen line and waits there for a handshake.
    public func start() async throws(TransportError) {
        let proceed: Result<Bool, TransportError> = state.withLockedValue { state in
            switch state.phase {
            case .shutDown: return .failure(.shutDown)
            case .started: return .success(false)
            case .idle:
                state.phase = .started
                return .success(true)
            }
        }
        guard try proceed.get() else { return }
        var opened: [SerialLine] = []
        for address in configuration.listen {
            do throws(TransportError) {
                guard case let .serial(path, baud) = address.location else {
                    throw .unsupportedAddress(address.description, reason: "the serial transport listens on serial addresses only")
                }
                let line = try openLine(path: path, baud: baud, role: .responder, address: address.description,
                                        direction: .inbound, bindFailure: true)
                opened.append(line)
                logger.info("answering on \(address)")
            } catch {
                for line in opened { await close(line, reason: "the transport failed to start") }
                throw error
            }
        }
    }

    public func canReach(_ address: PeerAddress) -> Bool {
        if case .serial = address.location { return true }
        return false
    }

    /// Opens the line and completes after the handshake and the `init` exchange. A
    /// persistent peer gets a new handshake whenever its session ends, the first failed
    /// one included (the call still throws that first failure), until `disconnect`.
    public func connect(to address: PeerAddress, persistent: Bool = true) async throws(TransportError) -> PeerInfo {
        guard case let .serial(path, baud) = address.location else {
            throw .unsupportedAddress(address.description, reason: "the serial transport dials serial addresses only")
        }
        guard address.nodeID != configuration.localKey.publicKey else {
            throw .unsupportedAddress(address.description, reason: "that is this node's own id")
        }
        let existing: Result<SerialLine?, TransportError> = state.withLockedValue { state in
            guard state.phase != .shutDown else { return .failure(.shutDown) }
            guard let line = state.lines[path] else { return .success(nil) }
            guard case let .initiator(remote, _) = line.role, remote == address.nodeID else {
                return .failure(.unsupportedAddress(address.description, reason: "\(path) already carries \(line.address)"))
            }
            return .success(line)
        }
        let line: SerialLine
        if let open = try existing.get() {
            line = open
        } else {
            // Not `??`: its autoclosure with a typed throw hangs the caller (Swift 6.3.1).
            line = try openLine(path: path, baud: baud, role: .initiator(remote: address.nodeID, persistent: persistent),
                                address: address.description, direction: .outbound, bindFailure: false)
        }
        return try await line.waitUntilReady().get()
    }

    /// Ends the session with `nodeID` and closes its line, unless the line is one we
    /// listen on: that one only drops the session and waits for the next handshake.
    public func disconnect(_ nodeID: PublicKey) async {
        let lines = state.withLockedValue { $0.lines.values.filter { $0.remoteNodeID == nodeID || $0.dialledNode == nodeID } }
        for line in lines {
            if line.dialledNode != nil {
                await close(line, reason: "disconnected by us")
            } else {
                line.resetSession()
            }
        }
    }

    /// Seals the batch and queues its frames on the line. Never blocks: `.queueFull` when
    /// the line's queue is at its limit, followed by `.writable` once it has drained to half.
    public func send(_ messages: [[UInt8]], to nodeID: PublicKey) throws(TransportError) -> SendOutcome {
        let line = try line(for: nodeID)
        guard !messages.isEmpty else { return .written(bytes: 0) }
        guard let written = try line.send(messages) else { return .queueFull }
        return .written(bytes: written.bytes)
    }

    /// Like `send`, but completes once the frames are written to the device; throws
    /// `.queueFull` instead of answering it.
    public func sendAndFlush(_ messages: [[UInt8]], to nodeID: PublicKey) async throws(TransportError) {
        let line = try line(for: nodeID)
        guard !messages.isEmpty else { return }
        guard let written = try line.send(messages) else { throw .queueFull(nodeID) }
        try await line.waitUntilWritten(written.mark, nodeID: nodeID).get()
    }

    /// A BOLT-1 ping; the round trip until its pong. Unanswered within `pongTimeout`, the
    /// call fails but the session stays (on a lossy line a lost ping proves little).
    public func ping(_ nodeID: PublicKey, pongBytes: UInt16) async throws(TransportError) -> Duration {
        try await line(for: nodeID).ping(pongBytes: pongBytes).get()
    }

    public func peers() -> [PeerInfo] {
        state.withLockedValue { $0.lines.values.compactMap(\.peerInfo) }
    }

    /// What a line has seen: frames, drops, sessions; nil when no line is open at `path`.
    public func lineStatistics(path: String) -> SerialLineStatistics? {
        state.withLockedValue { $0.lines[path] }?.statistics
    }

    /// Closes every line. Later calls throw `.shutDown`.
    public func shutdown() async {
        let lines = state.withLockedValue { state in
            state.phase = .shutDown
            return Array(state.lines.values)
        }
        for line in lines { await close(line, reason: "the transport is shutting down") }
    }

    // MARK: - Lines

    private func openLine(path: String, baud: Int, role: SerialLinkCore.Role, address: String,
                          direction: PeerInfo.Direction, bindFailure: Bool) throws(TransportError) -> SerialLine {
        let failure: (String) -> TransportError = { reason in
            bindFailure ? .bindFailed(address: address, reason: reason) : .connectFailed(address: address, reason: reason)
        }
        let core: SerialLinkCore
        do {
            core = try SerialLinkCore(role: role, localKey: configuration.localKey, localInit: configuration.localInit,
                                      settings: configuration.linkSettings)
        } catch {
            throw failure(error.description)
        }
        let port: SerialPort
        do {
            port = try SerialPort(path: path, baudRate: baud, flowControl: configuration.flowControl,
                                  queuedByteLimit: configuration.maximumQueuedBytesPerLine)
        } catch {
            throw failure(error.description)
        }
        let line = SerialLine(port: port, core: core, address: address, direction: direction, transport: self)
        let registered: Result<Void, TransportError> = state.withLockedValue { state in
            guard state.phase != .shutDown else { return .failure(.shutDown) }
            // `flock` already keeps a second open of the same device out; the path check
            // also catches two spellings that are the same file only by accident of timing.
            guard state.lines[path] == nil else { return .failure(failure("\(path) is already open")) }
            state.lines[path] = line
            return .success(())
        }
        if case let .failure(error) = registered {
            Task { await port.close() }
            throw error
        }
        line.start()
        return line
    }

    private func close(_ line: SerialLine, reason: String) async {
        state.withLockedValue { state in
            if state.lines[line.port.path] === line { state.lines[line.port.path] = nil }
        }
        await line.close(reason: reason)
    }

    private func line(for nodeID: PublicKey) throws(TransportError) -> SerialLine {
        let (phase, line) = state.withLockedValue { state in
            (state.phase, state.lines.values.first { $0.remoteNodeID == nodeID })
        }
        if let line { return line }
        throw phase == .shutDown ? .shutDown : .notConnected(nodeID)
    }

    // MARK: - Calls from the lines

    func emit(_ event: TransportEvent) {
        onEvent(event)
    }

    func log(_ level: Logger.Level, _ message: String) {
        logger.log(level: level, "\(message)")
    }

    /// A non-persistent initiator gave up: its line closes.
    func lineFinished(_ line: SerialLine) {
        Task { await close(line, reason: "the session ended") }
    }
}

/// Counters of one serial line, for logs and tests.
public struct SerialLineStatistics: Sendable, Equatable {
    public var bytesRead: Int
    public var bytesWritten: Int
    public var framesDecoded: Int
    /// Line frames dropped as noise (bad COBS, bad CRC, too long), by reason.
    public var frameDrops: [LineFrameError: Int]
    public var framesDropped: Int { frameDrops.values.reduce(0, +) }
    /// The datagram sessions' counters, summed over every session the line has had.
    public var datagrams: DatagramStatistics
    /// Messages dropped above the session: before the peer's `init`, or against a rule.
    public var messagesDropped: Int
    public var sessionsStarted: Int
}
