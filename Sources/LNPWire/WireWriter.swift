/// Appends wire encodings to a byte array. All multi-byte integers are big-endian.
///
/// Writing cannot fail: every value this type accepts has an encoding. Callers
/// that know the final size should pass it as `capacity` so the buffer is
/// allocated once.
public struct WireWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Continues writing after existing bytes.
    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    @inlinable
    internal mutating func writeUnsigned<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func writeU8(_ value: UInt8) { bytes.append(value) }
    @inlinable public mutating func writeU16(_ value: UInt16) { writeUnsigned(value) }
    @inlinable public mutating func writeU32(_ value: UInt32) { writeUnsigned(value) }
    @inlinable public mutating func writeU64(_ value: UInt64) { writeUnsigned(value) }

    /// Signed integers are big-endian two's complement (BOLT-1 "Fundamental Types").
    @inlinable public mutating func writeS8(_ value: Int8) { writeU8(UInt8(bitPattern: value)) }
    @inlinable public mutating func writeS16(_ value: Int16) { writeU16(UInt16(bitPattern: value)) }
    @inlinable public mutating func writeS32(_ value: Int32) { writeU32(UInt32(bitPattern: value)) }
    @inlinable public mutating func writeS64(_ value: Int64) { writeU64(UInt64(bitPattern: value)) }

    /// Writes `value` in the smallest of s8/s16/s32/s64 that holds it, as the
    /// signed-integer examples of BOLT-1 Appendix D do. The reader must learn the
    /// width out of band (e.g. from a TLV length).
    @inlinable
    public mutating func writeSignedMinimal(_ value: Int64) {
        if let narrow = Int8(exactly: value) {
            writeS8(narrow)
        } else if let narrow = Int16(exactly: value) {
            writeS16(narrow)
        } else if let narrow = Int32(exactly: value) {
            writeS32(narrow)
        } else {
            writeS64(value)
        }
    }

    @inlinable public mutating func writeBytes(_ data: [UInt8]) { bytes.append(contentsOf: data) }
    @inlinable public mutating func writeBytes(_ data: ArraySlice<UInt8>) { bytes.append(contentsOf: data) }

    @inlinable public mutating func writeBigSize(_ value: UInt64) { BigSize.encode(value, into: &bytes) }

    /// Writes a `tu16` (no leading zero bytes; zero is empty).
    @inlinable public mutating func writeTruncatedU16(_ value: UInt16) { writeTruncated(UInt64(value)) }
    /// Writes a `tu32` (no leading zero bytes; zero is empty).
    @inlinable public mutating func writeTruncatedU32(_ value: UInt32) { writeTruncated(UInt64(value)) }
    /// Writes a `tu64` (no leading zero bytes; zero is empty).
    @inlinable public mutating func writeTruncatedU64(_ value: UInt64) { writeTruncated(value) }

    @inlinable
    internal mutating func writeTruncated(_ value: UInt64) {
        let length = WireWriter.truncatedLength(value)
        var shift = length * 8
        while shift > 0 {
            shift -= 8
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    /// Number of bytes of the minimal truncated encoding of `value` (0 for zero).
    @inlinable
    public static func truncatedLength(_ value: UInt64) -> Int {
        (UInt64.bitWidth - value.leadingZeroBitCount + 7) / 8
    }
}
