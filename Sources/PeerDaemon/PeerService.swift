import Foundation
import LNPBus
import LNPCrypto
import LNPRPC
import LNPStore
import LNPTransport
import LNPTransportSerial
import LNPTransportTCP
import LNPTransportUDP
import LNPWire
import Logging
import NIOCore
import NIOPosix

/// peerd: every connection to another node. It owns the transports, answers connect /
/// disconnect / peers / ping / send requests on the bus and publishes what peers send as
/// bus events. It never sees the node key: ECDH goes to keyd.
public final class PeerService: Sendable {
    public struct Configuration: Sendable {
        public var listen: [ListenAddress]
        public var connect: [PeerAddress]
        public var tor: TorSettings
        /// Holds the onion service key and the node's own tor.
        public var dataDirectory: String
        public init(listen: [ListenAddress], connect: [PeerAddress], tor: TorSettings = TorSettings(), dataDirectory: String) {
            self.listen = listen
            self.connect = connect
            self.tor = tor
            self.dataDirectory = dataDirectory
        }
    }

    /// The features we advertise in `init`: only what this node implements.
    public static let localFeatures = FeatureVector(bits: [Feature.lnpLargeFrames.oddBit, Feature.lnpMessaging.oddBit])

    private let server: BusServer
    private let transport: TCPTransport
    private let links: PeerLinks
    private let group: MultiThreadedEventLoopGroup
    private let store: MessageStore
    private let logger: Logger
    private let configuration: Configuration
    private let inbound: InboundBatcher
    private let boundAddresses = LockedValue<[String]>([])
    private let tor: TorSupervisor?

    public init(context: BusContext, layout: BusLayout, configuration: Configuration, keyAgreement: any StaticKeyAgreement,
                store: MessageStore, logger: Logger) throws {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        var transportConfiguration = TCPTransportConfiguration(
            localKey: keyAgreement,
            localInit: InitMessage(features: Self.localFeatures),
            listen: configuration.listen.filter { $0.linkKind == .stream })
        transportConfiguration.handshakeTimeout = .seconds(10)
        let transportBox = LockedValue<TCPTransport?>(nil)
        let tor = configuration.tor.isEnabled
            ? TorSupervisor(settings: configuration.tor, dataDirectory: configuration.dataDirectory, logger: logger) {
                transportBox.withValue { $0 }?.redialNow { address in
                    if case let .tcp(host, _) = address.location { host.isOnion } else { false }
                }
            }
            : nil
        self.tor = tor
        transportConfiguration.dialer = NodeDialer(settings: configuration.tor, tor: tor)
        let serverBox = LockedValue<BusServer?>(nil)
        let inbound = InboundBatcher { event in serverBox.withValue { $0?.publish(event) } }
        self.inbound = inbound
        let linksBox = LockedValue<PeerLinks?>(nil)
        transport = TCPTransport(configuration: transportConfiguration, group: group) { event in
            Self.forward(event, through: linksBox, from: { $0.tcp }, inbound: inbound, logger: logger)
        }
        let transport = self.transport
        transportBox.withValue { $0 = transport }
        let localInit = transportConfiguration.localInit
        let serial = SerialTransport(configuration: SerialTransportConfiguration(
            localKey: keyAgreement, localInit: localInit, listen: configuration.listen.filter { $0.location.scheme == "serial" })) { event in
            Self.forward(event, through: linksBox, from: { $0.frameTransports.first { $0 is SerialTransport } }, inbound: inbound, logger: logger)
        }
        let udp = UDPTransport(configuration: UDPTransportConfiguration(
            localKey: keyAgreement, localInit: localInit, listen: configuration.listen.filter { $0.location.scheme == "udp" }),
            group: group) { event in
            Self.forward(event, through: linksBox, from: { $0.frameTransports.first { $0 is UDPTransport } }, inbound: inbound, logger: logger)
        }
        let links = PeerLinks(tcp: transport, frameTransports: [udp, serial], torOnly: configuration.tor.torOnly)
        linksBox.withValue { $0 = links }
        self.links = links
        let listen = boundAddresses
        server = try BusServer(context: context, layout: layout, name: .peerd) { message, responder in
            Self.handle(message, responder: responder, links: links, store: store, logger: logger, bound: { listen.withValue { $0 } },
                        torStatus: { tor?.status ?? TorStatus() })
        }
        serverBox.withValue { $0 = server }
    }

