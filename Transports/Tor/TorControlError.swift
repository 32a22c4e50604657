/// Everything that can go wrong talking to tor's control port, each with the one sentence
/// an operator needs.
public enum TorControlError: Error, Equatable, Sendable, CustomStringConvertible {
    case notListening(host: String, port: Int)
    case connectFailed(host: String, port: Int, reason: String)
    case connectTimedOut(host: String, port: Int, timeout: Duration)
    case noControlSocket(path: String, reason: String, permission: Bool)
    case protocolViolation(TorControlProtocolError)
    /// Tor (or whatever listens there) closed the connection before answering.
    case connectionClosed(command: String?)
    /// We closed the controller (`close()`) while the command waited.
    case closedByController(command: String)
    case timedOut(command: String, after: Duration)
    case wrongPassword
    case passwordRequired
    case cannotReadCookie(path: String, reason: String)
    case cookieRejected(path: String)
    case noUsableAuthMethod(offered: [String])
    /// Tor answered a command with an error status.
    case rejected(command: String, status: Int, message: String)
    case unexpectedReply(command: String, reason: String)
    case invalidArgument(String)
    case serviceIDMismatch(expected: String, got: String)
    /// The node's stored onion service key could not be read or written.
    case onionKey(OnionServiceKeyError)

    public var description: String {
        switch self {
        case let .notListening(host, port):
            "nothing is listening on the tor control port \(TorControlEndpoint.Address.tcp(host: host, port: port)) — is tor running?"
        case let .connectFailed(host, port, reason):
            "cannot connect to the tor control port \(TorControlEndpoint.Address.tcp(host: host, port: port)): \(reason)"
        case let .connectTimedOut(host, port, timeout):
            "the tor control port \(TorControlEndpoint.Address.tcp(host: host, port: port)) did not accept a connection within \(timeout)"
        case let .noControlSocket(path, reason, permission):
            "cannot connect to tor's control socket \(path): \(reason)"
                + (permission ? " (is this user in tor's group, e.g. debian-tor?)" : " — is tor running?")
        case let .protocolViolation(error):
            "\(error.description); is this really tor's control port?"
        case let .connectionClosed(command):
            "tor closed the control connection" + (command.map { " before answering \($0)" } ?? "")
        case let .closedByController(command):
            "the tor control connection was closed while \(command) waited for its answer"
        case let .timedOut(command, after):
            "tor did not answer \(command) within \(after)"
        case .wrongPassword:
            "wrong control password: tor rejected it"
        case .passwordRequired:
            "tor requires a password (--tor-password)"
        case let .cannotReadCookie(path, reason):
            "cannot read tor's cookie file \(path): \(reason)"
        case let .cookieRejected(path):
            "tor rejected the cookie from \(path): it is not the cookie of the tor on this control port"
        case let .noUsableAuthMethod(offered):
            "tor offers no authentication method this node supports (offered: \(offered.joined(separator: ", ")))"
        case let .rejected(command, status, message):
            "tor rejected \(command): \(status) \(message)"
        case let .unexpectedReply(command, reason):
            "tor's answer to \(command) is not what the control protocol specifies: \(reason)"
        case let .invalidArgument(reason):
            "invalid control command argument: \(reason)"
        case let .serviceIDMismatch(expected, got):
            "tor named the onion service \(got), but its key belongs to \(expected)"
        case let .onionKey(error):
            error.description
        }
    }
}
