import CZeroMQ

/// Every failure of the bus, as a value the caller can switch over and a sentence a
/// user can read.
public struct BusError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No reply within the request's timeout while the service was reachable
        /// (or, for inproc, whose reachability the bus cannot observe).
        case timeout(ServiceName, method: UInt16, after: Duration)
        /// The service answered with an error (`BusResponder.fail`).
        case remote(code: UInt16, message: String)
        /// The deadline passed and no connection to the service existed (ipc, tcp).
        case serviceUnavailable(ServiceName)
        /// The deadline passed and the security handshake with the service failed
        /// (wrong CURVE server key, client key not authorised).
        case handshakeFailed(ServiceName, String)
        /// A frame or value broke the bus wire format.
        case malformed(String)
        /// A payload above `BusMessage.maximumPayloadSize`.
        case messageTooLarge(size: Int, limit: Int)
        /// The client, server, subscriber or context was closed.
        case closed
        /// The calling task was cancelled.
        case cancelled
        /// A tcp transport without complete CURVE keys.
        case insecureEndpoint(String)
        /// A layout or argument the bus cannot use (bad namespace, path too long, ...).
        case invalidConfiguration(String)
        /// The CURVE key file could not be created, read or trusted.
        case keyFile(path: String, String)
        /// libzmq (or the OS underneath) refused an operation.
        case zmq(errno: Int32, String)
    }

    public var kind: Kind

    public init(_ kind: Kind) {
        self.kind = kind
    }

    public var description: String {
        switch kind {
        case let .timeout(service, method, after):
            return "\(service) did not answer \(BusError.methodName(method)) within \(BusError.format(after))"
        case let .remote(code, message):
            return "the service failed the request (code \(code)): \(message)"
        case let .serviceUnavailable(service):
            return "\(service) is not reachable on the bus (nothing is listening at its endpoint)"
        case let .handshakeFailed(service, reason):
            return "the secure handshake with \(service) failed: \(reason)"
        case let .malformed(reason):
            return "malformed bus message: \(reason)"
        case let .messageTooLarge(size, limit):
            return "a bus message of \(size) bytes exceeds the limit of \(limit) bytes"
        case .closed:
            return "the bus connection is closed"
        case .cancelled:
            return "the bus request was cancelled"
        case let .insecureEndpoint(reason):
            return "insecure bus endpoint refused: \(reason)"
        case let .invalidConfiguration(reason):
            return "invalid bus configuration: \(reason)"
        case let .keyFile(path, reason):
            return "bus key file \(path): \(reason)"
        case let .zmq(code, reason):
            return "\(reason) (errno \(code))"
        }
    }

    static func methodName(_ method: UInt16) -> String {
        switch method {
        case BusMessage.pingMethod: "ping"
        case BusMessage.readyMethod: "ready"
        default: "method \(method)"
        }
    }

    static func format(_ duration: Duration) -> String {
        let milliseconds = Double(MonotonicClock.nanoseconds(duration)) / 1_000_000
        if milliseconds >= 1000 { return "\((milliseconds / 10).rounded() / 100) s" }
        return "\((milliseconds * 10).rounded() / 10) ms"
    }

    /// The current libzmq error, described as "`what`: reason".
    static func lastZMQ(_ what: String) -> BusError {
        let code = zmq_errno()
        return BusError(.zmq(errno: code, "\(what): \(String(cString: zmq_strerror(code)))"))
    }
}
