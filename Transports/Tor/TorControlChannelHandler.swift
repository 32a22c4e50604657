import NIOConcurrencyHelpers
import NIOCore

/// One command on its way to tor: the line to send (without CRLF), a name for errors
/// that never contains secrets (ADD_ONION carries the service key, AUTHENTICATE the
/// password), and where the reply goes.
struct TorControlRequest: Sendable {
    let line: String
    let name: String
    let reply: EventLoopPromise<TorControlReply>
}

/// Why a control connection ended, shared by the handler and `TorController`: NIO
/// removes the handler when the channel closes, and commands sent later must still
/// learn the real reason rather than a bare "closed".
final class TorControlConnectionEnd: Sendable {
    private enum Reason: Sendable {
        case closedByController
        case failed(TorControlError)
    }

    private let reason = NIOLockedValueBox<Reason?>(nil)

    func closedByController() { reason.withLockedValue { if $0 == nil { $0 = .closedByController } } }
    func failed(_ error: TorControlError) { reason.withLockedValue { if $0 == nil { $0 = .failed(error) } } }

    /// The error for `command` once the connection has ended.
    func error(for command: String) -> TorControlError {
        switch reason.withLockedValue({ $0 }) {
        case .closedByController: .closedByController(command: command)
        case let .failed(error): error
        case nil: .connectionClosed(command: command)
        }
    }

    var hasEnded: Bool { reason.withLockedValue { $0 != nil } }
}

/// The NIO side of a control connection: frames bytes with `TorControlReplyParser`, sends
/// one command at a time and matches each reply to the command in flight (tor answers
/// strictly in order), and passes asynchronous events on. Everything here runs on the
/// channel's event loop.
final class TorControlChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = TorControlRequest
    typealias OutboundOut = ByteBuffer

    private var parser: TorControlReplyParser
    private var waiting = CircularBuffer<TorControlRequest>()
    private var inFlight: TorControlRequest?
    private var isClosed = false
    private let events: AsyncStream<TorEvent>.Continuation
    private let end: TorControlConnectionEnd

    init(limits: TorControlReplyParser.Limits, events: AsyncStream<TorEvent>.Continuation, end: TorControlConnectionEnd) {
        self.parser = TorControlReplyParser(limits: limits)
        self.events = events
        self.end = end
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        // The handler owns the request from here: its reply promise is always completed,
        // so the write itself counts as done.
        promise?.succeed()
        guard !isClosed else {
            request.reply.fail(end.error(for: request.name))
            return
        }
        waiting.append(request)
        sendNextIfIdle(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        do {
            try parser.feed(buffer.readableBytesView)
        } catch {
            failAll(with: .protocolViolation(error))
            context.close(promise: nil)
            return
        }
        while let message = parser.next() {
            switch message {
            case let .event(reply):
                events.yield(TorEvent(reply))
            case let .reply(reply):
                guard let request = inFlight else {
                    failAll(with: .protocolViolation(.unsolicitedReply(status: reply.status)))
                    context.close(promise: nil)
                    return
                }
                inFlight = nil
                request.reply.succeed(reply)
                sendNextIfIdle(context: context)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        if let request = inFlight {
            inFlight = nil
            request.reply.fail(end.error(for: request.name))
        }
        while let request = waiting.popFirst() { request.reply.fail(end.error(for: request.name)) }
        events.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Read errors (ECONNRESET, …) end the connection; channelInactive fails what waits.
        context.close(promise: nil)
    }

    private func sendNextIfIdle(context: ChannelHandlerContext) {
        guard inFlight == nil, let request = waiting.popFirst() else { return }
        inFlight = request
        var buffer = context.channel.allocator.buffer(capacity: request.line.utf8.count + 2)
        buffer.writeString(request.line)
        buffer.writeString("\r\n")
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func failAll(with error: TorControlError) {
        isClosed = true
        end.failed(error)
        if let request = inFlight {
            inFlight = nil
            request.reply.fail(error)
        }
        while let request = waiting.popFirst() { request.reply.fail(error) }
    }
}
