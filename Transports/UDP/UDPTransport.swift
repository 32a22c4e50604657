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

/// Noise_XK datagram sessions over UDP on SwiftNIO: a frame link (`LinkKind.frame`).
///
/// One socket per listen address, plus an ephemeral one per address family for dialling
/// when no listener of that family exists. Each socket drives a `DatagramEndpoint` (many
/// sessions behind one socket, keyed by the peer's address) and, per session, a
/// `FrameLinkCore` (the `init` exchange, ping and pong, the message rules), all on the
/// socket's event loop. Events of one peer reach `onEvent` in order, on that loop; the
/// closure must return quickly and may call back into the transport.
///
/// What the link does not promise: messages may be lost (never duplicated, corrupted or
/// forged); the message layer above retries. A session closed by us (a rule broken,
/// `disconnect`) is not announced to the peer, which notices by its dead-peer timer.
public final class UDPTransport: SessionTransport {
    public let configuration: UDPTransportConfiguration
    let group: any EventLoopGroup
    let linkPolicy: LinkPolicy
    private let onEvent: @Sendable (TransportEvent) -> Void
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    public var linkKind: LinkKind { .frame }

    public init(configuration: UDPTransportConfiguration, group: any EventLoopGroup,
                onEvent: @escaping @Sendable (TransportEvent) -> Void) {
        self.configuration = configuration
        self.group = group
        self.onEvent = onEvent
        self.state = NIOLockedValueBox(State(persistentPeers: PersistentPeerBook(backoff: configuration.reconnectBackoff)))
        self.logger = configuration.logger
        self.linkPolicy = configuration.linkPolicy
    }

    // MARK: - State

    private struct State {
        enum Phase { case idle, starting, running, shutDown }
        var phase = Phase.idle
        var sockets: [Int: UDPSocket] = [:]
        var listeners: [Int] = []
        /// Dial-only sockets by address family (`AF_INET`, `AF_INET6`).
        var ephemeral: [Int32: Int] = [:]
        var sessions: [PublicKey: UDPPeerConnection] = [:]
        var persistentPeers: PersistentPeerBook
        var nextSocketID = 0
        var nextLinkID: UInt64 = 0
    }

    // MARK: - Public API

    /// Binds every listen address and the ephemeral dialling sockets; a port of 0 is
    /// replaced by the port the system chose. `connect` calls it when needed.
    public func start() async throws(TransportError) -> [SocketAddress] {
        let phase: State.Phase = state.withLockedValue { state in
            let phase = state.phase
            if phase == .idle { state.phase = .starting }
            return phase
        }
        switch phase {
        case .shutDown: throw .shutDown
        case .running: return listenerAddresses()
        case .starting:
            // Another caller is binding; wait for it (bounded: binding does not block on peers).
            while state.withLockedValue({ $0.phase == .starting }) { try? await Task.sleep(for: .milliseconds(2)) }
            return try await start()
        case .idle: break
        }
        var bound: [Int] = []
        do {
            for address in configuration.listen {
                guard case let .udp(host, port) = address.location else {
                    throw TransportError.unsupportedAddress(address.description, reason: "the UDP transport listens on udp addresses only")
                }
                bound.append(try await bind(try socketAddress(host, port: port, for: address.description), description: address.description))
            }
            let ipv4 = try await bind(try! SocketAddress(ipAddress: "0.0.0.0", port: 0), description: "udp://0.0.0.0:0")
            let ipv6 = try? await bind(try! SocketAddress(ipAddress: "::", port: 0), description: "udp://[::]:0")
            state.withLockedValue { state in
                state.listeners = bound
                state.ephemeral[Int32(AF_INET)] = ipv4
                if let ipv6 { state.ephemeral[Int32(AF_INET6)] = ipv6 }
            }
        } catch {
            await closeSockets(state.withLockedValue { state in
                defer { state.sockets.removeAll(); state.phase = state.phase == .shutDown ? .shutDown : .idle }
                return Array(state.sockets.values)
            })
            throw error as? TransportError ?? .bindFailed(address: "udp", reason: describe(error))
        }
        let running = state.withLockedValue { state in
            guard state.phase == .starting else { return false }
            state.phase = .running
            return true
        }
        guard running else {
            await closeSockets(state.withLockedValue { Array($0.sockets.values) })
            throw .shutDown
        }
        let addresses = listenerAddresses()
        for address in addresses { logger.info("listening on udp://\(address)") }
        return addresses
    }

