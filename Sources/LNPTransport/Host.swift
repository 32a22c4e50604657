/// Where a TCP or UDP peer lives: an IP address, a DNS name or a Tor v3 onion service.
///
/// Values are canonical, so equal hosts compare equal: IP addresses are raw bytes, DNS
/// names and onion names are lowercase.
public enum Host: Hashable, Sendable, CustomStringConvertible {
    /// 4 bytes.
    case ipv4([UInt8])
    /// 16 bytes.
    case ipv6([UInt8])
    /// A lowercase RFC 1123 host name.
    case dns(String)
    /// The 56 lowercase base32 characters of a v3 onion service, without ".onion".
    case onion(String)

    /// Parses a host as written in an address (IPv6 without its brackets).
    public init(parsing text: String) throws(AddressError) {
        guard !text.isEmpty else { throw .missingHost }
        let lowercase = text.lowercased()
        if lowercase.hasSuffix(".onion") {
            self = .onion(try OnionServiceAddress.validate(lowercase))
        } else if text.contains(":") {
            self = .ipv6(try Host.parseIPv6(text))
        } else if text.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || Host.isDigit($0) }) {
            self = .ipv4(try Host.parseIPv4(text))
        } else {
            self = .dns(try Host.validateHostName(lowercase, original: text))
        }
    }

    /// The host as printed inside an address: IPv6 compressed (RFC 5952) without
    /// brackets, names lowercase, onion names with ".onion".
    public var description: String {
        switch self {
        case let .ipv4(bytes): Host.formatIPv4(bytes)
        case let .ipv6(bytes): Host.formatIPv6(bytes)
        case let .dns(name): name
        case let .onion(name): name + ".onion"
        }
    }

    /// `HOST:PORT` with IPv6 in brackets.
    public func description(port: UInt16) -> String {
        if case .ipv6 = self { return "[\(description)]:\(port)" }
        return "\(description):\(port)"
    }

    public var isOnion: Bool {
        if case .onion = self { return true }
        return false
    }

    /// False for IP addresses that cannot be reached from the public internet (loopback,
    /// private, shared, link-local, documentation, multicast and reserved ranges); true
    /// for every public IP, DNS name and onion service. BOLT-1 forbids reporting a
    /// private address in `init`'s `remote_addr`.
    public var isGloballyRoutable: Bool {
        switch self {
        case let .ipv4(bytes):
            return Host.isGloballyRoutableIPv4(bytes)
        case let .ipv6(bytes):
            guard bytes.count == 16 else { return false }
            if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
                return Host.isGloballyRoutableIPv4(Array(bytes[12..<16]))
            }
            if bytes.allSatisfy({ $0 == 0 }) { return false }  // :: unspecified
            if bytes[0..<15].allSatisfy({ $0 == 0 }), bytes[15] == 1 { return false }  // ::1
            if bytes[0] & 0xfe == 0xfc { return false }  // fc00::/7 unique local
            if bytes[0] == 0xfe, bytes[1] & 0xc0 == 0x80 { return false }  // fe80::/10 link local
            if bytes[0] == 0xff { return false }  // multicast
            if bytes[0] == 0x20, bytes[1] == 0x01, bytes[2] == 0x0d, bytes[3] == 0xb8 { return false }  // documentation
            return true
        case .dns, .onion:
            return true
        }
    }

    private static func isGloballyRoutableIPv4(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == 4 else { return false }
        let (a, b, c) = (bytes[0], bytes[1], bytes[2])
        switch a {
        case 0, 10, 127: return false
        case 100 where b & 0xc0 == 64: return false  // 100.64/10 carrier-grade NAT
        case 169 where b == 254: return false
        case 172 where b & 0xf0 == 16: return false
        case 192 where b == 168: return false
        case 192 where b == 0 && (c == 0 || c == 2): return false
        case 198 where b & 0xfe == 18: return false  // 198.18/15 benchmarking
        case 198 where b == 51 && c == 100: return false
        case 203 where b == 0 && c == 113: return false
        case 224...255: return false  // multicast and reserved
        default: return true
        }
    }

    // MARK: IPv4

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    static func parseIPv4(_ text: some StringProtocol) throws(AddressError) -> [UInt8] {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { throw .invalidIPv4(String(text)) }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.utf8.count), part.utf8.allSatisfy(isDigit),
                  part.utf8.count == 1 || part.utf8.first != UInt8(ascii: "0"),
                  let value = UInt8(part) else { throw .invalidIPv4(String(text)) }
            bytes.append(value)
        }
        return bytes
    }

    static func formatIPv4(_ bytes: [UInt8]) -> String {
        bytes.map { String($0) }.joined(separator: ".")
    }

    // MARK: IPv6

    static func parseIPv6(_ text: String) throws(AddressError) -> [UInt8] {
        func fail(_ reason: String) -> AddressError { .invalidIPv6(text, reason: reason) }
        if text.contains("%") { throw fail("zone indexes (%...) are not supported") }
        let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { throw fail("'::' may appear only once") }

        func groups(_ part: String, allowIPv4Tail: Bool) throws(AddressError) -> [UInt16] {
            guard !part.isEmpty else { return [] }
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            var result: [UInt16] = []
            for (index, piece) in pieces.enumerated() {
                if piece.contains("."), allowIPv4Tail, index == pieces.count - 1 {
                    guard let v4 = try? parseIPv4(piece) else { throw fail("'\(piece)' is not a valid embedded IPv4 address") }
                    result.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    result.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard !piece.isEmpty else { throw fail("a group between colons is empty") }
                guard piece.utf8.count <= 4, let value = UInt16(piece, radix: 16), !piece.hasPrefix("+"), !piece.hasPrefix("-")
                else { throw fail("'\(piece)' is not a group of 1 to 4 hex digits") }
                result.append(value)
            }
            return result
        }

        var all: [UInt16]
        if halves.count == 2 {
            let head = try groups(halves[0], allowIPv4Tail: false)
            let tail = try groups(halves[1], allowIPv4Tail: true)
            guard head.count + tail.count <= 7 else { throw fail("too many groups around '::'") }
            all = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            all = try groups(text, allowIPv4Tail: true)
            guard all.count == 8 else { throw fail("expected 8 groups, got \(all.count)") }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for group in all {
            bytes.append(UInt8(group >> 8))
            bytes.append(UInt8(group & 0xff))
        }
        return bytes
    }

    /// RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups
    /// (the first on a tie) as "::", IPv4-mapped addresses in dotted form.
    static func formatIPv6(_ bytes: [UInt8]) -> String {
        guard bytes.count == 16 else { return "invalid IPv6 (\(bytes.count) bytes)" }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return "::ffff:" + formatIPv4(Array(bytes[12..<16]))
        }
        let groups = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        var bestStart = -1
        var bestLength = 0
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else { index += 1; continue }
            let start = index
            while index < 8, groups[index] == 0 { index += 1 }
            if index - start > bestLength {
                bestStart = start
                bestLength = index - start
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        guard bestLength >= 2 else { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    // MARK: DNS

    static func validateHostName(_ name: String, original: String) throws(AddressError) -> String {
        func fail(_ reason: String) -> AddressError { .invalidHostName(original, reason: reason) }
        let utf8 = Array(name.utf8)
        guard utf8.count <= 253 else { throw fail("it is longer than 253 characters") }
        if utf8.last == UInt8(ascii: ".") { throw fail("it ends with a dot") }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard !label.isEmpty else { throw fail("it has an empty label (two dots in a row, or a leading dot)") }
            guard label.utf8.count <= 63 else { throw fail("the label '\(label)' is longer than 63 characters") }
            for byte in label.utf8 {
                let allowed = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || isDigit(byte) || byte == UInt8(ascii: "-")
                guard allowed else {
                    let character = byte < 0x80 ? "'\(Character(Unicode.Scalar(byte)))'" : "a non-ASCII character (use Punycode)"
                    throw fail("it contains \(character); only letters, digits, '-' and '.' are allowed")
                }
            }
            if label.hasPrefix("-") || label.hasSuffix("-") { throw fail("the label '\(label)' starts or ends with '-'") }
        }
        if let last = labels.last, last.utf8.allSatisfy(isDigit) {
            throw fail("the last label '\(last)' is all digits")
        }
        return name
    }
}