    /// Binds the listeners, starts serving the bus and dials the configured and persisted peers.
    public func start() async throws {
        let bound = try await transport.start()
        var addresses = bound.map { Self.describe($0) }
        for transport in links.frameTransports {
            do {
                switch transport {
                case let serial as SerialTransport: try await serial.start()
                case let udp as UDPTransport:
                    // --tor-only opens no UDP socket at all (connect refuses udp:// there).
                    guard !configuration.tor.torOnly else { break }
                    addresses += try await udp.start().map { "udp://" + Self.describe($0) }
                default: break
                }
            } catch {
                await links.shutdown()
                throw error
            }
        }
        addresses += configuration.listen.filter { $0.location.scheme == "serial" }.map(\.description)
        boundAddresses.withValue { $0 = addresses }
        if let tor {
            var onion: TorSupervisor.OnionTarget?
            if configuration.tor.publishOnion {
                guard let listener = bound.first(where: { $0.port != nil }), let port = listener.port, let virtualPort = UInt16(exactly: port) else {
                    throw TorSupervisor.Failure(description: "--onion needs a TCP listen address to publish")
                }
                // tor connects to the listener from this host: loopback for a wildcard bind.
                let ip = listener.ipAddress ?? "127.0.0.1"
                let target: String = switch listener {
                case .v6: ip == "::" ? "[::1]:\(port)" : "[\(ip)]:\(port)"
                default: ip == "0.0.0.0" ? "127.0.0.1:\(port)" : "\(ip):\(port)"
                }
                onion = .init(virtualPort: virtualPort, target: target)
            }
            do {
                try await tor.start(onion: onion)
            } catch {
                await transport.shutdown()
                throw error
            }
        }
        let links = self.links, store = self.store, logger = self.logger
        try server.start()
        var dial = configuration.connect
        // Every address a persistent peer was reached at: each transport keeps its own
        // session, and messages go over whichever is up.
        for peer in (try? store.peers()) ?? [] where peer.persistent {
            for text in peer.addresses {
                if let address = try? PeerAddress(parsing: text), address.location.scheme != "spool", !dial.contains(address) { dial.append(address) }
            }
        }
        for address in dial {
            Task {
                do {
                    _ = try await links.transport(for: address).connect(to: address, persistent: true)
                    try? store.upsertPeer(address.nodeID, address: address.description, persistent: true)
                } catch {
                    logger.notice("peerd: connect to \(address) failed: \(error); retrying in the background")
                }
            }
        }
        logger.info("peerd: listening on \(addresses.joined(separator: ", "))")
    }

    public func close() async {
        await tor?.stop()
        server.close()
        await links.shutdown()
        try? await group.shutdownGracefully()
    }

    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v6: "[\(address.ipAddress ?? "::")]:\(address.port ?? 0)"
        default: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
    }

    static func record(_ info: PeerInfo, connected: Bool = true) -> PeerRecord {
        PeerRecord(nodeID: info.nodeID, address: info.address, connected: connected, inbound: info.direction == .inbound,
                   persistent: info.persistent, largeFrames: info.largeFrames, features: info.remoteFeatures.bytes)
    }

    /// Publishes what `PeerLinks` makes of a transport's event (see `PeerLinks.observe`).
    static func forward(_ event: TransportEvent, through linksBox: LockedValue<PeerLinks?>,
                        from transport: (PeerLinks) -> (any SessionTransport)?, inbound: InboundBatcher, logger: Logger) {
        var published: TransportEvent? = event
        if let links = linksBox.withValue({ $0 }), let source = transport(links) {
            published = links.observe(event, from: source)
            if published == nil, case let .disconnected(nodeID, reason) = event {
                logger.info("peerd: a second session with \(nodeID) ended (\(reason)); its messages go on over the other")
            }
        }
        if let published { forward(published, inbound: inbound, logger: logger) }
    }

    static func forward(_ event: TransportEvent, inbound: InboundBatcher, logger: Logger) {
        switch event {
        case let .message(from, bytes):
            inbound.append(bytes, from: from)
        case let .connected(info):
            logger.info("peerd: connected to \(info.nodeID) at \(info.address) (\(info.direction))")
            inbound.publishInOrder(BusMessage(method: PeerEventType.connected.rawValue, payload: record(info).encoded()))
        case let .disconnected(nodeID, reason):
            logger.info("peerd: disconnected from \(nodeID): \(reason)")
            inbound.publishInOrder(BusMessage(method: PeerEventType.disconnected.rawValue, payload: PeerDisconnectedEvent(nodeID: nodeID, reason: reason).encoded()))
        case let .writable(nodeID):
            inbound.publishInOrder(BusMessage(method: PeerEventType.writable.rawValue, payload: NodeIDRequest(nodeID: nodeID).encoded()))
        case let .connectFailed(address, reason, willRetry):
            logger.notice("peerd: connect to \(address) failed: \(reason)\(willRetry ? "; will retry" : "")")
        }
    }

    static func handle(_ message: BusMessage, responder: BusResponder, links: PeerLinks, store: MessageStore, logger: Logger,
                       bound: @escaping @Sendable () -> [String], torStatus: () -> TorStatus) {
        do throws(WireError) {
            switch PeerMethod(rawValue: message.method) {
            case .connect:
                let request = try AddressRequest.decode(message.payload)
                let address: PeerAddress
                do {
                    address = try PeerAddress(parsing: request.address)
                } catch {
                    return responder.fail(code: RPCErrorCode.malformedAddress.rawValue, message: error.description)
                }
                Task {
                    do {
                        let info = try await links.transport(for: address).connect(to: address, persistent: true)
                        try? store.upsertPeer(address.nodeID, address: address.description, persistent: true)
                        responder.reply(record(info).encoded())
                    } catch {
                        let why: String = switch error as? TransportError {
                        case let .unsupportedAddress(_, reason)?, let .connectFailed(_, reason)?: reason
                        default: "\(error)"
                        }
                        responder.fail(code: RPCErrorCode.connectFailed.rawValue, message: "cannot connect to \(address): \(why)")
                    }
                }
            case .disconnect:
                let nodeID = try NodeIDRequest.decode(message.payload).nodeID
                let known = links.peers().contains { $0.nodeID == nodeID } || ((try? store.peers()) ?? []).contains { $0.nodeID == nodeID }
                guard known else {
                    return responder.fail(code: RPCErrorCode.unknownPeer.rawValue, message: "no peer with node id \(nodeID.hex)")
                }
                Task {
                    await links.disconnect(nodeID)
                    try? store.removePeer(nodeID)
                    responder.reply([])
                }
            case .peers:
                let connected = links.peers()
                var records = connected.map { record($0) }
                for peer in (try? store.peers()) ?? [] where peer.persistent && !connected.contains(where: { $0.nodeID == peer.nodeID }) {
                    records.append(PeerRecord(nodeID: peer.nodeID, address: peer.addresses.last ?? "", connected: false, inbound: false,
                                              persistent: true, largeFrames: false, features: []))
                }
                responder.reply(PeerList(peers: records).encoded())
            case .ping:
                let request = try PingRequest.decode(message.payload)
                Task {
                    do {
                        let rtt = try await links.holding(request.nodeID).ping(request.nodeID, pongBytes: request.pongBytes)
                        let nanoseconds = UInt64(rtt.components.seconds) * 1_000_000_000 + UInt64(rtt.components.attoseconds / 1_000_000_000)
                        responder.reply(PingReply(roundTripNanoseconds: nanoseconds).encoded())
                    } catch {
                        responder.fail(code: RPCErrorCode.notConnected.rawValue, message: "ping \(request.nodeID.hex) failed: \(error)")
                    }
                }
            case .send:
                let request = try PeerSendRequest.decode(message.payload)
                do {
                    switch try links.holding(request.nodeID).send(request.messages, to: request.nodeID) {
                    case .written: responder.reply([PeerSendOutcome.written.rawValue])
                    case .queueFull: responder.reply([PeerSendOutcome.queueFull.rawValue])
                    }
                } catch {
                    responder.fail(code: RPCErrorCode.notConnected.rawValue, message: "\(request.nodeID.hex) is not connected: \(error)")
                }
            case .listenAddresses:
                responder.reply(StringList(bound()).encoded())
            case .torStatus:
                responder.reply(torStatus().encoded())
            case nil:
                responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "peerd has no method \(message.method)")
            }
        } catch {
            logger.warning("peerd: malformed request \(message.method): \(error)")
            responder.fail(code: RPCErrorCode.invalidRequest.rawValue, message: "malformed request: \(error)")
        }
    }
}

