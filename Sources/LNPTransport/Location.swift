import LNPCrypto

/// How a link behaves, which decides how the session and the message layer run over it.
public enum LinkKind: Hashable, Sendable, CustomStringConvertible {
    /// Reliable and ordered while connected (TCP, Tor): standard BOLT-8 frames. Bytes in
    /// flight when a connection drops are lost, so the message layer resends after a reconnect.
    case stream
    /// Datagrams that may be lost, duplicated or reordered (UDP, serial lines).
    case frame
    /// No round trips at all (spool directories, carried files): sealed envelopes.
    case storeAndForward

    public var description: String {
        switch self {
        case .stream: "stream"
        case .frame: "frame"
        case .storeAndForward: "store-and-forward"
        }
    }
}

/// Where a link goes, without the node id: the part after `NODEID@` of a peer address and
/// the whole of a listen address.
public enum Location: Hashable, Sendable, CustomStringConvertible {
    case tcp(host: Host, port: UInt16)
    case udp(host: Host, port: UInt16)
    case serial(path: String, baud: Int)
    case spool(path: String)

    /// Used when a serial address has no `?baud=`.
    public static let defaultBaudRate = 115_200
    public static let baudRates: ClosedRange<Int> = 50...4_000_000

    public var linkKind: LinkKind {
        switch self {
        case .tcp: .stream
        case .udp, .serial: .frame
        case .spool: .storeAndForward
        }
    }

    /// The URL-style scheme; TCP addresses are printed without it.
    public var scheme: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .serial: "serial"
        case .spool: "spool"
        }
    }

    /// The text after `SCHEME://` and `NODEID@`.
    var locationText: String {
        switch self {
        case let .tcp(host, port), let .udp(host, port): host.description(port: port)
        case let .serial(path, baud): "\(path)?baud=\(baud)"
        case let .spool(path): path
        }
    }

    /// The canonical listen-address form: `HOST:PORT`, `udp://HOST:PORT`,
    /// `serial:///dev/ttyS0?baud=9600`, `spool:///path`.
    public var description: String {
        if case .tcp = self { return locationText }
        return "\(scheme)://\(locationText)"
    }
}

/// A peer to dial: `NODEID@HOST:PORT` for TCP (an onion host goes through Tor), or
/// `SCHEME://NODEID@LOCATION` (`tcp`, `udp`, `serial`, `spool`).
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public var nodeID: PublicKey
    public var location: Location

    public init(nodeID: PublicKey, location: Location) {
        self.nodeID = nodeID
        self.location = location
    }

    public init(parsing text: String) throws(AddressError) {
        let parsed = try AddressParser.parse(text, expectingNodeID: true)
        guard let nodeID = parsed.nodeID else { throw .missingNodeID }
        self.init(nodeID: nodeID, location: parsed.location)
    }

    public init?(_ description: String) {
        guard let address = try? PeerAddress(parsing: description) else { return nil }
        self = address
    }

    public var linkKind: LinkKind { location.linkKind }

    public var description: String {
        if case .tcp = location { return "\(nodeID.hex)@\(location.locationText)" }
        return "\(location.scheme)://\(nodeID.hex)@\(location.locationText)"
    }
}

/// Where to accept links: a peer address without `NODEID@` (`0.0.0.0:9735`, `[::]:9735`,
/// `127.0.0.1:0`, `udp://0.0.0.0:9735`, `serial:///dev/ttyS0?baud=9600`, `spool:///path`).
/// Port 0 asks the system for a free port.
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public var location: Location

    public init(location: Location) {
        self.location = location
    }

    public init(parsing text: String) throws(AddressError) {
        self.init(location: try AddressParser.parse(text, expectingNodeID: false).location)
    }

    public init?(_ description: String) {
        guard let address = try? ListenAddress(parsing: description) else { return nil }
        self = address
    }

    public var linkKind: LinkKind { location.linkKind }
    public var description: String { location.description }
}

/// The one parser behind `PeerAddress` and `ListenAddress`.
enum AddressParser {
    static func parse(_ text: String, expectingNodeID: Bool) throws(AddressError) -> (nodeID: PublicKey?, location: Location) {
        guard !text.isEmpty else { throw .empty }
        if let position = text.unicodeScalars.firstIndex(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw .controlCharacter(position: text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: position))
        }
        var scheme = "tcp"
        var rest = Substring(text)
        if let separator = text.firstRange(of: "://") {
            scheme = text[..<separator.lowerBound].lowercased()
            rest = text[separator.upperBound...]
            guard ["tcp", "udp", "serial", "spool"].contains(scheme) else {
                throw .unknownScheme(String(text[..<separator.lowerBound]))
            }
        }

