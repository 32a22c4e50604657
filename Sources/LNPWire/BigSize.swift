/// BOLT-1 BigSize: a big-endian variant of Bitcoin's CompactSize that must be
/// minimally encoded (1, 3, 5 or 9 bytes).
public enum BigSize {
    @inlinable
    public static func encodedLength(_ value: UInt64) -> Int {
        switch value {
        case 0..<0xfd: return 1
        case 0xfd...0xffff: return 3
        case 0x1_0000...0xffff_ffff: return 5
        default: return 9
        }
    }

    @inlinable
    public static func encode(_ value: UInt64, into bytes: inout [UInt8]) {
        switch value {
        case 0..<0xfd:
            bytes.append(UInt8(truncatingIfNeeded: value))
        case 0xfd...0xffff:
            bytes.append(0xfd)
            withUnsafeBytes(of: UInt16(truncatingIfNeeded: value).bigEndian) { bytes.append(contentsOf: $0) }
        case 0x1_0000...0xffff_ffff:
            bytes.append(0xfe)
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: value).bigEndian) { bytes.append(contentsOf: $0) }
        default:
            bytes.append(0xff)
            withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
        }
    }

    @inlinable
    public static func encode(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encodedLength(value))
        encode(value, into: &bytes)
        return bytes
    }

    @inlinable
    public static func decode(_ reader: inout WireReader) throws(WireError) -> UInt64 {
        try decode(&reader, field: "bigsize")
    }

    /// Decodes one BigSize, rejecting encodings that are not minimal.
    @inlinable
    public static func decode(_ reader: inout WireReader, field: String) throws(WireError) -> UInt64 {
        let start = reader.offset
        let prefix = try reader.readU8(field: field)
        let value: UInt64
        let minimum: UInt64
        switch prefix {
        case 0xfd:
            value = UInt64(try reader.readU16(field: field))
            minimum = 0xfd
        case 0xfe:
            value = UInt64(try reader.readU32(field: field))
            minimum = 0x1_0000
        case 0xff:
            value = try reader.readU64(field: field)
            minimum = 0x1_0000_0000
        default:
            return UInt64(prefix)
        }
        guard value >= minimum else {
            throw WireError(.nonCanonicalBigSize, offset: start, context: field)
        }
        return value
    }
}
