#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import NIOCore

/// Who opened a session, and for an outbound one, who waits for it to be ready.
enum UDPOrigin: Sendable {
    case inbound(remoteAddress: String)
    /// `ready` is completed once, by the first `init` exchange or the failure before it.
    case outbound(address: PeerAddress, persistent: Bool, ready: EventLoopPromise<PeerInfo>?)

    var addressDescription: String {
        switch self {
        case let .inbound(remoteAddress): remoteAddress
        case let .outbound(address, _, _): address.description
        }
    }

    var isPersistentOutbound: Bool {
        if case .outbound(_, true, _) = self { return true }
        return false
    }
}

/// Counters of one socket, for logs and tests.
public struct UDPSocketStatistics: Sendable, Equatable {
    public var sessions = 0
    public var halfOpenHandshakes = 0
    /// Datagrams from addresses without a session that were not a verifiable act one.
    public var strayDatagrams = 0
    /// Act ones refused or evicted because of the session and half-open limits.
    public var handshakesRefused = 0
    /// Summed over the sessions open now.
    public var sessionDatagramsReceived = 0
    public var sessionDatagramsDropped = 0
    public var messagesDroppedBeforeInit = 0

    public init() {}
}

/// The NIO edge of one UDP socket: datagrams and timer ticks go into the socket's
/// `DatagramEndpoint` (sessions keyed by address) and each session's `FrameLinkCore`;
/// their actions come out as datagrams and calls to the transport. All on the socket's
/// event loop; the decisions are the cores'.
final class UDPSocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private struct Link {
        let id: UInt64
        var origin: UDPOrigin
        var core: FrameLinkCore
        var isReady = false
        var everEstablished = false
        var pendingPings: [FrameLinkCore.PingToken: EventLoopPromise<Duration>] = [:]
    }

    private var endpoint: DatagramEndpoint<SocketAddress>
    private var links: [SocketAddress: Link] = [:]
    /// Strong on purpose: sockets close before the transport goes (`shutdown`).
    private let transport: UDPTransport
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var timerDeadline: ContinuousClock.Instant?
    private var wroteSinceFlush = false
    private var isShutDown = false
    private let eventLoop: any EventLoop
    let socketID: Int

    init(endpoint: DatagramEndpoint<SocketAddress>, transport: UDPTransport, socketID: Int, eventLoop: any EventLoop) {
        self.endpoint = endpoint
        self.transport = transport
        self.socketID = socketID
        self.eventLoop = eventLoop
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closeAll(.local("the socket closed"))
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let now = ContinuousClock.now
        perform(endpoint.receive(Array(envelope.data.readableBytesView), from: envelope.remoteAddress, now: now), now: now)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        finishTurn()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { transport.socketBecameWritable(socketID: socketID) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeAll(.local("the socket closed"))
        context.fireChannelInactive()
    }

    /// A UDP socket reports per-datagram errors (e.g. an ICMP port unreachable) without
    /// being broken: the sessions' own timers decide what is lost, so the socket stays.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        transport.socketError(error)
    }

    // MARK: - Requests from the transport (on this event loop)

    func dial(_ remote: SocketAddress, nodeID: PublicKey, origin: UDPOrigin) {
        let now = ContinuousClock.now
        guard !isShutDown else {
            fail(origin, TransportError.shutDown)
            return
        }
        if links[remote] != nil {
            // The new dial replaces whatever session this address had.
            _ = endpoint.close(remote)
            finishLink(remote, reason: .local("replaced by a new dial to the same address"))
        }
        let actions: [DatagramEndpoint<SocketAddress>.Action]
        do {
            actions = try endpoint.connect(to: remote, remoteStatic: nodeID, now: now)
        } catch {
            fail(origin, TransportError.connectFailed(address: origin.addressDescription, reason: error.description))
            return
        }
        links[remote] = Link(id: transport.nextLinkID(), origin: origin, core: makeCore(localInit: transport.localInit))
        perform(actions, now: now)
        finishTurn()
    }

    func send(_ messages: [[UInt8]], linkID: UInt64, to remote: SocketAddress, promise: EventLoopPromise<Void>) {
        guard let context, let link = links[remote], link.id == linkID, link.core.stage == .ready else {
            promise.fail(TransportError.sessionNotReady(reason: "the session closed before the messages were sent"))
            return
        }
        let now = ContinuousClock.now
        var lastWrite: EventLoopPromise<Void>?
        for message in messages {
            let datagrams: [[UInt8]]
            do {
                datagrams = try endpoint.send(message, to: remote, now: now)
            } catch {
                promise.fail(TransportError.sessionNotReady(reason: error.description))
                finishTurn()
                return
            }
            for datagram in datagrams {
                let written = context.eventLoop.makePromise(of: Void.self)
                write(datagram, to: remote, promise: written)
                lastWrite = written
            }
        }
        if let lastWrite {
            lastWrite.futureResult.cascade(to: promise)
        } else {
            promise.succeed()
        }
        finishTurn()
    }

    func ping(_ remote: SocketAddress, linkID: UInt64, pongBytes: UInt16) -> EventLoopFuture<Duration> {
        guard let context, var link = links[remote], link.id == linkID else {
            return eventLoop.makeFailedFuture(TransportError.sessionNotReady(reason: "the session is closed"))
        }
        let now = ContinuousClock.now
        do {
            let (token, actions) = try link.core.ping(pongBytes: pongBytes, now: now)
            let promise = context.eventLoop.makePromise(of: Duration.self)
            link.pendingPings[token] = promise
            links[remote] = link
            performLink(remote, actions, now: now)
            finishTurn()
            return promise.futureResult
        } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
    }

    func close(_ remote: SocketAddress, linkID: UInt64, reason: LinkFailure) {
        guard var link = links[remote], link.id == linkID else { return }
        let actions = link.core.close(reason)
        links[remote] = link
        performLink(remote, actions, now: .now)
        finishTurn()
    }

    /// Ends every session (shutdown): their owners hear `.disconnected`.
    func closeAll(_ reason: LinkFailure) {
        isShutDown = true
        for remote in Array(links.keys) {
            _ = endpoint.close(remote)
            finishLink(remote, reason: reason)
        }
        cancelTimer()
    }

    func statistics() -> UDPSocketStatistics {
        var statistics = UDPSocketStatistics()
        statistics.sessions = endpoint.sessionCount
        statistics.halfOpenHandshakes = endpoint.halfOpenCount
        statistics.strayDatagrams = endpoint.strayDatagrams
        statistics.handshakesRefused = endpoint.handshakesRefused
        for (remote, link) in links {
            statistics.messagesDroppedBeforeInit += link.core.messagesDroppedBeforeInit
            guard let session = endpoint.session(for: remote) else { continue }
            statistics.sessionDatagramsReceived += session.statistics.datagramsReceived
            statistics.sessionDatagramsDropped += session.statistics.totalDropped
        }
        return statistics
    }

    // MARK: - Carrying out the cores' actions

    private func perform(_ actions: [DatagramEndpoint<SocketAddress>.Action], now: ContinuousClock.Instant) {
        for action in actions {
            switch action {
            case let .send(datagram, remote):
                write(datagram, to: remote, promise: nil)
            case let .established(remote, remoteStatic, epoch):
                established(remote, remoteStatic: remoteStatic, epoch: epoch, now: now)
            case let .deliver(message, remote):
                guard var link = links[remote] else { continue }
                let linkActions = link.core.receive(message, now: now)
                links[remote] = link
                performLink(remote, linkActions, now: now)
            case let .restarting(remote, failure):
                restarting(remote, failure: failure)
            case let .closed(remote, failure):
                guard var link = links[remote] else { continue }
                let reason = link.core.sessionClosed(failure)
                links[remote] = link
                finishLink(remote, reason: reason)
            }
        }
    }

    private func established(_ remote: SocketAddress, remoteStatic: PublicKey, epoch: Int, now: ContinuousClock.Instant) {
        guard !isShutDown else {
            _ = endpoint.close(remote)
            return
        }
        var link = links[remote] ?? Link(id: transport.nextLinkID(), origin: .inbound(remoteAddress: describe(remote)),
                                         core: makeCore(localInit: transport.localInit(reportingTo: remote)))
        if link.isReady {
            // A new handshake on a live session: the peer restarted (or re-keyed); it may
            // have forgotten our init, so the exchange runs again before it is ready.
            link.isReady = false
            transport.linkLost(linkID: link.id, nodeID: remoteStatic,
                               reason: "the peer started a new session (it may have restarted)")
        }
        link.everEstablished = true
        let actions = link.core.sessionEstablished(remoteNodeID: remoteStatic, now: now)
        links[remote] = link
        performLink(remote, actions, now: now)
    }

    /// An outbound session whose peer went silent starts its handshake over by itself;
    /// that is the redial of a persistent peer. Any other is closed instead.
    private func restarting(_ remote: SocketAddress, failure: DatagramSessionFailure) {
        guard var link = links[remote] else { return }
        let nodeID = link.core.remoteNodeID
        if link.origin.isPersistentOutbound, let nodeID, transport.isPersistent(nodeID) {
            if link.isReady {
                link.isReady = false
                links[remote] = link
                transport.linkLost(linkID: link.id, nodeID: nodeID, reason: "\(failure); handshaking again")
            }
            return
        }
        _ = endpoint.close(remote)
        finishLink(remote, reason: .local(failure.description))
    }

    private func performLink(_ remote: SocketAddress, _ actions: [FrameLinkCore.Action], now: ContinuousClock.Instant) {
        for action in actions {
            guard var link = links[remote] else { return }
            switch action {
            case let .send(message):
                do {
                    for datagram in try endpoint.send(message, to: remote, now: now) {
                        write(datagram, to: remote, promise: nil)
                    }
                } catch {
                    // The session holds what it may before the peer confirms the handshake;
                    // the init is sent again on its timer, so a refusal here costs a retry.
                    transport.sessionRefusedMessage(error)
                }
            case let .ready(peer):
                link.isReady = true
                var readyPromise: EventLoopPromise<PeerInfo>?
                if case let .outbound(address, persistent, ready) = link.origin {
                    readyPromise = ready
                    link.origin = .outbound(address: address, persistent: persistent, ready: nil)
                }
                links[remote] = link
                let admission = transport.linkReady(linkID: link.id, socketID: socketID, remote: remote, peer: peer, origin: link.origin,
                                                    readyPromise: readyPromise)
                if case let .rejected(reason) = admission {
                    links[remote]?.isReady = false
                    let closing = links[remote]?.core.close(.local(reason)) ?? []
                    performLink(remote, closing, now: now)
                    return
                }
            case let .deliver(message):
                guard link.isReady, let nodeID = link.core.remoteNodeID else { continue }
                transport.deliver(message, from: nodeID)
            case let .pongReceived(token, roundTrip):
                link.pendingPings.removeValue(forKey: token)?.succeed(roundTrip)
                links[remote] = link
            case let .pingFailed(token, after):
                if let promise = link.pendingPings.removeValue(forKey: token) {
                    let nodeID = link.core.remoteNodeID
                    promise.fail(nodeID.map { TransportError.pongTimedOut($0, after: after) }
                        ?? TransportError.sessionNotReady(reason: "no pong"))
                }
                links[remote] = link
            case let .close(reason):
                // The warning before this action is already written; the peer is not told
                // more (its dead-peer timer notices), as on any lossy link.
                _ = endpoint.close(remote)
                finishLink(remote, reason: reason)
                return
            }
        }
    }

    /// Reports a session's end exactly once and forgets it.
    private func finishLink(_ remote: SocketAddress, reason: LinkFailure) {
        guard let link = links.removeValue(forKey: remote) else { return }
        let nodeID = link.core.remoteNodeID
        for promise in link.pendingPings.values {
            promise.fail(nodeID.map { TransportError.connectionClosed($0, reason: reason.description) }
                ?? TransportError.sessionNotReady(reason: reason.description))
        }
        transport.linkClosed(linkID: link.id, nodeID: nodeID, origin: link.origin, reason: reason, wasReady: link.isReady,
                             everEstablished: link.everEstablished)
    }

    private func fail(_ origin: UDPOrigin, _ error: TransportError) {
        if case let .outbound(_, _, ready?) = origin { ready.fail(error) }
    }

    private func makeCore(localInit: InitMessage) -> FrameLinkCore {
        FrameLinkCore(localInit: localInit, policy: transport.linkPolicy, initRetryInterval: transport.configuration.initRetryInterval)
    }

    // MARK: - Socket and timer

    private func write(_ datagram: [UInt8], to remote: SocketAddress, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: ByteBuffer(bytes: datagram))), promise: promise)
        wroteSinceFlush = true
    }

    /// Flushes what this turn wrote and re-arms the timer for the earliest deadline.
    private func finishTurn() {
        guard let context else { return }
        if wroteSinceFlush {
            wroteSinceFlush = false
            context.flush()
        }
        armTimer(context: context)
    }

    private func armTimer(context: ChannelHandlerContext) {
        let deadline = ([endpoint.nextDeadline] + links.values.map(\.core.nextDeadline)).compactMap { $0 }.min()
        guard let deadline, !isShutDown else {
            cancelTimer()
            return
        }
        // A later deadline keeps the armed timer: it fires, finds nothing due, and re-arms.
        if let timerDeadline, timer != nil, timerDeadline <= deadline { return }
        cancelTimer()
        timerDeadline = deadline
        // At least a millisecond: a core that kept reporting a past deadline would otherwise
        // spin this loop and starve the socket's reads.
        let delay = max(deadline - .now, .milliseconds(1))
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) { [self] in
            timer = nil
            timerDeadline = nil
            timerFired()
        }
    }

    private func timerFired() {
        let now = ContinuousClock.now
        perform(endpoint.timerFired(now: now), now: now)
        for remote in Array(links.keys) {
            guard var link = links[remote], let deadline = link.core.nextDeadline, deadline <= now else { continue }
            let actions = link.core.timerFired(now: now)
            links[remote] = link
            performLink(remote, actions, now: now)
        }
        finishTurn()
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        timerDeadline = nil
    }
}

/// `1.2.3.4:9735` or `[::1]:9735`.
func describe(_ address: SocketAddress) -> String {
    guard let ip = address.ipAddress, let port = address.port, let port16 = UInt16(exactly: port),
          let host = try? Host(parsing: ip) else { return "\(address)" }
    return host.description(port: port16)
}
