import LNPTransport
import LNPTransportTor

/// How this node uses Tor, resolved from lnpd's options (`NodeConfiguration`).
public struct TorSettings: Equatable, Sendable {
    public enum Source: Equatable, Sendable {
        /// No Tor: onion peers cannot be reached and nothing is published.
        case none
        /// A tor the user runs: its SOCKS port, its control port, or both (a missing SOCKS
        /// port is asked from the control port: `GETINFO net/listeners/socks`).
        case external(socks: TorEndpoint?, control: TorControlEndpoint.Address?)
        /// The node starts and supervises its own tor, with its own data directory.
        /// `implicit` when nothing about Tor was configured and `tor` is installed.
        case launch(torBinary: String, implicit: Bool)
    }

    public var source: Source = .none
    /// Cookie file for the control port's COOKIE/SAFECOOKIE authentication; nil means the
    /// path tor gives in PROTOCOLINFO.
    public var cookiePath: String?
    public var password: String?
    /// Publish the TCP listener as an onion service (a key kept in the data directory, so
    /// the same .onion after every restart) and advertise it.
    public var publishOnion = false
    /// Never touch clearnet: only onion peers, loopback listeners, no local DNS.
    public var torOnly = false

    public init() {}

    public var isEnabled: Bool { source != .none }

    /// Whether a control-port connection is needed.
    public var usesControlPort: Bool {
        switch source {
        case .none: false
        case let .external(_, control): control != nil
        case .launch: true
        }
    }
}

/// `HOST:PORT` of a tor port (IPv6 in brackets).
public struct TorEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT`; a bare port means 127.0.0.1.
    public init(parsing text: String) throws(AddressError) {
        if let port = UInt16(text), port > 0 {
            self.init(host: "127.0.0.1", port: port)
            return
        }
        let listen = try ListenAddress(parsing: text)
        guard case let .tcp(host, port) = listen.location else {
            throw .unknownScheme(listen.location.scheme)
        }
        guard port > 0 else { throw .portOutOfRange(text, allowed: 1...65535) }
        self.init(host: host.description, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension TorControlEndpoint.Address {
    /// `HOST:PORT`, a bare port (127.0.0.1), or `unix:PATH` for a ControlSocket (Debian's
    /// system tor: unix:/run/tor/control).
    public init(parsingControl text: String) throws(AddressError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/") else { throw .relativePath(path) }
            self = .unixSocket(path: path)
            return
        }
        let endpoint = try TorEndpoint(parsing: text)
        self = .tcp(host: endpoint.host, port: Int(endpoint.port))
    }
}
