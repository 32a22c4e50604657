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
import NIOCore
import NIOPosix

/// BOLT-8 sessions over TCP on SwiftNIO.
///
/// Events reach `onEvent` on the event loop of the link they concern, so events of one
/// peer arrive in order; the closure must return quickly: while it runs, that link is
/// not read, which is how a slow owner slows its peers down instead of growing a queue.
/// It may call back into the transport.
public final class TCPTransport: SessionTransport {
    public let configuration: TCPTransportConfiguration
    let group: any EventLoopGroup
    private let onEvent: @Sendable (TransportEvent) -> Void
    private let logger: Logger
    private let policy: LinkPolicy
    private let state: NIOLockedValueBox<State>

    public var linkKind: LinkKind { .stream }

    public init(configuration: TCPTransportConfiguration, group: any EventLoopGroup,
                onEvent: @escaping @Sendable (TransportEvent) -> Void) {
        self.configuration = configuration
        self.group = group
        self.onEvent = onEvent
        self.state = NIOLockedValueBox(State(persistentPeers: PersistentPeerBook(backoff: configuration.reconnectBackoff)))
        self.logger = configuration.logger
        self.policy = configuration.linkPolicy
    }

    // MARK: - State

    private struct State {
        enum Phase { case idle, listening, shutDown }
        var phase = Phase.idle
        var listeners: [any Channel] = []
        /// Every open link, ready or not, so `shutdown` can close them all.
        var links: [UInt64: any Channel] = [:]
        var sessions: [PublicKey: PeerConnection] = [:]
        var persistentPeers: PersistentPeerBook
        var nextConnectionID: UInt64 = 0
    }

    // MARK: - Public API

    /// Binds every listen address; a port of 0 is replaced by the port the system chose.
    public func start() async throws(TransportError) -> [SocketAddress] {
        let alreadyListening: Result<[SocketAddress]?, TransportError> = state.withLockedValue { state in
            switch state.phase {
            case .shutDown: return .failure(.shutDown)
            case .listening: return .success(state.listeners.compactMap(\.localAddress))
            case .idle:
                state.phase = .listening
                return .success(nil)
            }
        }
        if let addresses = try alreadyListening.get() { return addresses }

        var bound: [any Channel] = []
        for address in configuration.listen {
            do {
                bound.append(try await bind(address))
            } catch {
                for channel in bound { try? await channel.close() }
                state.withLockedValue { state in
                    if state.phase == .listening { state.phase = .idle }
                }
                throw error
            }
        }
        let stillRunning = state.withLockedValue { state in
            guard state.phase == .listening else { return false }
            state.listeners = bound
            return true
        }
        guard stillRunning else {
            for channel in bound { try? await channel.close() }
            throw .shutDown
        }
        for channel in bound {
            logger.info("listening on \(channel.localAddress.map { "\($0)" } ?? "?")")
        }
        return bound.compactMap(\.localAddress)
    }

    public func canReach(_ address: PeerAddress) -> Bool {
        guard case let .tcp(host, _) = address.location else { return false }
        return configuration.dialer.canReach(host)
    }

    /// Completes after the handshake and the `init` exchange. A node already connected
    /// is not dialled again (but becomes persistent if asked). A persistent peer is
    /// redialled in the background whenever its connection is lost or an attempt fails,
    /// this first one included (the call still throws that first failure), until
    /// `disconnect`.
    public func connect(to address: PeerAddress, persistent: Bool = true) async throws(TransportError) -> PeerInfo {
        guard case let .tcp(host, _) = address.location else {
            throw .unsupportedAddress(address.description, reason: "the TCP transport dials tcp addresses only")
        }
        guard configuration.dialer.canReach(host) else {
            throw .unsupportedAddress(address.description, reason: configuration.dialer.refusalReason(for: host))
        }
        let nodeID = address.nodeID
        guard nodeID != configuration.localKey.publicKey else {
            throw .unsupportedAddress(address.description, reason: "that is this node's own id")
        }
        let existing: Result<PeerInfo?, TransportError> = state.withLockedValue { state in
            guard state.phase != .shutDown else { return .failure(.shutDown) }
            // This dial replaces a scheduled redial; its failure schedules the next.
            if persistent { state.persistentPeers.register(address) }
            guard let connection = state.sessions[nodeID] else { return .success(nil) }
            return .success(info(of: connection, in: state))
        }
        if let existing = try existing.get() { return existing }

        do {
            return try await dialAndStartSession(address, persistent: persistent).get()
        } catch {
            let failure = error as? TransportError ?? .connectFailed(address: address.description, reason: describe(error))
            let willRetry = persistent && state.withLockedValue { state in
                guard state.sessions[nodeID] == nil, state.persistentPeers.recordFailure(nodeID) else { return false }
                return scheduleRedial(of: nodeID, in: &state)
            }
            onEvent(.connectFailed(address: address, reason: failure.description, willRetry: willRetry))
            throw failure
        }
    }

