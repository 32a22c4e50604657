import LNPCrypto
import LNPWire

/// A request, reply or event body on the service bus, encoded with the project's wire
/// codec: fixed fields in order, big-endian, lengths before variable data. Decoding is
/// bounded and never traps; trailing bytes are an error.
public protocol RPCPayload: Sendable {
    func encode(into writer: inout WireWriter)
    init(from reader: inout WireReader) throws(WireError)
    /// The encoded size, or a close guess, so `encoded()` allocates once: payloads that
    /// carry many megabytes of messages would otherwise be copied as the buffer grows.
    var encodedSizeHint: Int { get }
}

extension RPCPayload {
    public var encodedSizeHint: Int { 0 }

    public func encoded() -> [UInt8] {
        var writer = WireWriter(capacity: encodedSizeHint)
        encode(into: &writer)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Self {
        var reader = WireReader(bytes)
        let value = try Self(from: &reader)
        try reader.expectEnd(field: String(describing: Self.self))
        return value
    }
}

/// The empty body.
public struct Empty: RPCPayload, Equatable {
    public init() {}
    public func encode(into writer: inout WireWriter) {}
    public init(from reader: inout WireReader) throws(WireError) {}
}

/// Limits on what a bus peer may ask us to allocate.
public enum RPCLimits {
    public static let maximumStringLength = 4_096
    public static let maximumListCount = 1_000_000
    public static let maximumBlobLength = 16_777_215
}

extension WireWriter {
    public mutating func writeString(_ value: String) {
        let utf8 = Array(value.utf8.prefix(RPCLimits.maximumStringLength))
        writeU16(UInt16(utf8.count))
        writeBytes(utf8)
    }

    public mutating func writeBlob(_ value: [UInt8]) {
        writeU32(UInt32(value.count))
        writeBytes(value)
    }

    public mutating func writeNodeID(_ key: PublicKey) { writeBytes(key.compressed) }

    public mutating func writeOptionalNodeID(_ key: PublicKey?) {
        if let key {
            writeU8(1)
            writeNodeID(key)
        } else {
            writeU8(0)
        }
    }

    public mutating func writeOptionalString(_ value: String?) {
        if let value {
            writeU8(1)
            writeString(value)
        } else {
            writeU8(0)
        }
    }

    public mutating func writeBool(_ value: Bool) { writeU8(value ? 1 : 0) }

    public mutating func writeList<T: RPCPayload>(_ values: [T]) {
        writeU32(UInt32(values.count))
        for value in values { value.encode(into: &self) }
    }
}

extension WireReader {
    public mutating func readString(field: String) throws(WireError) -> String {
        let length = Int(try readU16(field: field + ".length"))
        guard length <= RPCLimits.maximumStringLength else {
            throw WireError(.fieldTooLong(maximum: RPCLimits.maximumStringLength, actual: length), offset: offset, context: field)
        }
        let bytes = try readBytes(length, field: field)
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw WireError(.invalidValue("not UTF-8"), offset: offset, context: field)
        }
        return string
    }

    public mutating func readBlob(field: String, maximum: Int = RPCLimits.maximumBlobLength) throws(WireError) -> [UInt8] {
        let length = Int(try readU32(field: field + ".length"))
        guard length <= maximum else {
            throw WireError(.fieldTooLong(maximum: maximum, actual: length), offset: offset, context: field)
        }
        return try readBytes(length, field: field)
    }

    public mutating func readNodeID(field: String) throws(WireError) -> PublicKey {
        let start = offset
        let bytes = try readBytes(33, field: field)
        guard let key = try? PublicKey(bytes) else {
            throw WireError(.invalidValue("not a valid secp256k1 public key"), offset: start, context: field)
        }
        return key
    }

    public mutating func readOptionalNodeID(field: String) throws(WireError) -> PublicKey? {
        try readBool(field: field + ".present") ? try readNodeID(field: field) : nil
    }

    public mutating func readOptionalString(field: String) throws(WireError) -> String? {
        try readBool(field: field + ".present") ? try readString(field: field) : nil
    }

    public mutating func readBool(field: String) throws(WireError) -> Bool {
        let start = offset
        switch try readU8(field: field) {
        case 0: return false
        case 1: return true
        case let other: throw WireError(.invalidValue("boolean byte \(other)"), offset: start, context: field)
        }
    }

    public mutating func readList<T: RPCPayload>(_ type: T.Type, field: String, maximum: Int = RPCLimits.maximumListCount) throws(WireError) -> [T] {
        let count = Int(try readU32(field: field + ".count"))
        // Each element takes at least one byte, so a count beyond what remains is a lie.
        guard count <= maximum, count <= remaining else {
            throw WireError(.invalidValue("list of \(count) elements"), offset: offset, context: field)
        }
        var values: [T] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try T(from: &self)) }
        return values
    }
}

/// Errors a service reports back over the bus. The message is a sentence for a person;
/// the code lets a program react.
public enum RPCErrorCode: UInt16, Sendable {
    case invalidRequest = 1
    case unknownPeer = 2
    case notConnected = 3
    case malformedAddress = 4
    case timeout = 5
    case connectFailed = 6
    case unknownMessage = 7
    case storage = 8
    case internalError = 9
    case refused = 10
}
