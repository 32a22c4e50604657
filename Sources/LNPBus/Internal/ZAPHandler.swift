import CZeroMQ
import LNPCrypto

enum NoCommand {}

/// The context's ZAP handler (ZeroMQ RFC 27): libzmq asks it, over
/// `inproc://zeromq.zap.01`, whether a CURVE client key may connect to a server socket.
/// It accepts a key only if the server's ZAP domain lists it.
final class ZAPHandler: NodeCore<NoCommand>, @unchecked Sendable {
    static let endpoint = "inproc://zeromq.zap.01"
    private var socket: ZSocket?
    private let message = ZMessage()
    private var limiter: LogLimiter

    init(context: ContextCore) throws(BusError) {
        limiter = LogLimiter(logger: context.logger)
        try super.init(context: context, threadName: "lnp-bus-zap")
    }

    override func setUp() throws(BusError) {
        let socket = try ZSocket.open(context.handle, type: ZMQ_REP, label: "ZAP handler")
        self.socket = socket
        try socket.bind(ZAPHandler.endpoint)
        pollItems.append(zmq_pollitem_t(socket: socket.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
    }

    override func handleSockets() {
        guard let socket, pollItems[1].revents & Int16(ZMQ_POLLIN) != 0 else { return }
        while true {
            var frames: [[UInt8]] = []
            var code = message.receive(from: socket)
            if code == EAGAIN { return }
            while code == 0 {
                if frames.count < 8 && message.count <= 1024 {
                    frames.append(Array(message.bytes))
                } else {
                    frames.append([])
                }
                if !message.hasMore { break }
                code = message.receive(from: socket)
            }
            guard code == 0 else { return }
            answer(frames, on: socket)
        }
    }

    private func answer(_ frames: [[UInt8]], on socket: ZSocket) {
        let requestID = frames.count > 1 ? frames[1] : []
        var status = "400"
        var text = "refused"
        var userID: [UInt8] = []
        if frames.count >= 7, frames[0] == Array("1.0".utf8), frames[5] == Array("CURVE".utf8), frames[6].count == 32 {
            let domain = String(decoding: frames[2], as: UTF8.self)
            let key = frames[6]
            if context.isAuthorized(domain: domain, key: key) {
                status = "200"
                text = "OK"
                userID = Array(Hex.encode(key).utf8)
            } else {
                let address = String(decoding: frames[3], as: UTF8.self)
                limiter.log(.warning, "refused CURVE client key \(Hex.encode(key)) from \(address): not authorised for this node's bus")
            }
        } else {
            limiter.log(.warning, "refused a ZAP request that is not a CURVE authentication")
        }
        let reply: [[UInt8]] = [Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), userID, []]
        for (index, frame) in reply.enumerated() {
            if socket.send(frame, more: index < reply.count - 1) != 0 {
                logger.log(.error, "the ZAP handler could not answer libzmq")
                return
            }
        }
    }

    override func tearDown(error: BusError) {
        socket?.close()
        socket = nil
    }
}