    /// Dials now, instead of at their next backoff, every persistent peer that is not
    /// connected and matches `filter` (e.g. onion peers once tor is back), and resets
    /// their backoff.
    public func redialNow(where filter: (PeerAddress) -> Bool) {
        let due: [PublicKey] = state.withLockedValue { state in
            guard state.phase != .shutDown else { return [] }
            let connected = Set(state.sessions.keys)
            return state.persistentPeers.resetRedials { nodeID, address in !connected.contains(nodeID) && filter(address) }
        }
        for nodeID in due { redial(nodeID) }
    }

    /// The peers redialled whenever they are not connected.
    public func persistentPeers() -> [PeerAddress] {
        state.withLockedValue { $0.persistentPeers.addresses }
    }

    /// Closes the session with `nodeID` and forgets it: no more redials.
    public func disconnect(_ nodeID: PublicKey) async {
        let connection: PeerConnection? = state.withLockedValue { state in
            state.persistentPeers.forget(nodeID)
            return state.sessions[nodeID]
        }
        guard let connection else { return }
        connection.close(.local("disconnected by us"))
        try? await connection.channel.closeFuture.get()
    }

    /// Encrypts the batch into one buffer and writes it with one flush, on the peer's
    /// event loop. Never blocks: `.queueFull` when the peer's queue is at its limit,
    /// followed by `.writable` once it has drained to half.
    public func send(_ messages: [[UInt8]], to nodeID: PublicKey) throws(TransportError) -> SendOutcome {
        let connection = try session(for: nodeID)
        let bytes = try PeerLinkCore.framedLength(of: messages, format: connection.frameFormat)
        guard !messages.isEmpty else { return .written(bytes: 0) }
        guard connection.reserve(bytes) else { return .queueFull }
        connection.channel.writeAndFlush(OutboundBatch(messages: messages)).whenComplete { [self] _ in
            releaseQueued(bytes, of: connection)
        }
        return .written(bytes: bytes)
    }

    /// Like `send`, but completes once the frames are written to the socket; throws
    /// `.queueFull` instead of answering it.
    public func sendAndFlush(_ messages: [[UInt8]], to nodeID: PublicKey) async throws(TransportError) {
        let connection = try session(for: nodeID)
        let bytes = try PeerLinkCore.framedLength(of: messages, format: connection.frameFormat)
        guard !messages.isEmpty else { return }
        guard connection.reserve(bytes) else { throw .queueFull(nodeID) }
        let promise = connection.channel.eventLoop.makePromise(of: Void.self)
        connection.channel.writeAndFlush(OutboundBatch(messages: messages), promise: promise)
        let written = promise.futureResult
        written.whenComplete { [self] _ in releaseQueued(bytes, of: connection) }
        do {
            try await written.get()
        } catch let TransportError.sessionNotReady(reason) {
            throw .connectionClosed(nodeID, reason: reason)
        } catch {
            throw error as? TransportError ?? .connectionClosed(nodeID, reason: describe(error))
        }
    }

    /// A BOLT-1 ping; the round trip until its pong. No pong within `pongTimeout`
    /// closes the link (and fails this call).
    public func ping(_ nodeID: PublicKey, pongBytes: UInt16) async throws(TransportError) -> Duration {
        let connection = try session(for: nodeID)
        let roundTrip = connection.channel.eventLoop.flatSubmit {
            connection.handler.value.ping(pongBytes: pongBytes)
        }
        do {
            return try await roundTrip.get()
        } catch {
            throw error as? TransportError ?? .connectionClosed(nodeID, reason: describe(error))
        }
    }

    public func peers() -> [PeerInfo] {
        state.withLockedValue { state in state.sessions.values.map { info(of: $0, in: state) } }
    }

    /// Outbound bytes of ours queued for `nodeID` and not yet written to its socket.
    public func queuedBytes(for nodeID: PublicKey) -> Int? {
        state.withLockedValue { $0.sessions[nodeID] }?.queuedBytes
    }

