@testable import LNPTransportTor
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// A control port that misbehaves in ways a real tor does not: silent, hanging up in
/// the middle of a command, talking another protocol. These are the only fakes in this
/// target; they exist because the faults cannot be produced with tor itself.
final class MisbehavingControlPort: Sendable {
    enum Behaviour: Sendable {
        /// Reads everything, never answers.
        case silent
        /// Closes the connection as soon as a command arrives.
        case hangUpOnCommand
        /// Answers the first command with these bytes.
        case answer(String)
    }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let behaviour: Behaviour
        init(behaviour: Behaviour) { self.behaviour = behaviour }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch behaviour {
            case .silent:
                break
            case .hangUpOnCommand:
                context.close(promise: nil)
            case let .answer(text):
                var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
                buffer.writeString(text)
                context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            }
        }
    }

    let channel: any Channel
    var port: Int { channel.localAddress?.port ?? 0 }

    init(_ behaviour: Behaviour) async throws {
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Handler(behaviour: behaviour)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async { try? await channel.close() }
}

@Suite struct TorControlMisbehavingPortTests {
    private func withPort(_ behaviour: MisbehavingControlPort.Behaviour, commandTimeout: Duration = .seconds(1),
                          _ body: (TorController) async throws -> Void) async throws {
        let port = try await MisbehavingControlPort(behaviour)
        let controller = try await TorController.connect(host: "127.0.0.1", port: port.port,
                                                         configuration: .init(commandTimeout: commandTimeout))
        do {
            try await body(controller)
        } catch {
            await controller.close()
            await port.close()
            throw error
        }
        await controller.close()
        await port.close()
    }

    private func failure(_ body: () async throws(TorControlError) -> Void) async -> (TorControlError?, Duration) {
        let started = ContinuousClock.now
        do {
            try await body()
            return (nil, ContinuousClock.now - started)
        } catch {
            return (error, ContinuousClock.now - started)
        }
    }

    @Test func aSilentPortTimesOutEachCommand() async throws {
        try await withPort(.silent, commandTimeout: .milliseconds(300)) { controller in
            let (error, elapsed) = await failure { () async throws(TorControlError) in _ = try await controller.version() }
            #expect(error == .timedOut(command: "GETINFO", after: .milliseconds(300)))
            #expect(elapsed < .seconds(10))
            // After a timeout the reply stream has lost its place: the connection is closed,
            // and the next command says why at once.
            let (next, nextElapsed) = await failure { () async throws(TorControlError) in try await controller.setEvents([]) }
            #expect(next == .timedOut(command: "GETINFO", after: .milliseconds(300)), "\(String(describing: next))")
            #expect(nextElapsed < .seconds(10))
        }
    }

    @Test func closingTheControllerFailsTheWaitingCommand() async throws {
        try await withPort(.silent, commandTimeout: .seconds(30)) { controller in
            async let outcome = failure { () async throws(TorControlError) in _ = try await controller.version() }
            try await Task.sleep(for: .milliseconds(100))
            await controller.close()
            let (error, elapsed) = await outcome
            #expect(error == .closedByController(command: "GETINFO"))
            #expect(elapsed < .seconds(10))
        }
    }

    @Test func hangingUpFailsTheCommandAtOnce() async throws {
        try await withPort(.hangUpOnCommand, commandTimeout: .seconds(30)) { controller in
            let (error, elapsed) = await failure { () async throws(TorControlError) in try await controller.authenticate() }
            #expect(error == .connectionClosed(command: "PROTOCOLINFO"))
            #expect(error?.description == "tor closed the control connection before answering PROTOCOLINFO")
            #expect(elapsed < .seconds(10))
        }
    }

    @Test func anotherProtocolIsAProtocolViolation() async throws {
        try await withPort(.answer("HTTP/1.1 400 Bad Request\r\n\r\n")) { controller in
            let (error, _) = await failure { () async throws(TorControlError) in try await controller.authenticate() }
            #expect(error == .protocolViolation(.malformedLine("HTTP/1.1 400 Bad Request")))
            #expect(error?.description.hasSuffix("is this really tor's control port?") == true)
        }
    }

    @Test func anEndlessLineIsCutOff() async throws {
        let endless = String(repeating: "250-", count: 1) + String(repeating: "x", count: 20_000)
        try await withPort(.answer(endless)) { controller in
            let (error, elapsed) = await failure { () async throws(TorControlError) in _ = try await controller.version() }
            #expect(error == .protocolViolation(.lineTooLong(limit: 16 * 1024)))
            #expect(elapsed < .seconds(10))
        }
    }

    @Test func aReplyWithoutACommandIsAViolation() async throws {
        // Two replies to one command: the second one has no command to belong to.
        try await withPort(.answer("250 OK\r\n250 OK\r\n")) { controller in
            let (error, _) = await failure { () async throws(TorControlError) in
                try await controller.setEvents([])
                try await controller.setEvents([])
            }
            #expect(error == .protocolViolation(.unsolicitedReply(status: 250)))
        }
    }
}
