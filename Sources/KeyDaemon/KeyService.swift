import LNPBus
import LNPCrypto
import LNPRPC
import LNPWire
import Logging

/// keyd: the only service that holds the node key. Others ask it for the node id, for
/// ECDH (each BOLT-8 handshake) and for signatures; the key never leaves this service.
public final class KeyService: Sendable {
    private let server: BusServer
    public let nodeID: PublicKey

    public init(context: BusContext, layout: BusLayout, key: PrivateKey, logger: Logger) throws(BusError) {
        nodeID = key.publicKey
        server = try BusServer(context: context, layout: layout, name: .keyd) { message, responder in
            Self.handle(message, key: key, responder: responder, logger: logger)
        }
    }

    public func start() throws(BusError) { try server.start() }
    public func close() { server.close() }

    static func handle(_ message: BusMessage, key: PrivateKey, responder: BusResponder, logger: Logger) {
        do throws(WireError) {
            switch KeyMethod(rawValue: message.method) {
            case .nodeID:
                responder.reply(NodeIDRequest(nodeID: key.publicKey).encoded())
            case .ecdh:
                let request = try ECDHRequest.decode(message.payload)
                responder.reply(Bytes32(bytes: key.sharedSecret(with: request.point)).encoded())
            case .signDigest:
                let request = try DigestRequest.decode(message.payload)
                guard let signature = try? key.sign(digest: request.digest) else {
                    return responder.fail(code: RPCErrorCode.invalidRequest.rawValue, message: "cannot sign that digest")
                }
                responder.reply(Signature64(bytes: signature.compact).encoded())
            case .signSchnorr:
                let request = try DigestRequest.decode(message.payload)
                guard let signature = try? key.signSchnorr(message: request.digest) else {
                    return responder.fail(code: RPCErrorCode.invalidRequest.rawValue, message: "cannot sign that message")
                }
                responder.reply(Signature64(bytes: signature).encoded())
            case nil:
                responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "keyd has no method \(message.method)")
            }
        } catch {
            logger.warning("keyd: malformed request \(message.method): \(error)")
            responder.fail(code: RPCErrorCode.invalidRequest.rawValue, message: "malformed request: \(error)")
        }
    }
}
