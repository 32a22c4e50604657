#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNPCrypto
import LNPSession
import LNPTransport
import LNPTransportTCP
import LNPTransportTor
import LNPWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The dialer against a real offline tor, a closed port, and a scripted SOCKS5 server
/// for the answers tor cannot be made to give on demand.
@Suite struct TorSOCKSDialerTests {
    /// A well-formed onion nobody serves. tor checks that the key is a valid ed25519
    /// point: this one is the curve's base point.
    static let unusedOnion = OnionServiceAddress.name(forPublicKey: [0x58] + Array(repeating: 0x66, count: 31))

    // MARK: - A real tor

    /// One offline tor for three answers: a malformed onion (tor's 0xF6, at once), an
    /// onion that cannot be reached with our timeout shorter than tor's (ours), and with
    /// ours longer than tor's `SocksTimeout` (tor's 0x06).
    @Test func realOfflineTorAnswersInvalidOnionAtOnceAndUnreachableOnionWithinTheTimeouts() async throws {
        let launched = ContinuousClock.now
        try await withTor(offlineTorLines + ["SocksTimeout 2"]) { tor in
            print("real tor: SocksPort open \(ContinuousClock.now - launched) after launch")
            let socksPort = try #require(tor.socksPort)
            try await withGroup { group in
                let proxy = try SocketAddress(ipAddress: "127.0.0.1", port: socksPort)

                // 56 base32 characters with a wrong checksum: tor refuses the name itself.
                let malformed = Host.onion(String(repeating: "a", count: 56))
                var started = ContinuousClock.now
                let invalid = try await dialFailure(TorSOCKSDialer(proxy: proxy, timeout: .seconds(5)), malformed, group: group)
                let invalidElapsed = ContinuousClock.now - started
                #expect(invalid == "tor's SOCKS port 127.0.0.1:\(socksPort) could not connect: the onion address is invalid"
                    + " (bad length, checksum or version) (reply 0xF6)")
                // The reply kind (0xF6, not our timeout) proves "at once"; the bound only
                // catches a hang. Under the full parallel suite this task's continuation has
                // been seen to resume 12 s late, so the bound is as generous as the other
                // Tor tests'; the e2e tests hold real processes to the strict bounds.
                #expect(invalidElapsed < .seconds(45))

                started = ContinuousClock.now
                let ours = try await dialFailure(TorSOCKSDialer(proxy: proxy, timeout: .milliseconds(700)),
                                                 .onion(Self.unusedOnion), group: group)
                let oursElapsed = ContinuousClock.now - started
                #expect(ours == "tor's SOCKS port 127.0.0.1:\(socksPort) did not complete the connection within 0.7 seconds"
                    + " (the dialer's own SOCKS timeout)")
                #expect(oursElapsed >= .milliseconds(700) && oursElapsed < .seconds(45))

                started = ContinuousClock.now
                let tors = try await dialFailure(TorSOCKSDialer(proxy: proxy, timeout: .seconds(10)),
                                                 .onion(Self.unusedOnion), group: group)
                let torsElapsed = ContinuousClock.now - started
                #expect(tors.contains("could not connect: the connection timed out") && tors.hasSuffix("(reply 0x06)"), "\(tors)")
                #expect(torsElapsed < .seconds(45))
                print("real tor: 0xF6 after \(invalidElapsed), our 0.7 s timeout after \(oursElapsed), SocksTimeout 2 after \(torsElapsed)")
            }
        }
    }

    @Test func aClosedSOCKSPortAsksWhetherTorIsRunningAtOnce() async throws {
        // A socket bound but not listening holds its port (no other test can take it)
        // and refuses connections.
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(socketFD >= 0)
        defer { close(socketFD) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, length) == 0 && getsockname(socketFD, $0, &length) == 0 }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))

        try await withGroup { group in
            let started = ContinuousClock.now
            let dialer = TorSOCKSDialer(proxy: try SocketAddress(ipAddress: "127.0.0.1", port: port))
            let reason = try await dialFailure(dialer, .onion(Self.unusedOnion), group: group)
            #expect(reason == "tor's SOCKS port 127.0.0.1:\(port) refused the connection — is tor running?")
            // "Refused" (not our 60 s timeout) is the proof of "at once"; the bound only rules
            // out a hang: a fully loaded parallel run has delayed continuations ~30 s here.
            #expect(ContinuousClock.now - started < .seconds(45))
        }
    }

    // MARK: - Faults from a scripted server

    @Test func faultsTorCannotBeMadeToProduceBecomeTheirSentences() async throws {
        var rejectsPassword = ScriptedSOCKS5Server.Script()
        rejectsPassword.authenticationStatus = 0x01
        var introductionFails = ScriptedSOCKS5Server.Script()
        introductionFails.reply = [5, 0xF2, 0, 1, 0, 0, 0, 0, 0, 0]
        var speaksHTTP = ScriptedSOCKS5Server.Script()
        speaksHTTP.rawFirstAnswer = Array("HTTP/1.0 501 Tor is not an HTTP Proxy\r\n".utf8)
        var refusesMethods = ScriptedSOCKS5Server.Script()
        refusesMethods.method = 0xFF
        var skipsAuthentication = ScriptedSOCKS5Server.Script()
        skipsAuthentication.method = 0x00
        var neverAnswers = ScriptedSOCKS5Server.Script()
        neverAnswers.silentAfterRequest = true

        let cases: [(ScriptedSOCKS5Server.Script, String)] = [
            (rejectsPassword, "rejected our username and password (status 0x01)"),
            (introductionFails, "could not connect: every introduction to the onion service failed: the service is probably offline (reply 0xF2)"),
            (speaksHTTP, "answered something that is not SOCKS5: its method selection starts with version 72, not 5"),
            (refusesMethods, "refused all the authentication methods we offered (0x02)"),
            (skipsAuthentication, "chose authentication method 0x00, which we did not offer (we offered 0x02)"),
            (neverAnswers, "did not complete the connection within 0.5 seconds (the dialer's own SOCKS timeout)"),
        ]
        try await withGroup { group in
            for (script, ending) in cases {
                let server = try await ScriptedSOCKS5Server.start(script, group: group)
                let dialer = TorSOCKSDialer(proxy: try SocketAddress(ipAddress: "127.0.0.1", port: server.port), timeout: .milliseconds(500))
                let reason = try await dialFailure(dialer, .onion(Self.unusedOnion), group: group)
                #expect(reason == "tor's SOCKS port 127.0.0.1:\(server.port) " + ending)
                await server.stop()
            }
        }
    }

    /// Each destination its own password (so its own circuit under IsolateSOCKSAuth), the
    /// same destination the same one, each dialer its own username; names go to the proxy
    /// as names (address type 3), never resolved here.
    @Test func everyDestinationGetsItsOwnCredentialsAndNamesAreSentAsNames() async throws {
        var notFound = ScriptedSOCKS5Server.Script()
        notFound.reply = [5, 0xF0, 0, 1, 0, 0, 0, 0, 0, 0]
        try await withGroup { group in
            let server = try await ScriptedSOCKS5Server.start(notFound, group: group)
            let proxy = try SocketAddress(ipAddress: "127.0.0.1", port: server.port)
            let first = TorSOCKSDialer(proxy: proxy)
            let second = TorSOCKSDialer(proxy: proxy)
            let other = OnionServiceAddress.name(forPublicKey: Array(repeating: 43, count: 32))
            for (dialer, host, port) in [(first, Host.onion(Self.unusedOnion), UInt16(9735)), (first, .onion(Self.unusedOnion), 9735),
                                         (first, .onion(other), 9735), (first, .onion(Self.unusedOnion), 9736),
                                         (first, .dns("node.example"), 9735), (second, .onion(Self.unusedOnion), 9735)] {
                let reason = try await dialFailure(dialer, host, port: port, group: group)
                #expect(reason.hasSuffix("(reply 0xF0)"))
            }
            let requests = server.received
            try #require(requests.count == 6)
            #expect(requests.allSatisfy { $0.methods == [0x02] && $0.addressType == 3 })
            #expect(requests[0].address == [62] + Array((Self.unusedOnion + ".onion").utf8) && requests[0].port == 9735)
            #expect(requests[4].address == [12] + Array("node.example".utf8))
            #expect(requests[0].password == requests[1].password && requests[0].username == requests[1].username)
            #expect(Set(requests[0...4].map(\.password)).count == 4)
            #expect(Set(requests[0...4].map(\.username)).count == 1)
            #expect(requests[5].username != requests[0].username && requests[5].password == requests[0].password)
            #expect(first.isolationCredentials(host: .onion(other), port: 9735).password == Array(requests[2].password!.utf8))
        }
    }

    /// Bytes that arrive right behind the reply reach the handler `initialize` installed,
    /// before anything later, and the SOCKS handler is gone from the pipeline.
    @Test func bytesBehindTheReplyReachTheInstalledHandlerInOrder() async throws {
        var script = ScriptedSOCKS5Server.Script()
        script.reply = [5, 0, 0, 3, 9] + Array("relay.tor".utf8) + [0, 1]
        script.afterReply = Array("first bytes of the peer".utf8)
        script.replyOneByteAtATime = true
        try await withGroup { group in
            let server = try await ScriptedSOCKS5Server.start(script, group: group)
            let dialer = TorSOCKSDialer(proxy: try SocketAddress(ipAddress: "127.0.0.1", port: server.port))
            let collector = Collector()
            let channel = try await dialer.dial(host: .onion(Self.unusedOnion), port: 1, on: group.next(), connectTimeout: .seconds(5)) { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }.get()
            let deadline = ContinuousClock.now + .seconds(5)
            while collector.bytes.count < script.afterReply.count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(collector.bytes == script.afterReply)
            let pipeline = try await channel.eventLoop.submit { channel.pipeline.debugDescription }.get()
            #expect(pipeline.contains("Collector") && !pipeline.contains("SOCKS5ClientHandler"), "\(pipeline)")
            try await channel.close()
            await server.stop()
        }
    }

    // MARK: - BOLT-8 sessions through the dialer

    /// A real session between two transports through the proxy, the reply arriving a byte
    /// at a time; the proxy saw the onion name, not an IP.
    @Test func aBOLT8SessionRunsThroughTheProxy() async throws {
        var script = ScriptedSOCKS5Server.Script()
        script.replyOneByteAtATime = true
        try await withRelayedPair(script) { alice, bob, server, bobOnion in
            let info = try await alice.transport.connect(to: bobOnion, persistent: false)
            #expect(info.nodeID == bob.key.publicKey && info.address == bobOnion.description)
            #expect(server.received.first?.address == [62] + Array((Self.unusedOnion + ".onion").utf8))

            try await alice.transport.sendAndFlush([[0x80, 0x01, 1, 2, 3]], to: bob.key.publicKey)
            try await waitFor { bob.messages.withLockedValue { $0 } == [[0x80, 0x01, 1, 2, 3]] }
            try await waitFor { !bob.transport.peers().isEmpty }
            try await bob.transport.sendAndFlush([[0x80, 0x03, 9]], to: alice.key.publicKey)
            try await waitFor { alice.messages.withLockedValue { $0 } == [[0x80, 0x03, 9]] }
            let roundTrip = try await alice.transport.ping(bob.key.publicKey, pongBytes: 10)
            #expect(roundTrip > .zero)
        }
    }

    /// The same relay with 50 bytes right behind the reply: had they been dropped, the
    /// handshake would succeed; they reach the session as the start of act two and
    /// break it, so they were handed over.
    @Test func bytesBehindTheReplyReachTheBOLT8Session() async throws {
        var script = ScriptedSOCKS5Server.Script()
        script.afterReply = Array(repeating: 0x01, count: 50)
        try await withRelayedPair(script) { alice, _, _, bobOnion in
            await #expect {
                try await alice.transport.connect(to: bobOnion, persistent: false)
            } throws: { error in
                guard case let .handshakeFailed(address, reason)? = error as? TransportError else { return false }
                return address == bobOnion.description && reason.contains("version")
            }
        }
    }

    // MARK: - Helpers

    /// Dials through `dialer` and returns the reason of the `connectFailed` it must fail with.
    func dialFailure(_ dialer: TorSOCKSDialer, _ host: Host, port: UInt16 = 9735, group: any EventLoopGroup) async throws -> String {
        let initialized = NIOLockedValueBox(false)
        do {
            let channel = try await dialer.dial(host: host, port: port, on: group.next(), connectTimeout: .seconds(5)) { channel in
                initialized.withLockedValue { $0 = true }
                return channel.eventLoop.makeSucceededVoidFuture()
            }.get()
            try? await channel.close()
            Issue.record("dialling \(host) through the proxy succeeded")
            return ""
        } catch let TransportError.connectFailed(address, reason) {
            #expect(address == host.description(port: port))
            #expect(!initialized.withLockedValue { $0 }, "initialize ran for a failed negotiation")
            return reason
        }
    }

    struct Transport {
        let key: PrivateKey
        let transport: TCPTransport
        let port: Int
        let messages: NIOLockedValueBox<[[UInt8]]>
    }

    func startTransport(group: any EventLoopGroup, dialer: (any TCPDialer)? = nil) async throws -> Transport {
        let key = PrivateKey.generate()
        var configuration = TCPTransportConfiguration(
            localKey: key, localInit: InitMessage(features: FeatureVector(features: [.varOnionOptin])),
            listen: dialer == nil ? [try ListenAddress(parsing: "127.0.0.1:0")] : [])
        if let dialer { configuration.dialer = dialer }
        var logger = Logger(label: "lnp.transport.tor.test")
        logger.logLevel = .warning
        configuration.logger = logger
        let messages = NIOLockedValueBox<[[UInt8]]>([])
        let transport = TCPTransport(configuration: configuration, group: group) { event in
            if case let .message(_, bytes) = event { messages.withLockedValue { $0.append(bytes) } }
        }
        let bound = try await transport.start()
        return Transport(key: key, transport: transport, port: bound.first?.port ?? 0, messages: messages)
    }

    /// Bob listens on loopback, the scripted proxy relays to him, Alice dials through the
    /// proxy an onion address carrying Bob's node id; all are stopped afterwards.
    func withRelayedPair(
        _ script: ScriptedSOCKS5Server.Script,
        _ body: (_ alice: Transport, _ bob: Transport, _ server: ScriptedSOCKS5Server, _ bobOnion: PeerAddress) async throws -> Void
    ) async throws {
        try await withGroup { group in
            let bob = try await startTransport(group: group)
            var script = script
            script.relayPort = bob.port
            let server = try await ScriptedSOCKS5Server.start(script, group: group)
            let alice = try await startTransport(group: group, dialer: TorSOCKSDialer(
                proxy: try SocketAddress(ipAddress: "127.0.0.1", port: server.port)))
            let bobOnion = PeerAddress(nodeID: bob.key.publicKey, location: .tcp(host: .onion(Self.unusedOnion), port: 9735))
            do {
                try await body(alice, bob, server, bobOnion)
            } catch {
                await alice.transport.shutdown()
                await bob.transport.shutdown()
                await server.stop()
                throw error
            }
            await alice.transport.shutdown()
            await bob.transport.shutdown()
            await server.stop()
        }
    }

    func waitFor(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("a condition did not hold within 10 s")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func withGroup(_ body: (MultiThreadedEventLoopGroup) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await body(group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }
}

/// Collects what reaches the end of the pipeline.
final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let received = NIOLockedValueBox<[UInt8]>([])
    var bytes: [UInt8] { received.withLockedValue { $0 } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.withLockedValue { $0 += unwrapInboundIn(data).readableBytesView }
    }
}