    /// Closes the listeners and every link, and cancels pending redials. Later calls
    /// throw `.shutDown`.
    public func shutdown() async {
        let (listeners, links) = state.withLockedValue { state in
            state.phase = .shutDown
            state.persistentPeers.forgetAll()
            defer { state.listeners.removeAll() }
            return (state.listeners, Array(state.links.values))
        }
        for listener in listeners { try? await listener.close() }
        for link in links {
            link.eventLoop.execute {
                if let handler = try? link.pipeline.syncOperations.handler(type: PeerLinkHandler.self) {
                    handler.close(.local("the transport is shutting down"))
                } else {
                    link.close(promise: nil)
                }
            }
        }
        for link in links { try? await link.closeFuture.get() }
    }

    // MARK: - Listening and dialling

    private func bind(_ address: ListenAddress) async throws(TransportError) -> any Channel {
        guard case let .tcp(host, port) = address.location else {
            throw .unsupportedAddress(address.description, reason: "the TCP transport listens on tcp addresses only")
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: writeBufferWaterMark)
            .childChannelInitializer { [self] channel in acceptInbound(channel) }
        do {
            switch host {
            case .ipv4, .ipv6:
                return try await bootstrap.bind(to: SocketAddress(ipAddress: host.description, port: Int(port))).get()
            case let .dns(name):
                return try await bootstrap.bind(host: name, port: Int(port)).get()
            case .onion:
                throw TransportError.unsupportedAddress(address.description, reason: "onion services are set up by the Tor transport")
            }
        } catch let error as TransportError {
            throw error
        } catch {
            throw .bindFailed(address: address.description, reason: describe(error))
        }
    }

    private var writeBufferWaterMark: ChannelOptions.Types.WriteBufferWaterMark {
        let high = max(configuration.maximumQueuedBytesPerPeer, 2)
        return .init(low: high / 2, high: high)
    }

