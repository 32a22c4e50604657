import LNPCrypto
import LNPSession
import LNPTestSupport
import LNPTransport
import LNPTransportUDP
import LNPWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Every event a transport reported, in order.
final class EventRecorder: Sendable {
    private let events = NIOLockedValueBox<[TransportEvent]>([])

    func record(_ event: TransportEvent) { events.withLockedValue { $0.append(event) } }
    var all: [TransportEvent] { events.withLockedValue { $0 } }

    func messages(from nodeID: PublicKey) -> [[UInt8]] {
        all.compactMap { if case let .message(from, bytes) = $0, from == nodeID { bytes } else { nil } }
    }

    func messageCount(from nodeID: PublicKey) -> Int {
        events.withLockedValue { events in
            events.reduce(0) { count, event in
                if case let .message(from, _) = event, from == nodeID { count + 1 } else { count }
            }
        }
    }

    func connections(of nodeID: PublicKey) -> [PeerInfo] {
        all.compactMap { if case let .connected(info) = $0, info.nodeID == nodeID { info } else { nil } }
    }

    func disconnections(of nodeID: PublicKey) -> [String] {
        all.compactMap { if case let .disconnected(id, reason) = $0, id == nodeID { reason } else { nil } }
    }

    func connectFailures() -> [(reason: String, willRetry: Bool)] {
        all.compactMap { if case let .connectFailed(_, reason, willRetry) = $0 { (reason, willRetry) } else { nil } }
    }
}

/// Short timers, so loss, silence and restarts play out within a test.
let fastPolicy = DatagramPolicy(handshakeRetryInterval: .milliseconds(100), handshakeRetryIntervalLimit: .milliseconds(400),
                                handshakeAttempts: 12, halfOpenTimeout: .seconds(5), keepaliveInterval: .milliseconds(200),
                                deadPeerTimeout: .milliseconds(1500))

/// A UDP transport with its key, its recorder and its listening port.
struct Node {
    let key: PrivateKey
    let transport: UDPTransport
    let events: EventRecorder
    let port: Int

    var nodeID: PublicKey { key.publicKey }

    var address: PeerAddress { try! PeerAddress(parsing: "udp://\(key.publicKey.hex)@127.0.0.1:\(port)") }

    static let features = FeatureVector(features: [.varOnionOptin, .paymentSecret])

    static func start(
        key: PrivateKey = .generate(), port: Int = 0, group: any EventLoopGroup, features: FeatureVector = Node.features,
        _ configure: (inout UDPTransportConfiguration) -> Void = { _ in }
    ) async throws -> Node {
        var configuration = UDPTransportConfiguration(
            localKey: key, localInit: InitMessage(features: features),
            listen: [try ListenAddress(parsing: "udp://127.0.0.1:\(port)")])
        configuration.datagramPolicy = fastPolicy
        configuration.initRetryInterval = .milliseconds(100)
        configuration.reconnectBackoff = (.milliseconds(50), .milliseconds(400))
        configuration.logger = testLogger
        configure(&configuration)
        let events = EventRecorder()
        let transport = UDPTransport(configuration: configuration, group: group) { events.record($0) }
        let bound = try await transport.start()
        return Node(key: key, transport: transport, events: events, port: bound.first?.port ?? 0)
    }
}

let testLogger: Logger = {
    var logger = Logger(label: "lnp.transport.udp.test")
    logger.logLevel = .notice
    return logger
}()

