/// Where a running tor's control port is and how to authenticate to it.
public struct TorControlEndpoint: Sendable, Equatable, CustomStringConvertible {
    public enum Address: Sendable, Equatable, CustomStringConvertible {
        /// `ControlPort HOST:PORT` (what the node's own tor uses: `ControlPort auto`).
        case tcp(host: String, port: Int)
        /// `ControlSocket PATH`, e.g. Debian's system tor: /run/tor/control.
        case unixSocket(path: String)

        public var description: String {
            switch self {
            case let .tcp(host, port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case let .unixSocket(path): "unix:\(path)"
            }
        }
    }

    public var address: Address
    /// The cookie file to authenticate with; nil: the one tor names in PROTOCOLINFO.
    public var cookiePath: String?

    public init(address: Address, cookiePath: String? = nil) {
        self.address = address
        self.cookiePath = cookiePath
    }

    public init(host: String, port: Int, cookiePath: String? = nil) {
        self.init(address: .tcp(host: host, port: port), cookiePath: cookiePath)
    }

    public var description: String { address.description }
}