    private func acceptInbound(_ channel: any Channel) -> EventLoopFuture<Void> {
        guard let connectionID = register(channel) else {
            return channel.close()
        }
        var localInit = configuration.localInit
        var remoteDescription = "unknown address"
        if let remote = channel.remoteAddress, let ip = remote.ipAddress, let port = remote.port,
           let host = try? Host(parsing: ip), let port16 = UInt16(exactly: port) {
            remoteDescription = host.description(port: port16)
            // BOLT-1: report the address we see (helps a node behind NAT learn its
            // own), but never a private one.
            if localInit.remoteAddress == nil, host.isGloballyRoutable {
                localInit.remoteAddress = host.networkAddress(port: port16).encode()
            }
        }
        let core = PeerLinkCore(role: .responder, localKey: configuration.localKey, localInit: localInit,
                                policy: policy, now: .now)
        let handler = PeerLinkHandler(connectionID: connectionID, origin: .inbound(remoteAddress: remoteDescription),
                                      core: core, transport: self, eventLoop: channel.eventLoop)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(handler)
        }
    }

    private func dialAndStartSession(_ address: PeerAddress, persistent: Bool) -> EventLoopFuture<PeerInfo> {
        let eventLoop = group.next()
        let ready = eventLoop.makePromise(of: PeerInfo.self)
        guard case let .tcp(host, port) = address.location else {
            ready.fail(TransportError.unsupportedAddress(address.description, reason: "not a tcp address"))
            return ready.futureResult
        }
        let origin = LinkOrigin.outbound(address: address, persistent: persistent, ready: ready)
        let writeBufferWaterMark = self.writeBufferWaterMark
        configuration.dialer.dial(
            host: host, port: port, on: eventLoop, connectTimeout: TimeAmount(configuration.handshakeTimeout)
        ) { [self] channel in
            guard let connectionID = register(channel) else {
                return channel.eventLoop.makeFailedFuture(TransportError.shutDown)
            }
            let core = PeerLinkCore(role: .initiator(remoteStatic: address.nodeID), localKey: configuration.localKey,
                                    localInit: configuration.localInit, policy: policy, now: .now)
            let handler = PeerLinkHandler(connectionID: connectionID, origin: origin, core: core, transport: self,
                                          eventLoop: channel.eventLoop)
            return channel.eventLoop.makeCompletedFuture {
                try channel.syncOptions?.setOption(.writeBufferWaterMark, value: writeBufferWaterMark)
                try channel.pipeline.syncOperations.addHandler(handler)
            }
        }.whenFailure { error in
            ready.fail(error as? TransportError ?? .connectFailed(address: address.description, reason: describe(error)))
        }
        return ready.futureResult
    }

    /// Tracks an open link for `shutdown`; nil once shut down.
    private func register(_ channel: any Channel) -> UInt64? {
        let connectionID: UInt64? = state.withLockedValue { state in
            guard state.phase != .shutDown else { return nil }
            let id = state.nextConnectionID
            state.nextConnectionID += 1
            state.links[id] = channel
            return id
        }
        guard let connectionID else { return nil }
        channel.closeFuture.whenComplete { [self] _ in
            state.withLockedValue { _ = $0.links.removeValue(forKey: connectionID) }
        }
        return connectionID
    }

    // MARK: - Redialling

    /// Schedules the next redial of a persistent peer (lock held by the caller).
    private func scheduleRedial(of nodeID: PublicKey, in state: inout State) -> Bool {
        guard state.phase != .shutDown else { return false }
        return state.persistentPeers.scheduleRedial(of: nodeID) { delay in
            let timer = group.next().scheduleTask(in: TimeAmount(delay)) { [self] in redial(nodeID) }
            return { timer.cancel() }
        }
    }

    private func redial(_ nodeID: PublicKey) {
        let address: PeerAddress? = state.withLockedValue { state in
            guard state.phase != .shutDown, state.sessions[nodeID] == nil else { return nil }
            return state.persistentPeers.takeRedial(of: nodeID)
        }
        guard let address else { return }
        logger.info("redialling \(address)")
        dialAndStartSession(address, persistent: true).whenFailure { [self] error in
            // Silent when the attempt no longer matters: the peer was disconnected, or
            // came back on its own (inbound) meanwhile.
            let outcome: (report: Bool, willRetry: Bool) = state.withLockedValue { state in
                guard state.sessions[nodeID] == nil, state.persistentPeers.recordFailure(nodeID) else { return (false, false) }
                return (true, scheduleRedial(of: nodeID, in: &state))
            }
            if outcome.report {
                onEvent(.connectFailed(address: address, reason: describe(error), willRetry: outcome.willRetry))
            }
        }
    }

    // MARK: - Calls from the links (on their event loops)

    enum Admission {
        case accepted
        case rejected(String)
    }

    func linkReady(connectionID: UInt64, channel: any Channel, handler: NIOLoopBound<PeerLinkHandler>,
                   remote: PeerLinkCore.RemotePeer, frameFormat: FrameFormat, origin: LinkOrigin) -> Admission {
        var direction = PeerInfo.Direction.inbound
        var readyPromise: EventLoopPromise<PeerInfo>?
        if case let .outbound(_, _, ready) = origin {
            direction = .outbound
            readyPromise = ready
        }
        let connection = PeerConnection(
            connectionID: connectionID, channel: channel, handler: handler, frameFormat: frameFormat,
            queueLimit: configuration.maximumQueuedBytesPerPeer,
            info: PeerInfo(nodeID: remote.nodeID, address: origin.addressDescription, direction: direction,
                           remoteFeatures: remote.initMessage.combinedFeatures, connectedAt: Date(),
                           persistent: false, largeFrames: remote.largeFrames))
        let outcome: Result<(info: PeerInfo, replaced: PeerConnection?), TransportError> = state.withLockedValue { state in
            guard state.phase != .shutDown else { return .failure(.shutDown) }
            // A persistent dial registered its peer before dialling; a missing entry means
            // `disconnect` came while it was under way.
            if case .outbound(_, true, _) = origin, !state.persistentPeers.contains(remote.nodeID) {
                return .failure(.sessionNotReady(reason: "disconnected while dialling"))
            }
            state.persistentPeers.connected(remote.nodeID)
            let replaced = state.sessions.updateValue(connection, forKey: remote.nodeID)
            return .success((info(of: connection, in: state), replaced))
        }
        switch outcome {
        case let .failure(error):
            readyPromise?.fail(error)
            return .rejected(error.description)
        case let .success((info, replaced)):
            logger.info("session with \(remote.nodeID) at \(info.address) ready (\(direction), \(remote.largeFrames ? "large" : "BOLT") frames)")
            onEvent(.connected(info))
            // Closed after the new session is in place, so its close is not a loss.
            replaced?.close(.local("replaced by a newer connection from the same node"))
            readyPromise?.succeed(info)
            return .accepted
        }
    }

    func deliver(_ message: [UInt8], from nodeID: PublicKey) {
        onEvent(.message(from: nodeID, bytes: message))
    }

    func linkBecameWritable(connectionID: UInt64, nodeID: PublicKey) {
        let connection = state.withLockedValue { $0.sessions[nodeID] }
        guard let connection, connection.connectionID == connectionID, connection.clearRefusalIfDrained() else { return }
        onEvent(.writable(nodeID))
    }

    func linkClosed(connectionID: UInt64, nodeID: PublicKey?, origin: LinkOrigin, reason: LinkFailure, wasReady: Bool) {
        let (wasCurrent, willRedial): (Bool, Bool) = state.withLockedValue { state in
            guard let nodeID, state.sessions[nodeID]?.connectionID == connectionID else { return (false, false) }
            state.sessions[nodeID] = nil
            return (true, scheduleRedial(of: nodeID, in: &state))
        }
        let peer = nodeID.map { "\($0) at \(origin.addressDescription)" } ?? origin.addressDescription
        let line: Logger.Message = "link \(connectionID) with \(peer) closed: \(reason)"
        if reason.isPeerMisbehaviour { logger.warning(line) } else { logger.info(line) }
        if case let .outbound(address, _, ready) = origin, !wasReady {
            ready.fail(TransportError.handshakeFailed(address: address.description, reason: reason.description))
        }
        if wasCurrent, let nodeID {
            onEvent(.disconnected(nodeID: nodeID, reason: reason.description + (willRedial ? "; redialling" : "")))
        }
    }

    // MARK: - Helpers

    private func session(for nodeID: PublicKey) throws(TransportError) -> PeerConnection {
        let (phase, connection) = state.withLockedValue { ($0.phase, $0.sessions[nodeID]) }
        if let connection { return connection }
        throw phase == .shutDown ? .shutDown : .notConnected(nodeID)
    }

    private func info(of connection: PeerConnection, in state: State) -> PeerInfo {
        var info = connection.info
        info.persistent = state.persistentPeers.contains(info.nodeID)
        return info
    }

    private func releaseQueued(_ bytes: Int, of connection: PeerConnection) {
        if connection.release(bytes) { onEvent(.writable(connection.info.nodeID)) }
    }
}