/// Collects inbound messages and publishes them in batches, one bus event per peer per
/// flush: under load a flush carries thousands of messages, at idle it carries one.
final class InboundBatcher: Sendable {
    /// Messages not yet published, per peer in order of each peer's first message.
    private struct Pending: Sendable {
        var peers: [PublicKey] = []
        var batches: [[[UInt8]]] = []
        /// Index into `peers` of each peer with a batch.
        var index: [PublicKey: Int] = [:]
        var scheduled = false

        /// Where `peer`'s batch is; the last peer is checked first, since messages arrive
        /// in runs from one link, which spares a hash of the key per message.
        mutating func slot(for peer: PublicKey) -> Int {
            if let last = peers.indices.last, peers[last] == peer { return last }
            if let slot = index[peer] { return slot }
            peers.append(peer)
            batches.append([])
            index[peer] = peers.count - 1
            return peers.count - 1
        }
    }

    private let pending = LockedValue(Pending())
    private let queue = DispatchQueue(label: "peerd.inbound")
    private let publish: @Sendable (BusMessage) -> Void

    init(publish: @escaping @Sendable (BusMessage) -> Void) { self.publish = publish }

    func append(_ message: [UInt8], from: PublicKey) {
        let schedule = pending.withValue { state -> Bool in
            let slot = state.slot(for: from)
            state.batches[slot].append(message)
            if state.scheduled { return false }
            state.scheduled = true
            return true
        }
        if schedule { queue.async { self.flush() } }
    }

    /// Publishes `event` after every message that arrived before it, so msgd sees a peer's
    /// messages before its disconnection and its connection before its messages. Every
    /// publish runs on one serial queue: that is what keeps the order.
    func publishInOrder(_ event: BusMessage) {
        queue.async {
            self.flush()
            self.publish(event)
        }
    }

    /// Publishes everything pending now, in arrival order per peer. Runs on `queue` only.
    private func flush() {
        let taken = pending.withValue { state -> Pending in
            defer { state = Pending() }
            return state
        }
        for (peer, batch) in zip(taken.peers, taken.batches) {
            publish(BusMessage(method: PeerEventType.messages.rawValue, payload: PeerMessagesEvent(nodeID: peer, messages: batch).encoded()))
        }
    }
}

/// A value behind a lock, for state shared between NIO, bus and task threads.
public final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    public init(_ value: Value) { self.value = value }
    public func withValue<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
