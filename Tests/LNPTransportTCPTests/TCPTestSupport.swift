#if canImport(Glibc)
import Glibc
#endif
import LNPCrypto
import LNPSession
import LNPTestSupport
import LNPTransport
import LNPTransportTCP
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

    func count(_ matches: (TransportEvent) -> Bool) -> Int { all.filter(matches).count }

    func connections(of nodeID: PublicKey) -> Int {
        count { if case let .connected(info) = $0 { info.nodeID == nodeID } else { false } }
    }

    func disconnections(of nodeID: PublicKey) -> [String] {
        all.compactMap { if case let .disconnected(id, reason) = $0, id == nodeID { reason } else { nil } }
    }

    func connectFailures() -> [(reason: String, willRetry: Bool)] {
        all.compactMap { if case let .connectFailed(_, reason, willRetry) = $0 { (reason, willRetry) } else { nil } }
    }

    func writableEvents(for nodeID: PublicKey) -> Int {
        count { if case let .writable(id) = $0 { id == nodeID } else { false } }
    }
}

/// A transport with its key, its recorder and its first listening port.
struct Node {
    let key: PrivateKey
    let transport: TCPTransport
    let events: EventRecorder
    let port: Int

    var nodeID: PublicKey { key.publicKey }

    func address(port: Int? = nil) -> PeerAddress {
        try! PeerAddress(parsing: "\(key.publicKey.hex)@127.0.0.1:\(port ?? self.port)")
    }

    static let features = FeatureVector(features: [.varOnionOptin, .paymentSecret])

    static func start(
        key: PrivateKey = .generate(), listen: [String] = ["127.0.0.1:0"], group: any EventLoopGroup,
        features: FeatureVector = Node.features, _ configure: (inout TCPTransportConfiguration) -> Void = { _ in }
    ) async throws -> Node {
        var configuration = TCPTransportConfiguration(
            localKey: key, localInit: InitMessage(features: features),
            listen: try listen.map { try ListenAddress(parsing: $0) })
        configuration.reconnectBackoff = (.milliseconds(20), .milliseconds(200))
        configuration.logger = testLogger
        configure(&configuration)
        let events = EventRecorder()
        let transport = TCPTransport(configuration: configuration, group: group) { events.record($0) }
        let bound = try await transport.start()
        return Node(key: key, transport: transport, events: events, port: bound.first?.port ?? 0)
    }
}

/// Transport log lines go to stderr at notice and above during tests; the one-line drop
/// reasons are warnings, so they show up.
let testLogger: Logger = {
    var logger = Logger(label: "lnp.transport.tcp.test")
    logger.logLevel = .notice
    return logger
}()

/// Runs `body` with a two-thread event loop group and shuts the group down afterwards.
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

func customMessage(_ sequence: Int, type: UInt16 = 32769, padding: Int = 0) -> [UInt8] {
    var bytes = [UInt8(type >> 8), UInt8(type & 0xff)]
    withUnsafeBytes(of: UInt32(sequence).bigEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: repeatElement(UInt8(sequence & 0xff), count: padding))
    return bytes
}

/// Both directions still carry messages between `node` and its well-behaved peer.
func expectExchange(_ node: Node, _ peer: Node, tag: Int) async throws {
    let before = (node.events.messages(from: peer.nodeID).count, peer.events.messages(from: node.nodeID).count)
    #expect(try peer.transport.send([customMessage(tag)], to: node.nodeID) != .queueFull)
    #expect(try node.transport.send([customMessage(tag + 1)], to: peer.nodeID) != .queueFull)
    try await waitUntil("an exchange with the good peer") {
        node.events.messages(from: peer.nodeID).count > before.0 && peer.events.messages(from: node.nodeID).count > before.1
    }
    #expect(node.events.messages(from: peer.nodeID).last == customMessage(tag))
    #expect(peer.events.messages(from: node.nodeID).last == customMessage(tag + 1))
}

/// A peer made of a raw NIO socket and, once it has run the handshake itself, a bare
/// `PeerSession`: it can send anything, including what a transport never would.
final class RawPeer {
    let channel: any Channel
    let key: PrivateKey
    private let inbox: Inbox
    private(set) var session: PeerSession?
    /// Messages decrypted so far, `init` excluded.
    private(set) var messages: [[UInt8]] = []
    private(set) var remoteInit: InitMessage?