        var nodeID: PublicKey?
        if expectingNodeID {
            guard let at = rest.firstIndex(of: "@") else { throw .missingNodeID }
            nodeID = try parseNodeID(rest[..<at])
            rest = rest[rest.index(after: at)...]
        } else if let at = rest.firstIndex(of: "@"), !rest[..<at].contains("/") {
            throw .unexpectedNodeID
        }

        let portRange = expectingNodeID ? 1...65535 : 0...65535
        switch scheme {
        case "tcp":
            let (host, port) = try parseHostPort(rest, allowedPorts: portRange)
            if host.isOnion, !expectingNodeID { throw .onionListen(host.description) }
            return (nodeID, .tcp(host: host, port: port))
        case "udp":
            let (host, port) = try parseHostPort(rest, allowedPorts: portRange)
            if host.isOnion { throw .onionNotOverStream(scheme: scheme) }
            return (nodeID, .udp(host: host, port: port))
        case "serial":
            let (path, query) = try splitPath(rest, scheme: scheme)
            var baud: Int?
            for parameter in query?.split(separator: "&", omittingEmptySubsequences: false) ?? [] {
                let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard pair[0] == "baud", pair.count == 2 else { throw .unknownParameter(String(pair[0]), scheme: scheme) }
                guard baud == nil else { throw .duplicateParameter("baud") }
                let value = pair[1]
                guard !value.isEmpty, value.utf8.allSatisfy(Host.isDigit), value.first != "0",
                      let rate = Int(value), Location.baudRates.contains(rate) else { throw .invalidBaudRate(String(value)) }
                baud = rate
            }
            return (nodeID, .serial(path: path, baud: baud ?? Location.defaultBaudRate))
        default:  // spool
            let (path, query) = try splitPath(rest, scheme: scheme)
            if let query { throw .unknownParameter(String(query.prefix { $0 != "=" && $0 != "&" }), scheme: scheme) }
            return (nodeID, .spool(path: path))
        }
    }

    static func parseNodeID(_ text: Substring) throws(AddressError) -> PublicKey {
        guard text.utf8.count == 66 else { throw .nodeIDLength(text.utf8.count) }
        for (position, byte) in text.utf8.enumerated() {
            let isHex = Host.isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
            guard isHex else { throw .nodeIDNotHex(position: position) }
        }
        guard let key = try? PublicKey(hex: String(text)), key.compressed.count == 33 else { throw .nodeIDNotAPublicKey }
        return key
    }

    static func parseHostPort(_ text: Substring, allowedPorts: ClosedRange<Int>) throws(AddressError) -> (Host, UInt16) {
        let hostText: Substring
        let afterHost: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw .invalidIPv6(String(text.dropFirst()), reason: "the closing ']' is missing")
            }
            hostText = text[text.index(after: text.startIndex)..<close]
            afterHost = text[text.index(after: close)...]
            guard !hostText.isEmpty else { throw .missingHost }
            let host = Host.ipv6(try Host.parseIPv6(String(hostText)))
            guard !afterHost.isEmpty else { throw .missingPort(host: "[\(hostText)]") }
            guard afterHost.hasPrefix(":") else { throw .invalidPort(String(afterHost)) }
            return (host, try parsePort(afterHost.dropFirst(), allowed: allowedPorts))
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 { throw .unbracketedIPv6(String(text)) }
        guard let colon = text.firstIndex(of: ":") else {
            if text.isEmpty { throw .missingHost }
            throw .missingPort(host: String(text))
        }
        hostText = text[..<colon]
        guard !hostText.isEmpty else { throw .missingHost }
        let host = try Host(parsing: String(hostText))
        return (host, try parsePort(text[text.index(after: colon)...], allowed: allowedPorts))
    }

    static func parsePort(_ text: Substring, allowed: ClosedRange<Int>) throws(AddressError) -> UInt16 {
        guard !text.isEmpty, text.utf8.allSatisfy(Host.isDigit), text == "0" || text.first != "0" else {
            throw .invalidPort(String(text))
        }
        guard text.utf8.count <= 5, let value = Int(text), allowed.contains(value) else {
            throw .portOutOfRange(String(text), allowed: allowed)
        }
        return UInt16(value)
    }

    static func splitPath(_ text: Substring, scheme: String) throws(AddressError) -> (path: String, query: Substring?) {
        let path: Substring
        var query: Substring?
        if let mark = text.firstIndex(of: "?") {
            path = text[..<mark]
            query = text[text.index(after: mark)...]
        } else {
            path = text
        }
        guard !path.isEmpty else { throw .missingPath(scheme: scheme) }
        guard path.hasPrefix("/") else { throw .relativePath(String(path)) }
        return (String(path), query)
    }
}