    public func canReach(_ address: PeerAddress) -> Bool {
        guard case let .udp(host, _) = address.location else { return false }
        return !host.isOnion
    }

    /// Completes after the handshake and the `init` exchange. A node already connected is
    /// not dialled again (but becomes persistent if asked). A persistent peer is redialled
    /// with backoff whenever its session is lost or an attempt fails, this first one
    /// included (the call still throws that first failure), until `disconnect`.
    public func connect(to address: PeerAddress, persistent: Bool = true) async throws(TransportError) -> PeerInfo {
        guard case let .udp(host, _) = address.location else {
            throw .unsupportedAddress(address.description, reason: "the UDP transport dials udp addresses only")
        }
        guard !host.isOnion else {
            throw .unsupportedAddress(address.description, reason: "onion services carry TCP only")
        }
        let nodeID = address.nodeID
        guard nodeID != configuration.localKey.publicKey else {
            throw .unsupportedAddress(address.description, reason: "that is this node's own id")
        }
        _ = try await start()
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

    /// The peers redialled whenever they are not connected.
    public func persistentPeers() -> [PeerAddress] {
        state.withLockedValue { $0.persistentPeers.addresses }
    }

    /// Closes the session with `nodeID` and forgets it: no more redials.
    public func disconnect(_ nodeID: PublicKey) async {
        let connection: UDPPeerConnection? = state.withLockedValue { state in
            state.persistentPeers.forget(nodeID)
            return state.sessions[nodeID]
        }
        guard let connection else { return }
        let socket = connection.socket
        try? await socket.channel.eventLoop.submit {
            socket.handler.value.close(connection.remote, linkID: connection.linkID, reason: .local("disconnected by us"))
        }.get()
    }

    /// Seals the batch into datagrams on the peer's socket loop. Never blocks:
    /// `.queueFull` when the peer's queue is at its limit, then `.writable` once it has
    /// drained to half. `bytes` counts the datagrams (headers and tags included).
    public func send(_ messages: [[UInt8]], to nodeID: PublicKey) throws(TransportError) -> SendOutcome {
        let connection = try session(for: nodeID)
        let bytes = try FrameLinkCore.checkOutbound(messages, maximumMessageLength: linkPolicy.maximumMessageLength)
        guard !messages.isEmpty else { return .written(bytes: 0) }
        guard connection.reserve(bytes) else { return .queueFull }
        let promise = connection.socket.channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { [self] _ in releaseQueued(bytes, of: connection) }
        submit(messages, over: connection, promise: promise)
        return .written(bytes: linkBytes(of: messages))
    }

    /// Like `send`, but completes once the datagrams are written to the socket; throws
    /// `.queueFull` instead of answering it.
    public func sendAndFlush(_ messages: [[UInt8]], to nodeID: PublicKey) async throws(TransportError) {
        let connection = try session(for: nodeID)
        let bytes = try FrameLinkCore.checkOutbound(messages, maximumMessageLength: linkPolicy.maximumMessageLength)
        guard !messages.isEmpty else { return }
        guard connection.reserve(bytes) else { throw .queueFull(nodeID) }
        let promise = connection.socket.channel.eventLoop.makePromise(of: Void.self)
        let written = promise.futureResult
        written.whenComplete { [self] _ in releaseQueued(bytes, of: connection) }
        submit(messages, over: connection, promise: promise)
        do {
            try await written.get()
        } catch let TransportError.sessionNotReady(reason) {
            throw .connectionClosed(nodeID, reason: reason)
        } catch {
            throw error as? TransportError ?? .connectionClosed(nodeID, reason: describe(error))
        }
    }

    /// A BOLT-1 ping; the round trip until its pong. A lost ping or pong fails this call
    /// after `pongTimeout` (`.pongTimedOut`) but not the session: a frame link loses datagrams.
    public func ping(_ nodeID: PublicKey, pongBytes: UInt16) async throws(TransportError) -> Duration {
        let connection = try session(for: nodeID)
        let socket = connection.socket
        let roundTrip = socket.channel.eventLoop.flatSubmit {
            socket.handler.value.ping(connection.remote, linkID: connection.linkID, pongBytes: pongBytes)
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

    /// Message bytes of ours queued for `nodeID` and not yet written to its socket.
    public func queuedBytes(for nodeID: PublicKey) -> Int? {
        state.withLockedValue { $0.sessions[nodeID] }?.queuedBytes
    }

    /// The sockets' counters, summed: stray and refused datagrams, sessions, drops.
    public func statistics() async -> UDPSocketStatistics {
        let sockets = state.withLockedValue { Array($0.sockets.values) }
        var total = UDPSocketStatistics()
        for socket in sockets {
            guard let counts = try? await socket.channel.eventLoop.submit({ socket.handler.value.statistics() }).get() else { continue }
            total.sessions += counts.sessions
            total.halfOpenHandshakes += counts.halfOpenHandshakes
            total.strayDatagrams += counts.strayDatagrams
            total.handshakesRefused += counts.handshakesRefused
            total.sessionDatagramsReceived += counts.sessionDatagramsReceived
            total.sessionDatagramsDropped += counts.sessionDatagramsDropped
            total.messagesDroppedBeforeInit += counts.messagesDroppedBeforeInit
        }
        return total
    }

    /// Closes every session and socket, and cancels pending redials. Later calls throw `.shutDown`.
    public func shutdown() async {
        let sockets = state.withLockedValue { state in
            state.phase = .shutDown
            state.persistentPeers.forgetAll()
            defer { state.sockets.removeAll(); state.listeners.removeAll(); state.ephemeral.removeAll() }
            return Array(state.sockets.values)
        }
        await closeSockets(sockets)
    }

    // MARK: - Sockets

    private func closeSockets(_ sockets: [UDPSocket]) async {
        for socket in sockets {
            try? await socket.channel.eventLoop.submit {
                socket.handler.value.closeAll(.local("the transport is shutting down"))
            }.get()
            try? await socket.channel.close()
        }
    }

    private func listenerAddresses() -> [SocketAddress] {
        state.withLockedValue { state in state.listeners.compactMap { state.sockets[$0]?.channel.localAddress } }
    }

    private func bind(_ address: SocketAddress, description: String) async throws(TransportError) -> Int {
        let endpoint: DatagramEndpoint<SocketAddress>
        do {
            endpoint = try DatagramEndpoint(localStatic: configuration.localKey, policy: configuration.datagramPolicy,
                                            maximumSessions: configuration.maximumSessionsPerSocket,
                                            maximumHalfOpen: configuration.maximumHalfOpenPerSocket)
        } catch {
            throw .bindFailed(address: description, reason: error.description)
        }
        let socketID = state.withLockedValue { state in
            defer { state.nextSocketID += 1 }
            return state.nextSocketID
        }
        let hook = configuration.socketPipelineHook
        // Larger than any datagram we accept, so an oversized one is seen (and counted) as such.
        let receiveCapacity = configuration.datagramPolicy.maximumDatagramSize + 512
        // No SO_REUSEADDR: on UDP it lets two sockets share a port (even one the system
        // picks for port 0), and the kernel then hands one of them the other's datagrams.
        let bootstrap = DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(clamping: configuration.receiveBufferBytes))
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: receiveCapacity))
            .channelOption(.maxMessagesPerRead, value: 64)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try hook?(channel)
                    let handler = UDPSocketHandler(endpoint: endpoint, transport: self, socketID: socketID, eventLoop: channel.eventLoop)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    let socket = UDPSocket(socketID: socketID, channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    state.withLockedValue { $0.sockets[socketID] = socket }
                }
            }
        do {
            _ = try await bootstrap.bind(to: address).get()
        } catch {
            throw .bindFailed(address: description, reason: describe(error))
        }
        return socketID
    }

    /// The socket to dial `remote` from: the first listener of its family (so the peer
    /// sees the address we listen on), else the ephemeral socket of that family.
    private func socket(toward remote: SocketAddress) -> UDPSocket? {
        state.withLockedValue { state in
            let family = remote.protocol.rawValue
            for id in state.listeners {
                if let socket = state.sockets[id], socket.channel.localAddress?.protocol.rawValue == family { return socket }
            }
            return state.ephemeral[family].flatMap { state.sockets[$0] }
        }
    }

    private func socketAddress(_ host: Host, port: UInt16, for description: String) throws(TransportError) -> SocketAddress {
        do {
            switch host {
            case .ipv4, .ipv6:
                return try SocketAddress(ipAddress: host.description, port: Int(port))
            case let .dns(name):
                return try SocketAddress.makeAddressResolvingHost(name, port: Int(port))
            case .onion:
                throw TransportError.unsupportedAddress(description, reason: "onion services carry TCP only")
            }
        } catch let error as TransportError {
            throw error
        } catch {
            throw .connectFailed(address: description, reason: describe(error))
        }
    }

    private func dialAndStartSession(_ address: PeerAddress, persistent: Bool) -> EventLoopFuture<PeerInfo> {
        let loop = group.next()
        guard case let .udp(host, port) = address.location else {
            return loop.makeFailedFuture(TransportError.unsupportedAddress(address.description, reason: "not a udp address"))
        }
        let remote: SocketAddress
        do {
            remote = try socketAddress(host, port: port, for: address.description)
        } catch {
            return loop.makeFailedFuture(error)
        }
        guard let socket = socket(toward: remote) else {
            return loop.makeFailedFuture(TransportError.connectFailed(
                address: address.description, reason: "no socket of this address family is open (is the transport started?)"))
        }
        let ready = socket.channel.eventLoop.makePromise(of: PeerInfo.self)
        let origin = UDPOrigin.outbound(address: address, persistent: persistent, ready: ready)
        socket.channel.eventLoop.execute {
            socket.handler.value.dial(remote, nodeID: address.nodeID, origin: origin)
        }
        return ready.futureResult
    }

    private func submit(_ messages: [[UInt8]], over connection: UDPPeerConnection, promise: EventLoopPromise<Void>) {
        let socket = connection.socket
        socket.channel.eventLoop.execute {
            socket.handler.value.send(messages, linkID: connection.linkID, to: connection.remote, promise: promise)
        }
    }

    /// The datagram bytes of a batch: each message whole, or in fragments, with header and tag.
    private func linkBytes(of messages: [[UInt8]]) -> Int {
        let policy = configuration.datagramPolicy
        return messages.reduce(0) { total, message in
            let count = policy.datagramCount(forMessageLength: message.count)
            let fragmentHeaders = count > 1 ? count * DatagramFormat.fragmentHeaderSize : 0
            return total + message.count + count * DatagramFormat.transportOverhead + fragmentHeaders
        }
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

    // MARK: - Calls from the sockets (on their event loops)

    enum Admission {
        case accepted
        case rejected(String)
    }

    var localInit: InitMessage { configuration.localInit }

    /// Our `init` for an inbound session: BOLT-1 lets us report the address we see (it
    /// helps a node behind NAT learn its own), but never a private one.
    func localInit(reportingTo remote: SocketAddress) -> InitMessage {
        var localInit = configuration.localInit
        if localInit.remoteAddress == nil, let ip = remote.ipAddress, let port = remote.port,
           let host = try? Host(parsing: ip), let port16 = UInt16(exactly: port), host.isGloballyRoutable {
            localInit.remoteAddress = host.networkAddress(port: port16).encode()
        }
        return localInit
    }

    func nextLinkID() -> UInt64 {
        state.withLockedValue { state in
            defer { state.nextLinkID += 1 }
            return state.nextLinkID
        }
    }

    func isPersistent(_ nodeID: PublicKey) -> Bool {
        state.withLockedValue { $0.persistentPeers.contains(nodeID) }
    }

    func linkReady(linkID: UInt64, socketID: Int, remote: SocketAddress, peer: FrameLinkCore.RemotePeer, origin: UDPOrigin,
                   readyPromise: EventLoopPromise<PeerInfo>?) -> Admission {
        let direction: PeerInfo.Direction = if case .outbound = origin { .outbound } else { .inbound }
        let outcome: Result<(info: PeerInfo, replaced: UDPPeerConnection?), TransportError> = state.withLockedValue { state in
            guard state.phase != .shutDown, let socket = state.sockets[socketID] else { return .failure(.shutDown) }
            // A persistent dial registered its peer before dialling; a missing entry means
            // `disconnect` came while it was under way.
            if origin.isPersistentOutbound, !state.persistentPeers.contains(peer.nodeID) {
                return .failure(.sessionNotReady(reason: "disconnected while dialling"))
            }
            state.persistentPeers.connected(peer.nodeID)
            let connection = UDPPeerConnection(
                linkID: linkID, socket: socket, remote: remote, queueLimit: configuration.maximumQueuedBytesPerPeer,
                info: PeerInfo(nodeID: peer.nodeID, address: origin.addressDescription, direction: direction,
                               remoteFeatures: peer.initMessage.combinedFeatures, connectedAt: Date(),
                               persistent: false, largeFrames: false))
            let replaced = state.sessions.updateValue(connection, forKey: peer.nodeID)
            return .success((info(of: connection, in: state), replaced))
        }
        switch outcome {
        case let .failure(error):
            readyPromise?.fail(error)
            return .rejected(error.description)
        case let .success((info, replaced)):
            logger.info("session with \(peer.nodeID) at \(info.address) ready (\(direction), udp)")
            onEvent(.connected(info))
            // Closed after the new session is in place, so its close is not a loss.
            if let replaced, replaced.linkID != linkID {
                replaced.close(.local("replaced by a newer session with the same node"))
            }
            readyPromise?.succeed(info)
            return .accepted
        }
    }

    func deliver(_ message: [UInt8], from nodeID: PublicKey) {
        onEvent(.message(from: nodeID, bytes: message))
    }

    /// A ready session stopped being ready but goes on (a new handshake is under way).
    func linkLost(linkID: UInt64, nodeID: PublicKey, reason: String) {
        let wasCurrent = state.withLockedValue { state in
            guard state.sessions[nodeID]?.linkID == linkID else { return false }
            state.sessions[nodeID] = nil
            return true
        }
        logger.info("session with \(nodeID) interrupted: \(reason)")
        if wasCurrent { onEvent(.disconnected(nodeID: nodeID, reason: reason)) }
    }

    func linkClosed(linkID: UInt64, nodeID: PublicKey?, origin: UDPOrigin, reason: LinkFailure, wasReady: Bool,
                    everEstablished: Bool) {
        if case let .outbound(address, _, ready?) = origin {
            // The dial never got ready: its caller (connect or redial) reports and reschedules.
            let error: TransportError = everEstablished
                ? .handshakeFailed(address: address.description, reason: reason.description)
                : .connectFailed(address: address.description, reason: reason.description)
            ready.fail(error)
        }
        let (wasCurrent, willRedial): (Bool, Bool) = state.withLockedValue { state in
            guard let nodeID else { return (false, false) }
            let wasCurrent = state.sessions[nodeID]?.linkID == linkID
            if wasCurrent { state.sessions[nodeID] = nil }
            guard state.sessions[nodeID] == nil, !isPendingDial(origin) else { return (wasCurrent, false) }
            return (wasCurrent, scheduleRedial(of: nodeID, in: &state))
        }
        let peer = nodeID.map { "\($0) at \(origin.addressDescription)" } ?? origin.addressDescription
        let line: Logger.Message = "session \(linkID) with \(peer) closed: \(reason)"
        if reason.isPeerMisbehaviour { logger.warning(line) } else { logger.info(line) }
        if wasCurrent, let nodeID {
            onEvent(.disconnected(nodeID: nodeID, reason: reason.description + (willRedial ? "; redialling" : "")))
        }
    }

    func socketBecameWritable(socketID: Int) {
        let owed = state.withLockedValue { state in
            state.sessions.values.filter { $0.socket.socketID == socketID && $0.clearRefusalIfDrained() }.map(\.info.nodeID)
        }
        for nodeID in owed { onEvent(.writable(nodeID)) }
    }

    func socketError(_ error: any Error) {
        logger.debug("udp socket error: \(describe(error))")
    }

    func sessionRefusedMessage(_ error: DatagramSessionError) {
        logger.debug("a link message was not sent: \(error)")
    }

    // MARK: - Helpers

    private func isPendingDial(_ origin: UDPOrigin) -> Bool {
        if case .outbound(_, _, _?) = origin { return true }
        return false
    }

    private func session(for nodeID: PublicKey) throws(TransportError) -> UDPPeerConnection {
        let (phase, connection) = state.withLockedValue { ($0.phase, $0.sessions[nodeID]) }
        if let connection { return connection }
        throw phase == .shutDown ? .shutDown : .notConnected(nodeID)
    }

    private func info(of connection: UDPPeerConnection, in state: State) -> PeerInfo {
        var info = connection.info
        info.persistent = state.persistentPeers.contains(info.nodeID)
        return info
    }

    private func releaseQueued(_ bytes: Int, of connection: UDPPeerConnection) {
        if connection.release(bytes) { onEvent(.writable(connection.info.nodeID)) }
    }
}

/// One bound socket and its handler; safe to use from any thread.
final class UDPSocket: Sendable {
    let socketID: Int
    let channel: any Channel
    let handler: NIOLoopBound<UDPSocketHandler>

    init(socketID: Int, channel: any Channel, handler: NIOLoopBound<UDPSocketHandler>) {
        self.socketID = socketID
        self.channel = channel
        self.handler = handler
    }
}