    final class Inbox: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        private let state = NIOLockedValueBox((bytes: [UInt8](), closed: false))

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            state.withLockedValue { $0.bytes += buffer.readableBytesView }
        }

        func channelInactive(context: ChannelHandlerContext) {
            state.withLockedValue { $0.closed = true }
        }

        func take() -> [UInt8] { state.withLockedValue { state in defer { state.bytes = [] }; return state.bytes } }
        var isClosed: Bool { state.withLockedValue { $0.closed } }
    }

    private init(channel: any Channel, key: PrivateKey, inbox: Inbox) {
        self.channel = channel
        self.key = key
        self.inbox = inbox
    }

    static func connect(port: Int, key: PrivateKey = .generate(), group: any EventLoopGroup) async throws -> RawPeer {
        let inbox = Inbox()
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(inbox) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawPeer(channel: channel, key: key, inbox: inbox)
    }

    var isClosed: Bool { inbox.isClosed }

    func write(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Runs act one to three and the `init` exchange with the node holding `remote`.
    func handshake(with remote: PublicKey, features: FeatureVector = Node.features) async throws {
        var session = PeerSession(role: .initiator(remoteStatic: remote), localStatic: key,
                                  localInit: InitMessage(features: features))
        try await write(try session.start())
        self.session = session
        try await waitUntil("the handshake and init exchange") {
            try pump()
            if remoteInit == nil, isClosed { throw TimedOut(what: "the handshake (the node closed the link)") }
            return remoteInit != nil
        }
    }

    /// Decrypts what has arrived; writes what the session answers.
    func pump() throws {
        let bytes = inbox.take()
        guard !bytes.isEmpty, var session else { return }
        defer { self.session = session }
        for event in try session.receive(bytes) {
            switch event {
            case let .write(out): channel.writeAndFlush(ByteBuffer(bytes: out), promise: nil)
            case let .remoteInit(received): remoteInit = received
            case let .message(message): messages.append(message)
            case .established: break
            }
        }
    }

    func encryptFrame(_ message: [UInt8]) throws -> [UInt8] {
        guard var session else { throw TimedOut(what: "a session (handshake first)") }
        let frame = try session.encrypt(message)
        self.session = session
        return frame
    }

    func send(_ message: [UInt8]) async throws {
        try await write(try encryptFrame(message))
    }

    /// Whether the node closed this socket within `timeout`; decrypts what came before.
    func waitUntilClosed(timeout: Duration = .seconds(5)) async throws -> Bool {
        do {
            try await waitUntil("the node to close the link", timeout: timeout) {
                if session != nil { try pump() }
                return isClosed
            }
            if session != nil { try pump() }
            return true
        } catch is TimedOut {
            return false
        }
    }

    func close() async {
        try? await channel.close()
    }
}

/// Resident memory of this process, from /proc (Linux).
func residentBytes() -> Int? {
    #if os(Linux)
    guard let file = fopen("/proc/self/statm", "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 128)
    guard fgets(&line, Int32(line.count), file) != nil else { return nil }
    let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    #else
    return nil
    #endif
}

/// A loopback port held by a socket that is bound but not listening: connections to it are
/// refused, and no other test can take the port until `release()`. The port lies below
/// Linux's ephemeral range (32768 and up), so no outgoing connection can be given it as its
/// own source port: a dial to a free port in that range can connect to itself.
final class ReservedPort {
    let port: Int
    private var descriptor: Int32

    init() throws {
        for _ in 0..<200 {
            let candidate = Int.random(in: 20_000..<32_000)
            // Close-on-exec: a process another test spawns meanwhile (tor, socat) must not
            // inherit the socket and keep the port after `release()`.
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else { throw ReservedPortError() }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(candidate).bigEndian
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            if bound {
                self.descriptor = descriptor
                port = candidate
                return
            }
            close(descriptor)
        }
        throw ReservedPortError()
    }

    func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { release() }
}

struct ReservedPortError: Error {}
