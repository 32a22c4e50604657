import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import NIOCore
import NIOPosix

/// A batch of the owner's messages on its way through the pipeline; encrypted in
/// `write`, on the event loop, so frames leave in nonce order.
struct OutboundBatch: Sendable {
    var messages: [[UInt8]]
}

/// Who opened a link, and for an outbound one, who waits for it to be ready.
enum LinkOrigin: Sendable {
    case inbound(remoteAddress: String)
    case outbound(address: PeerAddress, persistent: Bool, ready: EventLoopPromise<PeerInfo>)

    var addressDescription: String {
        switch self {
        case let .inbound(remoteAddress): remoteAddress
        case let .outbound(address, _, _): address.description
        }
    }
}

/// The NIO edge of one peer link: bytes and timer ticks go into `PeerLinkCore`, its
/// actions come out as socket writes, closes and calls to the transport. Decisions are
/// the core's; this class only carries them out on the channel's event loop.
final class PeerLinkHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = OutboundBatch
    typealias OutboundOut = ByteBuffer

    /// How long a close waits for its last write (a `warning`) before it cuts the link.
    static let closeGracePeriod: TimeAmount = .seconds(1)
    /// What a peer may send while its handshake step is off the loop: act three and an
    /// `init` fit many times over; a peer that sends more is not running BOLT-8.
    static let maximumHeldBytes = 256 * 1024

    let connectionID: UInt64
    let origin: LinkOrigin
    private var core: PeerLinkCore
    /// Strong on purpose: links end before the transport does (`shutdown` closes them all).
    private let transport: TCPTransport
    private let eventLoop: any EventLoop
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var timerDeadline: ContinuousClock.Instant?
    private var pendingPings: [PeerLinkCore.PingToken: EventLoopPromise<Duration>] = [:]
    private var isReady = false
    private var isClosing = false
    private var hasReportedClose = false
    /// A handshake step (acts one to three) is running on NIO's blocking-work pool with a
    /// copy of `core`; reads wait in `heldBytes` until it is back.
    private var handshakeStepInFlight = false
    private var heldBytes: [UInt8] = []

    init(connectionID: UInt64, origin: LinkOrigin, core: PeerLinkCore, transport: TCPTransport, eventLoop: any EventLoop) {
        self.connectionID = connectionID
        self.eventLoop = eventLoop
        self.origin = origin
        self.core = core
        self.transport = transport
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { begin() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        begin()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard !handshakeStepInFlight else {
            heldBytes += buffer.readableBytesView
            if heldBytes.count > Self.maximumHeldBytes {
                perform(core.close(.local("sent \(heldBytes.count) bytes before its handshake was answered")))
            }
            return
        }
        receive(Array(buffer.readableBytesView))
    }

    /// Handshake acts go off the event loop: the responder's act one and the initiator's
    /// act two each need an ECDH with the node key, and the key lives in keyd, a bus round
    /// trip away (a network one when the services run on several hosts). The loop serves
    /// every other link meanwhile. Once the handshake is done, reads stay on the loop.
    private func receive(_ bytes: [UInt8]) {
        switch core.stage {
        case .awaitingActOne, .awaitingActTwo, .awaitingActThree:
            handshakeStepInFlight = true
            let core = self.core
            // NIO's pool of threads for blocking work: its own threads, so a busy dispatch
            // or concurrency pool cannot delay a handshake (nor a handshake them).
            NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { () -> (PeerLinkCore, [PeerLinkCore.Action]) in
                var stepping = core
                let actions = stepping.receive(bytes, now: .now)
                return (stepping, actions)
            }.assumeIsolated().whenComplete { [self] result in
                switch result {
                case let .success((stepped, actions)):
                    handshakeStepFinished(stepped, actions)
                case let .failure(error):
                    handshakeStepInFlight = false
                    guard !isClosing, !hasReportedClose else { return }
                    perform(self.core.close(.local("the handshake could not be run: \(error)")))
                }
            }
        default:
            perform(core.receive(bytes, now: .now))
        }
    }

    private func handshakeStepFinished(_ steppedCore: PeerLinkCore, _ actions: [PeerLinkCore.Action]) {
        handshakeStepInFlight = false
        // Closed meanwhile (by us, the peer or an error): that outcome stands.
        guard context != nil, !isClosing, !hasReportedClose else {
            heldBytes = []
            return
        }
        core = steppedCore
        perform(actions)
        if !heldBytes.isEmpty, !isClosing {
            let held = heldBytes
            heldBytes = []
            receive(held)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        core.outboundCongested = !writable
        if writable, isReady, let nodeID = core.remoteNodeID {
            transport.linkBecameWritable(connectionID: connectionID, nodeID: nodeID)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        perform(core.close(.io(describe(error))))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let batch = unwrapOutboundIn(data)
        var frames: [UInt8] = []
        do {
            try core.encrypt(batch.messages, appendingTo: &frames)
        } catch {
            promise?.fail(error)
            return
        }
        context.write(wrapOutboundOut(ByteBuffer(bytes: frames)), promise: promise)
    }

    // MARK: - Requests from the transport (on this event loop)

    func ping(pongBytes: UInt16) -> EventLoopFuture<Duration> {
        guard let context else { return transportFailure(.sessionNotReady(reason: "the link is closed")) }
        do {
            let (token, actions) = try core.ping(pongBytes: pongBytes, now: .now)
            let promise = context.eventLoop.makePromise(of: Duration.self)
            pendingPings[token] = promise
            perform(actions)
            return promise.futureResult
        } catch {
            return transportFailure(error)
        }
    }

    func close(_ reason: LinkFailure) {
        perform(core.close(reason))
    }

    // MARK: - Carrying out the core's actions

    private func begin() {
        guard core.stage == .notStarted else { return }
        perform(core.start())
    }

    private func perform(_ actions: [PeerLinkCore.Action]) {
        guard let context else { return }
        var lastWrite: EventLoopFuture<Void>?
        for action in actions {
            switch action {
            case let .write(bytes):
                let promise = context.eventLoop.makePromise(of: Void.self)
                context.write(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: promise)
                lastWrite = promise.futureResult
            case let .ready(remote):
                guard !isClosing else { continue }
                isReady = true
                let accepted = transport.linkReady(
                    connectionID: connectionID, channel: context.channel,
                    handler: NIOLoopBound(self, eventLoop: context.eventLoop),
                    remote: remote, frameFormat: core.frameFormat, origin: origin)
                if case let .rejected(reason) = accepted {
                    isReady = false
                    if lastWrite != nil { context.flush() }
                    perform(core.close(.local(reason)))
                    return
                }
            case let .deliver(message):
                guard !isClosing, let nodeID = core.remoteNodeID else { continue }
                transport.deliver(message, from: nodeID)
            case let .pongReceived(token, roundTrip):
                pendingPings.removeValue(forKey: token)?.succeed(roundTrip)
            case .close:
                isClosing = true
                closeAfter(lastWrite, context: context)
                return
            }
        }
        if lastWrite != nil { context.flush() }
        armTimer(context: context)
    }

    /// Lets the last write (usually a `warning`) reach the socket before closing, but
    /// no longer than the grace period: a peer that does not read cannot hold us.
    private func closeAfter(_ lastWrite: EventLoopFuture<Void>?, context: ChannelHandlerContext) {
        cancelTimer()
        guard let lastWrite else {
            context.close(promise: nil)
            return
        }
        context.flush()
        let loop = context.eventLoop.assumeIsolated()
        let grace = loop.scheduleTask(in: Self.closeGracePeriod) { context.close(promise: nil) }
        lastWrite.assumeIsolated().whenComplete { _ in
            grace.cancel()
            context.close(promise: nil)
        }
    }

    private func armTimer(context: ChannelHandlerContext) {
        guard let deadline = core.nextDeadline else {
            cancelTimer()
            return
        }
        // A later deadline keeps the armed timer: it fires, finds nothing due, and re-arms.
        // That avoids rescheduling on every read just because the idle deadline moved.
        if let timerDeadline, timer != nil, timerDeadline <= deadline { return }
        cancelTimer()
        let delay = max(deadline - ContinuousClock.now, .zero)
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) { [self] in
            timer = nil
            timerDeadline = nil
            // The step in flight brings the core back and re-arms; keyd's own timeout
            // bounds how long that takes.
            guard !handshakeStepInFlight else { return }
            perform(core.timerFired(now: .now))
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        timerDeadline = nil
    }

    /// Reports the closed link exactly once, whether it ended by our close, the peer's
    /// EOF or a socket error.
    private func finish() {
        guard !hasReportedClose, core.stage != .notStarted else { return }
        hasReportedClose = true
        isClosing = true
        cancelTimer()
        let reason = core.linkClosed()
        let nodeID = core.remoteNodeID
        for promise in pendingPings.values {
            promise.fail(nodeID.map { TransportError.connectionClosed($0, reason: reason.description) }
                ?? TransportError.sessionNotReady(reason: reason.description))
        }
        pendingPings.removeAll()
        transport.linkClosed(connectionID: connectionID, nodeID: nodeID, origin: origin, reason: reason, wasReady: isReady)
    }

    private func transportFailure<T>(_ error: TransportError) -> EventLoopFuture<T> {
        eventLoop.makeFailedFuture(error)
    }
}
