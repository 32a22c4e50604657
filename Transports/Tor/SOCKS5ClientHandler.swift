import NIOCore

/// Runs a `SOCKS5ClientNegotiation` on a fresh channel to the proxy, then hands the
/// channel to whoever dialled: calls `initialize` (which adds the session's handlers
/// behind this one), passes on the destination's bytes that came with the reply (and any
/// that arrived while `initialize` ran), and removes itself. `negotiated` completes once
/// the hand-over is done, or fails with a `SOCKS5Error` or the channel's error; on
/// failure the channel is closed.
final class SOCKS5ClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum Phase {
        case negotiating(SOCKS5ClientNegotiation)
        /// `initialize` is running; the destination's bytes wait here, in order.
        case handingOver(pending: [UInt8])
        /// Handed over or failed: this handler passes everything on until it is removed.
        case finished
    }

    private var phase: Phase
    private var greeted = false
    private let initialize: @Sendable (any Channel) -> EventLoopFuture<Void>
    private let negotiated: EventLoopPromise<Void>

    init(negotiation: SOCKS5ClientNegotiation, initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>,
         negotiated: EventLoopPromise<Void>) {
        self.phase = .negotiating(negotiation)
        self.initialize = initialize
        self.negotiated = negotiated
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { greet(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        greet(context: context)
        context.fireChannelActive()
    }

    private func greet(context: ChannelHandlerContext) {
        guard !greeted, case let .negotiating(negotiation) = phase else { return }
        greeted = true
        context.writeAndFlush(wrapOutbound(negotiation.greeting), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case var .negotiating(negotiation):
            let buffer = unwrapInboundIn(data)
            let action: SOCKS5ClientNegotiation.Action
            do {
                action = try negotiation.receive(buffer.readableBytesView)
            } catch {
                fail(error, context: context)
                return
            }
            phase = .negotiating(negotiation)
            switch action {
            case .awaitMoreBytes:
                break
            case let .write(bytes):
                context.writeAndFlush(wrapOutbound(bytes), promise: nil)
            case let .connected(leftover):
                handOver(leftover: leftover, context: context)
            }
        case var .handingOver(pending):
            pending += unwrapInboundIn(data).readableBytesView
            phase = .handingOver(pending: pending)
        case .finished:
            context.fireChannelRead(data)
        }
    }

    /// The order matters: the session's handlers exist (and may have written their first
    /// bytes) before they see the peer's first bytes, and nothing the peer sent is lost.
    private func handOver(leftover: [UInt8], context: ChannelHandlerContext) {
        phase = .handingOver(pending: leftover)
        initialize(context.channel).hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            guard case let .handingOver(pending) = self.phase else { return }  // failed meanwhile
            switch result {
            case .success:
                self.phase = .finished
                if !pending.isEmpty {
                    context.fireChannelRead(self.wrapInboundOut(ByteBuffer(bytes: pending)))
                    context.fireChannelReadComplete()
                }
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                self.negotiated.succeed()
            case let .failure(error):
                self.fail(error, context: context)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch phase {
        case var .negotiating(negotiation):
            fail(negotiation.receiveEndOfStream(), context: context)
        case .handingOver:
            fail(ChannelError.eof, context: context)
        case .finished:
            break
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .finished = phase {
            context.fireErrorCaught(error)
        } else {
            fail(error, context: context)
        }
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        phase = .finished
        negotiated.fail(error)
        context.close(promise: nil)
    }

    private func wrapOutbound(_ bytes: [UInt8]) -> NIOAny {
        NIOAny(ByteBuffer(bytes: bytes))
    }
}
