import LNPBus
import LNPClient
import LNPCrypto
import LNPRPC
import LNPWire
import Logging
import MessageDaemon

/// lnpd's front door: the only endpoint clients reach (an ipc socket, mode 0600, in the data
/// directory). It answers `info` itself and forwards everything else to the service that
/// owns it, passing the bytes through unchanged.
public final class FrontDoorService: Sendable {
    private let server: BusServer
    public static let version = "0.1.0"

    public init(context: BusContext, dataDirectory: String, nodeID: PublicKey, keys: BusClient, peers: BusClient,
                messages: BusClient, logger: Logger) throws(BusError) {
        server = try BusServer(context: context, layout: FrontDoor.layout(dataDirectory: dataDirectory), name: .lnpd) { message, responder in
            Self.handle(message, responder: responder, nodeID: nodeID, peers: peers, messages: messages, logger: logger)
        }
    }

    public func start() throws(BusError) { try server.start() }
    public func close() { server.close() }

    static func handle(_ message: BusMessage, responder: BusResponder, nodeID: PublicKey, peers: BusClient, messages: BusClient, logger: Logger) {
        guard let method = NodeMethod(rawValue: message.method) else {
            return responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "lnpd has no method \(message.method)")
        }
        switch method {
        case .info:
            Task {
                do {
                    let listenReply = try await peers.request(BusMessage(method: PeerMethod.listenAddresses.rawValue, payload: []), timeout: .seconds(5))
                    let listen = try StringList.decode(listenReply).values
                    let peerList = try PeerList.decode(try await peers.request(BusMessage(method: PeerMethod.peers.rawValue, payload: []), timeout: .seconds(5)))
                    let connected = UInt32(peerList.peers.filter(\.connected).count)
                    let tor = try TorStatus.decode(try await peers.request(BusMessage(method: PeerMethod.torStatus.rawValue, payload: []), timeout: .seconds(5)))
                    responder.reply(NodeInfo(nodeID: nodeID, listen: listen, version: version, peerCount: connected, onion: tor.onion, tor: tor).encoded())
                } catch {
                    responder.fail(code: RPCErrorCode.internalError.rawValue, message: "peerd did not answer: \(error)")
                }
            }
        case .connect: forward(message, to: peers, as: .connect, timeout: .seconds(80), responder)
        case .disconnect: forward(message, to: peers, as: .disconnect, timeout: .seconds(10), responder)
        case .peers: forward(message, to: peers, as: .peers, timeout: .seconds(10), responder)
        case .ping: forward(message, to: peers, as: .ping, timeout: .seconds(35), responder)
        case .send: forward(message, to: messages, method: MessageMethod.send.rawValue, timeout: .seconds(55), responder)
        case .status: forward(message, to: messages, method: MessageMethod.status.rawValue, timeout: .seconds(10), responder)
        // Sealing or opening thousands of envelopes, each with ECDH through keyd, and fsyncs.
        case .spoolExport: forward(message, to: messages, method: MessageMethod.spoolExport.rawValue, timeout: SpoolLink.requestTimeout, responder)
        case .spoolImport: forward(message, to: messages, method: MessageMethod.spoolImport.rawValue, timeout: SpoolLink.requestTimeout, responder)
        case .recv:
            let wait = (try? RecvRequest.decode(message.payload)).map { Duration.milliseconds(Int64($0.waitMilliseconds)) } ?? .zero
            forward(message, to: messages, method: MessageMethod.recv.rawValue, timeout: wait + .seconds(10), responder)
        }
    }

    static func forward(_ message: BusMessage, to client: BusClient, as method: PeerMethod, timeout: Duration, _ responder: BusResponder) {
        forward(message, to: client, method: method.rawValue, timeout: timeout, responder)
    }

    static func forward(_ message: BusMessage, to client: BusClient, method: UInt16, timeout: Duration, _ responder: BusResponder) {
        Task {
            do throws(BusError) {
                let reply = try await client.request(BusMessage(method: method, payload: message.payload), timeout: timeout)
                responder.reply(reply)
            } catch {
                if case let .remote(code, text) = error.kind {
                    responder.fail(code: code, message: text)
                } else {
                    responder.fail(code: RPCErrorCode.internalError.rawValue, message: "the node's services did not answer: \(error)")
                }
            }
        }
    }
}
