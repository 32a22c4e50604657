/// A BOLT-7 `address descriptor`: one type byte followed by type-specific data.
/// Used by `init`'s `remote_addr` TLV (and `node_announcement`).
public enum NetworkAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Type 1: 4-byte IPv4 address and port.
    case ipv4(address: [UInt8], port: UInt16)
    /// Type 2: 16-byte IPv6 address and port.
    case ipv6(address: [UInt8], port: UInt16)
    /// Type 3: deprecated Tor v2 onion service, 12 bytes kept opaque.
    case torV2(data: [UInt8])
    /// Type 4: 35-byte Tor v3 onion address (pubkey ‖ checksum ‖ version) and port.
    case torV3(address: [UInt8], port: UInt16)
    /// Type 5: ASCII DNS hostname (1...255 bytes) and port.
    case dnsHostname(String, port: UInt16)
    /// Any other type; its length is not known, so `data` is everything after the type byte.
    case unknown(type: UInt8, data: [UInt8])

    public var typeCode: UInt8 {
        switch self {
        case .ipv4: return 1
        case .ipv6: return 2
        case .torV2: return 3
        case .torV3: return 4
        case .dnsHostname: return 5
        case let .unknown(type, _): return type
        }
    }

    /// Decodes one descriptor that fills `reader` completely (as in `remote_addr`).
    /// Known types must have exactly their size; an unknown type takes the rest.
    public static func decode(_ reader: inout WireReader) throws(WireError) -> NetworkAddress {
        do throws(WireError) {
            let address = try decodeOne(&reader)
            try reader.expectEnd(field: "data")
            return address
        } catch {
            throw error.inContext("address_descriptor")
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> NetworkAddress {
        var reader = WireReader(bytes)
        return try decode(&reader)
    }

    private static func decodeOne(_ reader: inout WireReader) throws(WireError) -> NetworkAddress {
        let type = try reader.readU8(field: "type")
        switch type {
        case 1:
            let address = try reader.readBytes(4, field: "ipv4_addr")
            return .ipv4(address: address, port: try reader.readU16(field: "port"))
        case 2:
            let address = try reader.readBytes(16, field: "ipv6_addr")
            return .ipv6(address: address, port: try reader.readU16(field: "port"))
        case 3:
            return .torV2(data: try reader.readBytes(12, field: "torv2"))
        case 4:
            let address = try reader.readBytes(35, field: "onion_addr")
            return .torV3(address: address, port: try reader.readU16(field: "port"))
        case 5:
            let lengthOffset = reader.offset
            let length = try reader.readU8(field: "hostname_len")
            guard length > 0 else {
                throw WireError(.invalidValue("empty hostname"), offset: lengthOffset, context: "hostname_len")
            }
            let hostnameOffset = reader.offset
            let hostname = try reader.readBytes(Int(length), field: "hostname")
            // BOLT-7: "hostname bytes MUST be ASCII characters" (non-ASCII names travel as Punycode).
            if let index = hostname.firstIndex(where: { $0 >= 0x80 }) {
                throw WireError(.invalidValue("non-ASCII hostname byte"), offset: hostnameOffset + index, context: "hostname")
            }
            let port = try reader.readU16(field: "port")
            return .dnsHostname(String(decoding: hostname, as: UTF8.self), port: port)
        default:
            return .unknown(type: type, data: reader.readRemainingBytes())
        }
    }

    /// Reports values whose encoding would not decode back to `self`.
    public func checkEncodable() throws(WireError) {
        func expectCount(_ bytes: [UInt8], _ expected: Int, _ field: String) throws(WireError) {
            guard bytes.count == expected else {
                throw WireError(.invalidFieldLength(expected: expected, actual: bytes.count), offset: 1, context: field)
            }
        }
        switch self {
        case let .ipv4(address, _): try expectCount(address, 4, "ipv4_addr")
        case let .ipv6(address, _): try expectCount(address, 16, "ipv6_addr")
        case let .torV2(data): try expectCount(data, 12, "torv2")
        case let .torV3(address, _): try expectCount(address, 35, "onion_addr")
        case let .dnsHostname(hostname, _):
            let utf8 = hostname.utf8
            guard !utf8.isEmpty, utf8.count <= 255 else {
                throw WireError(.invalidValue("hostname must be 1...255 bytes"), offset: 1, context: "hostname")
            }
            guard utf8.allSatisfy({ $0 < 0x80 }) else {
                throw WireError(.invalidValue("non-ASCII hostname"), offset: 2, context: "hostname")
            }
        case let .unknown(type, _):
            guard !(1...5).contains(type) else {
                throw WireError(.invalidValue("type \(type) is a known descriptor type"), offset: 0, context: "type")
            }
        }
    }

    public var encodedLength: Int {
        switch self {
        case .ipv4: return 7
        case .ipv6: return 19
        case .torV2: return 13
        case .torV3: return 38
        case let .dnsHostname(hostname, _): return 4 + hostname.utf8.count
        case let .unknown(_, data): return 1 + data.count
        }
    }

    /// Writes the descriptor. Sizes are written as given; see `checkEncodable()`.
    /// A hostname longer than 255 bytes cannot be represented and traps.
    public func encode(into writer: inout WireWriter) {
        writer.writeU8(typeCode)
        switch self {
        case let .ipv4(address, port), let .ipv6(address, port), let .torV3(address, port):
            writer.writeBytes(address)
            writer.writeU16(port)
        case let .torV2(data):
            writer.writeBytes(data)
        case let .dnsHostname(hostname, port):
            guard let length = UInt8(exactly: hostname.utf8.count) else {
                preconditionFailure("DNS hostname of \(hostname.utf8.count) bytes exceeds 255")
            }
            writer.writeU8(length)
            writer.bytes.append(contentsOf: hostname.utf8)
            writer.writeU16(port)
        case let .unknown(_, data):
            writer.writeBytes(data)
        }
    }

    public func encode() -> [UInt8] {
        var writer = WireWriter(capacity: encodedLength)
        encode(into: &writer)
        return writer.bytes
    }

    public var description: String {
        switch self {
        case let .ipv4(address, port):
            return address.map { String($0) }.joined(separator: ".") + ":\(port)"
        case let .ipv6(address, port):
            var groups: [String] = []
            var index = 0
            while index + 1 < address.count {
                groups.append(String(UInt16(address[index]) << 8 | UInt16(address[index + 1]), radix: 16))
                index += 2
            }
            return "[" + groups.joined(separator: ":") + "]:\(port)"
        case let .torV2(data):
            return NetworkAddress.base32(data) + ".onion (Tor v2, deprecated)"
        case let .torV3(address, port):
            return NetworkAddress.base32(address) + ".onion:\(port)"
        case let .dnsHostname(hostname, port):
            return "\(hostname):\(port)"
        case let .unknown(type, data):
            return "address type \(type) (\(data.count) bytes)"
        }
    }

    /// RFC 4648 base32, lowercase, unpadded: the alphabet of .onion names.
    private static func base32(_ bytes: [UInt8]) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var result = ""
        var buffer: UInt32 = 0
        var bufferedBits = 0
        for byte in bytes {
            buffer = (buffer << 8) | UInt32(byte)
            bufferedBits += 8
            while bufferedBits >= 5 {
                bufferedBits -= 5
                result.append(alphabet[Int((buffer >> UInt32(bufferedBits)) & 31)])
            }
            buffer &= (1 << UInt32(bufferedBits)) - 1
        }
        if bufferedBits > 0 {
            result.append(alphabet[Int((buffer << UInt32(5 - bufferedBits)) & 31)])
        }
        return result
    }
}
