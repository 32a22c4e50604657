import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A SOCKS5 server on loopback that answers as its script says: the fault injector for
/// what a real tor cannot be made to produce on demand (a rejected password, 0xF2,
/// garbage, bytes right behind the reply) and, relaying to a real listener, the success
/// path. It records every request it parsed.
final class ScriptedSOCKS5Server: Sendable {
    struct Script: Sendable {
        /// The method to choose; nil chooses the first one the client offered.
        var method: UInt8?
        /// RFC 1929 status for the username and password.
        var authenticationStatus: UInt8 = 0x00
        /// Sent instead of the method selection, before anything else (garbage tests).
        var rawFirstAnswer: [UInt8]?
        /// The answer to CONNECT; the default is success with IPv4 0.0.0.0:0.
        var reply: [UInt8] = [0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]
        /// Sent in the same write as the reply.
        var afterReply: [UInt8] = []
        /// Write the reply one byte per write (and flush), to split it across reads.
        var replyOneByteAtATime = false
        /// After a successful reply, pipe the stream to 127.0.0.1:`relayPort`.
        var relayPort: Int?
        /// Do not answer CONNECT at all (timeouts).
        var silentAfterRequest = false
    }

    struct Request: Hashable, Sendable {
        var methods: [UInt8] = []
        var username: String?
        var password: String?
        var addressType: UInt8 = 0
        var address: [UInt8] = []
        var port: UInt16 = 0
    }

    let channel: any Channel
    private let requests: NIOLockedValueBox<[Request]>
    var port: Int { channel.localAddress?.port ?? 0 }
    var received: [Request] { requests.withLockedValue { $0 } }

    private init(channel: any Channel, requests: NIOLockedValueBox<[Request]>) {
        self.channel = channel
        self.requests = requests
    }

    static func start(_ script: Script, group: any EventLoopGroup) async throws -> ScriptedSOCKS5Server {
        let requests = NIOLockedValueBox<[Request]>([])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(
                        Session(script: script, group: group, record: { request in requests.withLockedValue { $0.append(request) } }))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return ScriptedSOCKS5Server(channel: channel, requests: requests)
    }

    func stop() async {
        try? await channel.close()
    }

    /// One client connection: parses greeting, RFC 1929 request and CONNECT request as
    /// they complete, answers per the script, then relays or idles.
    private final class Session: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        enum Stage { case greeting, authentication, request, relaying(any Channel), done }

        let script: Script
        let group: any EventLoopGroup
        let record: @Sendable (Request) -> Void
        var stage = Stage.greeting
        var buffer: [UInt8] = []
        var request = Request()

        init(script: Script, group: any EventLoopGroup, record: @escaping @Sendable (Request) -> Void) {
            self.script = script
            self.group = group
            self.record = record
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data).readableBytesView
            if case let .relaying(upstream) = stage {
                upstream.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
                return
            }
            buffer += bytes
            while step(context: context) {}
        }

        func channelInactive(context: ChannelHandlerContext) {
            if case let .relaying(upstream) = stage { upstream.close(promise: nil) }
        }

        /// Handles one complete message from the front of `buffer`; false when incomplete.
        private func step(context: ChannelHandlerContext) -> Bool {
            switch stage {
            case .greeting:
                guard buffer.count >= 2, buffer.count >= 2 + Int(buffer[1]) else { return false }
                request.methods = Array(buffer[2..<(2 + Int(buffer[1]))])
                buffer.removeFirst(2 + Int(buffer[1]))
                if let raw = script.rawFirstAnswer {
                    send(raw, context: context)
                    stage = .done
                    return false
                }
                let method = script.method ?? request.methods.first ?? 0xFF
                send([0x05, method], context: context)
                stage = method == 0x02 ? .authentication : .request
                if method == 0xFF { stage = .done }
                return true
            case .authentication:
                guard buffer.count >= 2 else { return false }
                let userLength = Int(buffer[1])
                guard buffer.count >= 3 + userLength else { return false }
                let passwordLength = Int(buffer[2 + userLength])
                guard buffer.count >= 3 + userLength + passwordLength else { return false }
                request.username = String(decoding: buffer[2..<(2 + userLength)], as: UTF8.self)
                request.password = String(decoding: buffer[(3 + userLength)..<(3 + userLength + passwordLength)], as: UTF8.self)
                buffer.removeFirst(3 + userLength + passwordLength)
                send([0x01, script.authenticationStatus], context: context)
                stage = script.authenticationStatus == 0 ? .request : .done
                return true
            case .request:
                guard buffer.count >= 5 else { return false }
                let addressLength: Int
                switch buffer[3] {
                case 0x01: addressLength = 4
                case 0x04: addressLength = 16
                default: addressLength = 1 + Int(buffer[4])
                }
                guard buffer.count >= 4 + addressLength + 2 else { return false }
                request.addressType = buffer[3]
                request.address = Array(buffer[4..<(4 + addressLength)])
                request.port = UInt16(buffer[4 + addressLength]) << 8 | UInt16(buffer[5 + addressLength])
                buffer.removeFirst(4 + addressLength + 2)
                record(request)
                stage = .done
                answerConnect(context: context)
                return false
            case .relaying, .done:
                return false
            }
        }

        private func answerConnect(context: ChannelHandlerContext) {
            guard !script.silentAfterRequest else { return }
            guard let relayPort = script.relayPort else {
                sendReply(context: context)
                return
            }
            let client = context.channel
            ClientBootstrap(group: group)
                .channelInitializer { upstream in
                    upstream.eventLoop.makeCompletedFuture {
                        try upstream.pipeline.syncOperations.addHandler(Pipe(to: client))
                    }
                }
                .connect(host: "127.0.0.1", port: relayPort)
                .hop(to: context.eventLoop).assumeIsolated()
                .whenComplete { result in
                    switch result {
                    case let .success(upstream):
                        self.stage = .relaying(upstream)
                        self.sendReply(context: context)
                    case .failure:
                        self.send([0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0], context: context)
                    }
                }
        }

        private func sendReply(context: ChannelHandlerContext) {
            if script.replyOneByteAtATime {
                for byte in script.reply { send([byte], context: context) }
                if !script.afterReply.isEmpty { send(script.afterReply, context: context) }
            } else {
                send(script.reply + script.afterReply, context: context)
            }
        }

        private func send(_ bytes: [UInt8], context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: nil)
        }
    }

    /// Copies what the upstream listener sends to the client, and closes the client with it.
    private final class Pipe: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let client: any Channel

        init(to client: any Channel) { self.client = client }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            client.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            client.close(promise: nil)
        }
    }
}
