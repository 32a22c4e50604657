import CZeroMQ

/// What a client socket knows about its link to the service, from libzmq's socket
/// monitor. Used only to say *why* a deadline passed: nothing listening, a rejected
/// handshake, or a service that is there but silent.
final class ConnectionMonitor {
    enum State: Equatable {
        case neverConnected
        case connected
        case lost
        case rejected(String)
    }

    private(set) var state: State = .neverConnected
    let pair: ZSocket
    private let monitored: ZSocket
    private let message = ZMessage()
    private let curve: Bool
    /// The transport connected and the ZMTP/CURVE handshake has not finished yet.
    private var handshakePending = false

    static let events: Int32 = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED
        | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH

    init(context: ContextCore, watching socket: ZSocket, curve: Bool) throws(BusError) {
        let endpoint = "inproc://lnp-bus-monitor/\(context.nextSerial())"
        guard zmq_socket_monitor(socket.handle, endpoint, ConnectionMonitor.events) == 0 else {
            throw BusError.lastZMQ("cannot monitor the \(socket.label) socket")
        }
        let pair: ZSocket
        do {
            pair = try ZSocket.open(context.handle, type: ZMQ_PAIR, label: "\(socket.label) monitor")
        } catch {
            zmq_socket_monitor(socket.handle, nil, 0)
            throw error
        }
        do {
            try pair.connect(endpoint)
        } catch {
            pair.close()
            zmq_socket_monitor(socket.handle, nil, 0)
            throw error
        }
        self.pair = pair
        monitored = socket
        self.curve = curve
    }

    var pollItem: zmq_pollitem_t {
        zmq_pollitem_t(socket: pair.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
    }

    /// Reads every pending monitor event.
    func drain() {
        while message.receive(from: pair) == 0 {
            var event: UInt16 = 0
            var value: UInt32 = 0
            let frame = message.bytes
            if frame.count == 6 {
                event = frame.loadUnaligned(fromByteOffset: 0, as: UInt16.self)
                value = frame.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
            }
            message.discardRest(of: pair)
            apply(event: Int32(event), value: value)
        }
    }

    private func apply(event: Int32, value: UInt32) {
        switch event {
        case ZMQ_EVENT_CONNECTED:
            handshakePending = true
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            handshakePending = false
            state = .connected
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            handshakePending = false
            state = .rejected("the service refused this client's CURVE key (status \(value)); add its public key to the server's authorised client keys")
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            handshakePending = false
            state = .rejected(ConnectionMonitor.describeProtocolError(value))
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            // What a client sees when the server drops it mid-handshake, which is how a
            // CURVE server answers a HELLO sealed to a key that is not its own.
            handshakePending = false
            state = .rejected(curve
                ? "the service closed the connection during the CURVE handshake: the server public key this client uses is probably wrong"
                : "the service closed the connection during the handshake")
        case ZMQ_EVENT_DISCONNECTED:
            if handshakePending {
                state = .rejected(curve
                    ? "the service closed the connection during the CURVE handshake: the server public key this client uses is probably wrong"
                    : "the service closed the connection during the handshake")
            } else if state == .connected {
                state = .lost
            }
            handshakePending = false
        default:
            break
        }
    }

    static func describeProtocolError(_ value: UInt32) -> String {
        switch Int32(bitPattern: value) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            "a CURVE cryptographic check failed: the server public key this client uses is probably wrong"
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            "the two sides use different security mechanisms (CURVE on one side only)"
        default:
            "protocol error 0x\(String(value, radix: 16)) during the handshake"
        }
    }

    /// Why a request to `service` got no answer, given what the monitor saw.
    func explainSilence(of service: ServiceName, method: UInt16, after timeout: Duration) -> BusError {
        drain()
        switch state {
        case .connected:
            return BusError(.timeout(service, method: method, after: timeout))
        case .neverConnected, .lost:
            return BusError(.serviceUnavailable(service))
        case let .rejected(reason):
            return BusError(.handshakeFailed(service, reason))
        }
    }

    func close() {
        zmq_socket_monitor(monitored.handle, nil, 0)
        pair.close()
    }
}
