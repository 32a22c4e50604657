#if canImport(Glibc)
import Glibc
#endif
import Foundation
import KeyDaemon
import LNPBus
import LNPClient
import LNPCrypto
import LNPRPC
import LNPStore
import LNPTransport
import Logging
import MessageDaemon
import PeerDaemon

/// Starts and stops the node's services: all of them as threads of this process (the
/// default, bus over inproc), or one of them alone (`lnpd --service NAME`, bus over ipc
/// socket files in the data directory), so a node can also run as four processes.
public final class Node: Sendable {
    public enum Service: String, CaseIterable, Sendable {
        case keyd, peerd, msgd, lnpd
    }

    private let configuration: NodeConfiguration
    private let logger: Logger
    private let context: BusContext
    private let stack = LockedValue<[@Sendable () async -> Void]>([])
    /// One store per process: peerd and msgd share it when they run as threads.
    private let sharedStore = LockedValue<MessageStore?>(nil)

    private func store() throws -> MessageStore {
        try sharedStore.withValue { store in
            if let store { return store }
            let opened = try MessageStore(path: Self.storePath(configuration.dataDirectory))
            store = opened
            return opened
        }
    }

    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        context = try BusContext()
    }

    static func storePath(_ dataDirectory: String) -> String { dataDirectory + "/node.sqlite" }

    /// Starts `services` (all four by default) and returns once each has announced itself
    /// ready and the front door answers.
    public func start(only service: Service? = nil) async throws {
        let directory = configuration.dataDirectory
        let threads = service == nil
        let layout: BusLayout
        if threads {
            layout = BusLayout(transport: .inproc(namespace: "lnpd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"))
        } else if let bus = configuration.bus {
            // Every process of the node holds the same key pair (copied to each host), so
            // each one is both a CURVE server and an authorised client of the others.
            let keys = try CurveKeyPair.loadOrCreate(dataDirectory: directory)
            var hosts: [ServiceName: String] = [:]
            for (name, host) in bus.hosts { if let service = ServiceName(rawValue: name) { hosts[service] = host } }
            layout = BusLayout(transport: .tcp(host: bus.host, basePort: bus.basePort, curve: CurveKeys(server: keys)), hosts: hosts)
            try layout.validate()
            logger.info("bus: tcp with CURVE from \(bus.host):\(bus.basePort); key \(directory)/\(CurveKeyPair.fileName) (public \(keys.publicKeyHex))")
        } else {
            layout = FrontDoor.layout(dataDirectory: directory)
        }
        let wanted = service.map { [$0] } ?? Service.allCases
        // `spool://` peers are directories msgd keeps; peerd dials the others.
        let spoolPeers = configuration.connect.filter(\.location.isSpool)
        let dialled = configuration.connect.filter { !$0.location.isSpool }

        if wanted.contains(.keyd) {
            let key = try NodeKeyFile.loadOrCreate(directory: directory, passphrase: configuration.keyPassphrase)
            let keys = try KeyService(context: context, layout: layout, key: key, logger: logger)
            try keys.start()
            push { keys.close() }
            logger.info("keyd: node id \(key.publicKey.hex)")
        }
        if wanted.contains(.peerd) {
            try await waitUntilReady([.keyd], layout: layout)
            let keyClient = try BusClient(context: context, layout: layout, service: .keyd)
            push { keyClient.close() }
            let keyAgreement = try await RemoteKeyAgreement(client: keyClient)
            let store = try store()
            let peers = try PeerService(context: context, layout: layout,
                                        configuration: .init(listen: configuration.listen, connect: dialled,
                                                             tor: configuration.tor, dataDirectory: directory),
                                        keyAgreement: keyAgreement, store: store, logger: logger)
            try await peers.start()
            push { await peers.close() }
        }
        if wanted.contains(.msgd) {
            try await waitUntilReady([.keyd, .peerd], layout: layout)
            let store = try store()
            let peerClient = try BusClient(context: context, layout: layout, service: .peerd)
            push { peerClient.close() }
            // The spool seals and opens envelopes with the node key, which stays in keyd.
            let keyClient = try BusClient(context: context, layout: layout, service: .keyd)
            push { keyClient.close() }
            let spool = try SpoolLink(store: store, keyAgreement: try await RemoteKeyAgreement(client: keyClient),
                                      dataDirectory: directory, watching: spoolPeers, logger: logger)
            let messages = try MessageService(context: context, layout: layout, store: store, peerClient: peerClient,
                                              spool: spool, logger: logger)
            try messages.start()
            push { messages.close() }
        }
        if wanted.contains(.lnpd) {
            try await waitUntilReady([.keyd, .peerd, .msgd], layout: layout)
            let keys = try BusClient(context: context, layout: layout, service: .keyd)
            let peers = try BusClient(context: context, layout: layout, service: .peerd)
            let messages = try BusClient(context: context, layout: layout, service: .msgd)
            push {
                keys.close()
                peers.close()
                messages.close()
            }
            let nodeID = try NodeIDRequest.decode(try await keys.request(BusMessage(method: KeyMethod.nodeID.rawValue, payload: []), timeout: .seconds(10))).nodeID
            let frontDoor = try FrontDoorService(context: context, dataDirectory: directory, nodeID: nodeID, keys: keys, peers: peers,
                                                 messages: messages, logger: logger)
            try frontDoor.start()
            push { frontDoor.close() }
        }
    }

    private func waitUntilReady(_ services: [BusServiceName], layout: BusLayout) async throws {
        let subscriber = try BusSubscriber(context: context, layout: layout, services: services, methods: [], handler: { _, _ in })
        defer { subscriber.close() }
        try await subscriber.waitUntilReady(services, timeout: .seconds(60))
    }

    private func push(_ stop: @escaping @Sendable () async -> Void) {
        stack.withValue { $0.append(stop) }
    }

    /// Stops everything in the reverse order of starting, then ends the bus context.
    public func stop() async {
        let stops = stack.withValue { stack -> [@Sendable () async -> Void] in
            let taken = stack
            stack = []
            return taken
        }
        for stop in stops.reversed() { await stop() }
        context.close()
    }
}

public typealias BusServiceName = ServiceName
