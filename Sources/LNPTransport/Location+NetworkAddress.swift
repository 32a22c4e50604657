import LNPWire

extension Host {
    /// The BOLT-7 address descriptor of this host at `port` (as carried by `init`'s
    /// `remote_addr` and by `node_announcement`).
    public func networkAddress(port: UInt16) -> NetworkAddress {
        switch self {
        case let .ipv4(bytes): return .ipv4(address: bytes, port: port)
        case let .ipv6(bytes): return .ipv6(address: bytes, port: port)
        case let .dns(name): return .dnsHostname(name, port: port)
        case let .onion(name):
            // A validated onion name always decodes to 35 bytes.
            return .torV3(address: OnionServiceAddress.decode(name) ?? [], port: port)
        }
    }
}

extension Location {
    /// The BOLT-7 descriptor of a TCP location; nil for links BOLT-7 cannot describe.
    public var networkAddress: NetworkAddress? {
        guard case let .tcp(host, port) = self else { return nil }
        return host.networkAddress(port: port)
    }

    /// A TCP location from a BOLT-7 descriptor; nil for deprecated Tor v2 and unknown
    /// types, and for descriptors that do not hold a valid address (wrong sizes, a
    /// DNS name or onion name that would not parse).
    public init?(_ address: NetworkAddress) {
        switch address {
        case let .ipv4(bytes, port) where bytes.count == 4:
            self = .tcp(host: .ipv4(bytes), port: port)
        case let .ipv6(bytes, port) where bytes.count == 16:
            self = .tcp(host: .ipv6(bytes), port: port)
        case let .torV3(bytes, port) where bytes.count == OnionServiceAddress.decodedLength:
            let name = OnionServiceAddress.base32Encode(bytes)
            guard (try? OnionServiceAddress.validate(name + ".onion")) != nil else { return nil }
            self = .tcp(host: .onion(name), port: port)
        case let .dnsHostname(name, port):
            guard let host = try? Host(parsing: name), case .dns = host else { return nil }
            self = .tcp(host: host, port: port)
        default:
            return nil
        }
    }
}
