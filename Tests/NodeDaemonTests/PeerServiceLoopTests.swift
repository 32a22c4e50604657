import Foundation
import LNPBus
import LNPCrypto
import LNPRPC
import LNPStore
import LNPTransport
import LNPTransportTCP
import LNPTestSupport
import LNPTransportUDP
import LNPWire
import Logging
import NIOPosix
import PeerDaemon
import Testing

/// peerd's links and the node key: the key lives in keyd, a bus round trip away (a network
/// one when the services run on several hosts), and a handshake waits for it.
@Suite struct PeerServiceLoopTests {
    /// A UDP handshake waits for the node key on the UDP socket's event loop; TCP (and
    /// Tor) links run on another loop, so they keep answering meanwhile.
    @Test func aUDPHandshakeWaitingForTheNodeKeyDoesNotStallTCPLinks() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerd-loop-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var logger = Logger(label: "lnp.peerd.test")
        logger.logLevel = .notice

        let context = try BusContext()
        let layout = BusLayout(transport: .inproc(namespace: "peerd-loop-\(UInt32.random(in: 0...UInt32.max))"))
        let nodeKey = SlowKeyAgreement(key: PrivateKey.generate())
        let store = try MessageStore(path: directory + "/node.sqlite")
        let peerd = try PeerService(
            context: context, layout: layout,
            configuration: .init(listen: [try ListenAddress(parsing: "127.0.0.1:0"), try ListenAddress(parsing: "udp://127.0.0.1:0")],
                                 connect: [], dataDirectory: directory),
            keyAgreement: nodeKey, store: store, logger: logger)
        try await peerd.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var tcpPeer: TCPTransport?
        var udpPeer: UDPTransport?
        do {
            let client = try BusClient(context: context, layout: layout, service: .peerd)
            defer { client.close() }
            let bound = try StringList.decode(try await client.request(BusMessage(method: PeerMethod.listenAddresses.rawValue, payload: []),
                                                                       timeout: .seconds(5))).values
            let tcpAddress = try #require(bound.first { !$0.contains("://") })
            let udpAddress = try #require(bound.first { $0.hasPrefix("udp://") })
            let node = nodeKey.publicKey.hex

            let tcp = TCPTransport(configuration: TCPTransportConfiguration(localKey: PrivateKey.generate(),
                                                                            localInit: InitMessage(features: PeerService.localFeatures)),
                                   group: group) { _ in }
            tcpPeer = tcp
            _ = try await tcp.connect(to: try PeerAddress(parsing: "\(node)@\(tcpAddress)"), persistent: false)

            nodeKey.setDelay(.seconds(3))
            let udp = UDPTransport(configuration: UDPTransportConfiguration(localKey: PrivateKey.generate(),
                                                                            localInit: InitMessage(features: PeerService.localFeatures)),
                                   group: group) { _ in }
            udpPeer = udp
            _ = try await udp.start()
            let udpConnects = Task { try await udp.connect(to: try PeerAddress(parsing: "udp://\(node)@\(udpAddress.dropFirst("udp://".count))"),
                                                           persistent: false) }
            let deadline = ContinuousClock.now + .seconds(10)
            while nodeKey.waiting == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            #expect(nodeKey.waiting == 1, "peerd's UDP handshake never asked for the node key")
            let start = ContinuousClock.now
            _ = try await tcp.ping(nodeKey.publicKey, pongBytes: 8)
            let pingTook = ContinuousClock.now - start
            #expect(pingTook < .seconds(1), "a TCP ping waited \(pingTook) for a UDP handshake")
            #expect(nodeKey.waiting == 1, "the UDP handshake was still waiting for the node key during the ping")
            nodeKey.setDelay(.zero)
            #expect(try await udpConnects.value.nodeID == nodeKey.publicKey)
        } catch {
            Issue.record(error)
        }
        await tcpPeer?.shutdown()
        await udpPeer?.shutdown()
        await peerd.close()
        try await group.shutdownGracefully()
        context.close()
    }
}