/// Runs `body` with a two-thread event loop group and the given nodes shut down afterwards,
/// also when it fails.
func withEventLoopGroup<R>(_ body: (MultiThreadedEventLoopGroup) async throws -> R) async throws -> R {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    do {
        let result = try await body(group)
        try await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
}

/// Shuts the transports down whatever `body` does.
func withNodes<R>(_ nodes: [Node], _ body: () async throws -> R) async throws -> R {
    do {
        let result = try await body()
        for node in nodes { await node.transport.shutdown() }
        return result
    } catch {
        for node in nodes { await node.transport.shutdown() }
        throw error
    }
}

/// `[type][u32 sequence][padding of the sequence's low byte]`: its content says whether it is intact.
func customMessage(_ sequence: Int, type: UInt16 = 32769, padding: Int = 0) -> [UInt8] {
    var bytes = [UInt8(type >> 8), UInt8(type & 0xff)]
    withUnsafeBytes(of: UInt32(sequence).bigEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: repeatElement(UInt8(sequence & 0xff), count: padding))
    return bytes
}

/// The sequence number of an intact `customMessage`, or nil when it was altered.
func sequence(of message: [UInt8], padding: Int) -> Int? {
    guard message.count == 6 + padding, message[0] == 0x80, message[1] == 0x01 else { return nil }
    let sequence = message[2..<6].reduce(0) { $0 << 8 | Int($1) }
    guard message[6...].allSatisfy({ $0 == UInt8(sequence & 0xff) }) else { return nil }
    return sequence
}

/// Connects `a` to `b` and waits until both report the session.
@discardableResult
func connect(_ a: Node, to b: Node, persistent: Bool = false) async throws -> PeerInfo {
    let before = b.events.connections(of: a.nodeID).count
    let info = try await a.transport.connect(to: b.address, persistent: persistent)
    try await waitUntil("the responder's connected event") { b.events.connections(of: a.nodeID).count > before }
    return info
}

/// Sends `count` messages from `a` to `b`, keeping at most `window` unanswered so the
/// receiver's socket buffer is not simply overrun (the message layer paces in real use).
func pump(_ count: Int, from a: Node, to b: Node, padding: Int, window: Int = 256) async throws {
    var sent = 0
    while sent < count {
        let batch = (sent..<min(count, sent + 32)).map { customMessage($0, padding: padding) }
        switch try a.transport.send(batch, to: b.nodeID) {
        case .written: sent += batch.count
        case .queueFull: try await Task.sleep(for: .milliseconds(1))
        }
        let deadline = ContinuousClock.now + .milliseconds(500)
        while b.events.messageCount(from: a.nodeID) < sent - window, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

/// Counts of what a `FaultInjector` did.
final class FaultCounters: Sendable {
    private let counts = NIOLockedValueBox((passed: 0, dropped: 0, duplicated: 0, reordered: 0))
    func record(_ update: (inout (passed: Int, dropped: Int, duplicated: Int, reordered: Int)) -> Void) {
        counts.withLockedValue(update)
    }
    var snapshot: (passed: Int, dropped: Int, duplicated: Int, reordered: Int) { counts.withLockedValue { $0 } }
}

/// Sits between a UDP socket and the transport and loses, duplicates and reorders the
/// datagrams read: a fault a loopback socket cannot produce on demand.
final class FaultInjector: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias InboundOut = AddressedEnvelope<ByteBuffer>

    let dropRate: Double
    let duplicateRate: Double
    let reorderRate: Double
    let counters: FaultCounters
    private var held: NIOAny?

    init(dropRate: Double, duplicateRate: Double, reorderRate: Double, counters: FaultCounters) {
        self.dropRate = dropRate
        self.duplicateRate = duplicateRate
        self.reorderRate = reorderRate
        self.counters = counters
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let roll = Double.random(in: 0..<1)
        if roll < dropRate {
            counters.record { $0.dropped += 1 }
            return
        }
        if roll < dropRate + reorderRate, held == nil {
            // Held back and passed on after the next datagram.
            held = data
            counters.record { $0.reordered += 1 }
            return
        }
        context.fireChannelRead(data)
        counters.record { $0.passed += 1 }
        if roll < dropRate + reorderRate + duplicateRate {
            context.fireChannelRead(data)
            counters.record { $0.duplicated += 1 }
        }
        if let earlier = held {
            held = nil
            context.fireChannelRead(earlier)
        }
    }
}
