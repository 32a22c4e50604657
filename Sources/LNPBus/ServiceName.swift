/// The name of a service on the bus. It becomes part of endpoint names and socket
/// file names, so only short lowercase ASCII names are accepted.
public struct ServiceName: Hashable, Sendable, RawRepresentable, CustomStringConvertible, Comparable {
    public let rawValue: String

    public static let maximumLength = 32

    /// nil unless `rawValue` is 1...32 characters of `a-z`, `0-9`, `-`, `_`, starting with a letter.
    public init?(rawValue: String) {
        guard ServiceName.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    private init(known: String) {
        rawValue = known
    }

    static func isValid(_ name: String) -> Bool {
        let utf8 = Array(name.utf8)
        guard let first = utf8.first, !utf8.isEmpty, utf8.count <= maximumLength,
              (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first)
        else { return false }
        return utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }

    public static let lnpd = ServiceName(known: "lnpd")
    public static let keyd = ServiceName(known: "keyd")
    public static let peerd = ServiceName(known: "peerd")
    public static let msgd = ServiceName(known: "msgd")
    public static let routed = ServiceName(known: "routed")
    public static let gossipd = ServiceName(known: "gossipd")
    public static let channeld = ServiceName(known: "channeld")

    /// The node's services in the order that assigns their tcp ports (see `BusLayout`).
    public static let standard: [ServiceName] = [.lnpd, .keyd, .peerd, .msgd, .routed, .gossipd, .channeld]

    public var description: String { rawValue }

    public static func < (lhs: ServiceName, rhs: ServiceName) -> Bool { lhs.rawValue < rhs.rawValue }
}