/// A ready session as the transport's registry holds it; safe to use from any thread.
final class PeerConnection: Sendable {
    let connectionID: UInt64
    let channel: any Channel
    let handler: NIOLoopBound<PeerLinkHandler>
    let frameFormat: FrameFormat
    let info: PeerInfo
    private let queue: NIOLockedValueBox<OutboundQueueGauge>

    init(connectionID: UInt64, channel: any Channel, handler: NIOLoopBound<PeerLinkHandler>,
         frameFormat: FrameFormat, queueLimit: Int, info: PeerInfo) {
        self.connectionID = connectionID
        self.channel = channel
        self.handler = handler
        self.frameFormat = frameFormat
        self.queue = NIOLockedValueBox(OutboundQueueGauge(limit: queueLimit))
        self.info = info
    }

    var queuedBytes: Int { queue.withLockedValue(\.bytes) }

    /// Takes `bytes` into the queue unless it is at its limit (our own count, or NIO's
    /// buffer, which also holds pongs and pings, over its high-water mark).
    func reserve(_ bytes: Int) -> Bool {
        let socketWritable = channel.isWritable
        return queue.withLockedValue { $0.reserve(bytes, linkWritable: socketWritable) }
    }

    /// Returns true when a refused sender should now hear `.writable`.
    func release(_ bytes: Int) -> Bool {
        queue.withLockedValue { $0.release(bytes) }
    }

    /// NIO's buffer drained below its low-water mark; `.writable` is owed if our own
    /// count is low too.
    func clearRefusalIfDrained() -> Bool {
        queue.withLockedValue { $0.clearRefusalIfDrained() }
    }

    func close(_ reason: LinkFailure) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.close(reason) }
    }
}

/// One sentence for an error from NIO or the system.
func describe(_ error: any Error) -> String {
    switch error {
    case let error as TransportError:
        return error.description
    case let error as NIOConnectionError:
        let attempts = error.connectionErrors.map { "\($0.target): \(describe($0.error))" }
        if !attempts.isEmpty { return attempts.joined(separator: "; ") }
        if let dnsError = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve \(error.host): \(dnsError)" }
        return "cannot connect to \(error.host):\(error.port)"
    case let error as IOError:
        return error.description
    case let error as ChannelError:
        switch error {
        case let .connectTimeout(timeout): return "the TCP connection timed out after \(timeout)"
        case .ioOnClosedChannel, .alreadyClosed: return "the connection is closed"
        default: return "\(error)"
        }
    default:
        return "\(error)"
    }
}
