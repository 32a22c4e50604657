#if canImport(Glibc)
import Glibc
#endif
import LNPBus
import LNPCrypto
import LNPRPC
import LNPWire

/// A client of a running lnpd: what lnp-cli, the end-to-end tests and the benchmarks use.
/// It talks to lnpd's front door, a bus endpoint inside the data directory.
public final class NodeClient: Sendable {
    public let dataDirectory: String
    private let context: BusContext
    private let client: BusClient
    public let timeout: Duration

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case notRunning(dataDirectory: String)
        case notResponding(dataDirectory: String, after: Duration)
        case remote(code: RPCErrorCode?, message: String)
        case malformedReply(String)
        case bus(String)

        public var description: String {
            switch self {
            case let .notRunning(directory):
                "lnpd is not running for data directory \(directory) (start it with: lnpd --data-dir \(directory))"
            case let .notResponding(directory, after):
                "lnpd (data directory \(directory)) did not answer within \(after.seconds) s; it may have stopped or be overloaded"
            case let .remote(_, message): message
            case let .malformedReply(detail): "lnpd sent a reply this client does not understand: \(detail)"
            case let .bus(detail): "cannot talk to lnpd: \(detail)"
            }
        }
    }

    public init(dataDirectory: String, timeout: Duration = .seconds(10)) throws(Failure) {
        self.dataDirectory = dataDirectory
        self.timeout = timeout
        let layout = FrontDoor.layout(dataDirectory: dataDirectory)
        guard FrontDoor.isPresent(dataDirectory: dataDirectory) else { throw .notRunning(dataDirectory: dataDirectory) }
        do {
            context = try BusContext()
            client = try BusClient(context: context, layout: layout, service: .lnpd)
        } catch {
            throw .bus(error.description)
        }
    }

    public func close() {
        client.close()
        context.close()
    }

    public func call<Reply: RPCPayload>(_ method: NodeMethod, _ request: some RPCPayload, timeout: Duration? = nil,
                                        as reply: Reply.Type) async throws(Failure) -> Reply {
        let bytes: [UInt8]
        do {
            bytes = try await client.request(BusMessage(method: method.rawValue, payload: request.encoded()), timeout: timeout ?? self.timeout)
        } catch {
            switch error.kind {
            // On ipc, a deadline with no connection at all (a stale socket file after
            // kill -9) is serviceUnavailable; to a person both mean lnpd is not answering.
            case .timeout, .serviceUnavailable: throw .notResponding(dataDirectory: dataDirectory, after: timeout ?? self.timeout)
            case let .remote(code, message): throw .remote(code: RPCErrorCode(rawValue: code), message: message)
            default: throw .bus(error.description)
            }
        }
        do {
            return try Reply.decode(bytes)
        } catch {
            throw .malformedReply(error.description)
        }
    }

    public func info() async throws(Failure) -> NodeInfo { try await call(.info, Empty(), as: NodeInfo.self) }

    public func connect(_ address: String) async throws(Failure) -> PeerRecord {
        // A handshake over Tor or a slow link can take a while; lnpd bounds it itself.
        try await call(.connect, AddressRequest(address: address), timeout: .seconds(90), as: PeerRecord.self)
    }

    public func disconnect(_ nodeID: PublicKey) async throws(Failure) { _ = try await call(.disconnect, NodeIDRequest(nodeID: nodeID), as: Empty.self) }

    public func peers() async throws(Failure) -> [PeerRecord] { try await call(.peers, Empty(), as: PeerList.self).peers }

    public func ping(_ nodeID: PublicKey, pongBytes: UInt16) async throws(Failure) -> Duration {
        let reply = try await call(.ping, PingRequest(nodeID: nodeID, pongBytes: pongBytes), timeout: .seconds(40), as: PingReply.self)
        return .nanoseconds(Int64(reply.roundTripNanoseconds))
    }

    /// Stores the messages in the node and returns their ids once they are on disk.
    public func send(to recipient: PublicKey, _ messages: [TypedMessage]) async throws(Failure) -> [[UInt8]] {
        try await call(.send, SendRequest(recipient: recipient, messages: messages), timeout: .seconds(60), as: MessageIDs.self).ids
    }

    public func recv(afterRowID: UInt64, from: PublicKey?, limit: UInt32, wait: Duration) async throws(Failure) -> [IncomingRecord] {
        let waitMilliseconds = UInt32(clamping: wait.milliseconds)
        return try await call(.recv, RecvRequest(afterRowID: afterRowID, from: from, limit: limit, waitMilliseconds: waitMilliseconds),
                              timeout: wait + timeout, as: IncomingList.self).messages
    }

    /// Spool exports and imports seal or open an envelope per message; the node bounds them.
    public static let spoolTimeout: Duration = .seconds(910)

    public func spoolExport(directory: String, peer: PublicKey?) async throws(Failure) -> SpoolExportReply {
        try await call(.spoolExport, SpoolExportRequest(directory: directory, peer: peer), timeout: Self.spoolTimeout, as: SpoolExportReply.self)
    }

    public func spoolImport(directory: String) async throws(Failure) -> SpoolImportReply {
        try await call(.spoolImport, SpoolImportRequest(directory: directory), timeout: Self.spoolTimeout, as: SpoolImportReply.self)
    }

    public func status(_ id: [UInt8]) async throws(Failure) -> StatusReply {
        try await call(.status, StatusRequest(id: id), as: StatusReply.self)
    }
}

/// Where lnpd's front door lives: always an ipc endpoint inside the data directory (socket
/// file mode 0600), whether the services run as threads or as processes, so only the
/// node's own user can reach it.
public enum FrontDoor {
    public static func layout(dataDirectory: String) -> BusLayout {
        BusLayout(transport: .ipc(directory: dataDirectory))
    }

    public static func socketPath(dataDirectory: String) -> String {
        let endpoint = layout(dataDirectory: dataDirectory).rpcEndpoint(for: .lnpd)
        return endpoint.hasPrefix("ipc://") ? String(endpoint.dropFirst(6)) : endpoint
    }

    /// The socket file exists and an lnpd holds the data directory's instance lock. After
    /// kill -9 the socket file stays behind but the lock is gone with the process.
    public static func isPresent(dataDirectory: String) -> Bool {
        guard access(socketPath(dataDirectory: dataDirectory), F_OK) == 0 else { return false }
        // lnpd (all services) or `lnpd --service lnpd` holds one of these for its lifetime.
        return ["lnpd.lock", "lnpd-lnpd.lock"].contains { isLocked(dataDirectory + "/" + $0) }
    }

    /// Asks whether a POSIX record lock is held, without taking it: a probe that took the
    /// lock, however briefly, could make a starting lnpd believe another one is running.
    private static func isLocked(_ path: String) -> Bool {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var query = flock()
        query.l_type = Int16(F_WRLCK)
        query.l_whence = Int16(SEEK_SET)
        guard fcntl(descriptor, F_GETLK, &query) == 0 else { return false }
        return query.l_type != Int16(F_UNLCK)
    }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    public var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }
}
