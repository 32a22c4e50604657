/// A bounds-checked cursor over wire bytes. All multi-byte integers are big-endian.
///
/// Every read checks the remaining length first and throws `WireError`
/// instead of trapping, so a reader can be pointed at arbitrary untrusted input.
/// Offsets in errors are absolute: a sub-reader (see `readSubReader`) keeps
/// counting from the position of its first byte in the outer input.
public struct WireReader: Sendable {
    @usableFromInline internal let storage: ArraySlice<UInt8>
    /// Current index into `storage` (in the slice's own index space).
    @usableFromInline internal var position: Int
    /// Absolute offset of `storage.startIndex` in the original input.
    @usableFromInline internal let baseOffset: Int

    public init(_ bytes: [UInt8]) {
        self.init(bytes[...], baseOffset: 0)
    }

    /// Reads a slice without copying; offsets count from the slice's first byte.
    public init(_ bytes: ArraySlice<UInt8>) {
        self.init(bytes, baseOffset: 0)
    }

    /// Copies the buffer, so the reader stays valid after the buffer is gone.
    public init(copying buffer: UnsafeRawBufferPointer) {
        self.init(Array(buffer)[...], baseOffset: 0)
    }

    @usableFromInline
    internal init(_ storage: ArraySlice<UInt8>, baseOffset: Int) {
        self.storage = storage
        self.position = storage.startIndex
        self.baseOffset = baseOffset
    }

    /// Absolute byte offset of the next byte to be read.
    @inlinable public var offset: Int { baseOffset + (position - storage.startIndex) }

    /// Number of bytes not yet read.
    @inlinable public var remaining: Int { storage.endIndex - position }

    @inlinable public var isAtEnd: Bool { position >= storage.endIndex }

    /// Throws `.truncated` unless `count` bytes remain.
    @inlinable
    internal func require(_ count: Int, field: String) throws(WireError) {
        guard count >= 0 else {
            throw WireError(.invalidValue("negative length \(count)"), offset: offset, context: field)
        }
        guard count <= remaining else {
            throw WireError(.truncated(needed: count, available: remaining), offset: offset, context: field)
        }
    }

    @inlinable
    internal mutating func readUnsigned<T: FixedWidthInteger & UnsignedInteger>(
        _: T.Type, field: String
    ) throws(WireError) -> T {
        let width = T.bitWidth / 8
        try require(width, field: field)
        var value: T = 0
        for index in position..<(position + width) {
            value = (value << 8) | T(storage[index])
        }
        position += width
        return value
    }

    @inlinable public mutating func readU8(field: String = "u8") throws(WireError) -> UInt8 {
        try readUnsigned(UInt8.self, field: field)
    }

    @inlinable public mutating func readU16(field: String = "u16") throws(WireError) -> UInt16 {
        try readUnsigned(UInt16.self, field: field)
    }

    @inlinable public mutating func readU32(field: String = "u32") throws(WireError) -> UInt32 {
        try readUnsigned(UInt32.self, field: field)
    }

    @inlinable public mutating func readU64(field: String = "u64") throws(WireError) -> UInt64 {
        try readUnsigned(UInt64.self, field: field)
    }

    /// Signed integers are big-endian two's complement (BOLT-1 "Fundamental Types").
    @inlinable public mutating func readS8(field: String = "s8") throws(WireError) -> Int8 {
        Int8(bitPattern: try readU8(field: field))
    }

    @inlinable public mutating func readS16(field: String = "s16") throws(WireError) -> Int16 {
        Int16(bitPattern: try readU16(field: field))
    }

    @inlinable public mutating func readS32(field: String = "s32") throws(WireError) -> Int32 {
        Int32(bitPattern: try readU32(field: field))
    }

    @inlinable public mutating func readS64(field: String = "s64") throws(WireError) -> Int64 {
        Int64(bitPattern: try readU64(field: field))
    }

    /// Reads `count` bytes into a new array.
    @inlinable
    public mutating func readBytes(_ count: Int, field: String = "bytes") throws(WireError) -> [UInt8] {
        try require(count, field: field)
        let bytes = Array(storage[position..<(position + count)])
        position += count
        return bytes
    }

    /// Reads all remaining bytes.
    @inlinable
    public mutating func readRemainingBytes() -> [UInt8] {
        let bytes = Array(storage[position...])
        position = storage.endIndex
        return bytes
    }

    /// Returns a reader over the next `count` bytes (no copy) and skips them here.
    /// Errors from the sub-reader keep absolute offsets.
    @inlinable
    public mutating func readSubReader(_ count: Int, field: String = "bytes") throws(WireError) -> WireReader {
        try require(count, field: field)
        let sub = WireReader(storage[position..<(position + count)], baseOffset: offset)
        position += count
        return sub
    }

    /// Consumes `bytes` if they are exactly the next bytes; otherwise reads nothing.
    /// Lets a decoder recognise a repeated value without copying it out first.
    @inlinable
    public mutating func skip(ifNextBytesEqual bytes: [UInt8]) -> Bool {
        guard bytes.count <= remaining, storage[position..<(position + bytes.count)].elementsEqual(bytes) else { return false }
        position += bytes.count
        return true
    }

    @inlinable
    public mutating func skip(_ count: Int, field: String = "bytes") throws(WireError) {
        try require(count, field: field)
        position += count
    }

    /// Looks at the next byte without consuming it.
    @inlinable
    public func peekU8() -> UInt8? {
        isAtEnd ? nil : storage[position]
    }

    @inlinable
    public mutating func readBigSize(field: String = "bigsize") throws(WireError) -> UInt64 {
        try BigSize.decode(&self, field: field)
    }

    /// Reads a `tu16`: `length` (0...2) big-endian bytes without leading zeros.
    @inlinable
    public mutating func readTruncatedU16(length: Int, field: String = "tu16") throws(WireError) -> UInt16 {
        UInt16(truncatingIfNeeded: try readTruncated(length: length, maximumLength: 2, field: field))
    }

    /// Reads a `tu32`: `length` (0...4) big-endian bytes without leading zeros.
    @inlinable
    public mutating func readTruncatedU32(length: Int, field: String = "tu32") throws(WireError) -> UInt32 {
        UInt32(truncatingIfNeeded: try readTruncated(length: length, maximumLength: 4, field: field))
    }

    /// Reads a `tu64`: `length` (0...8) big-endian bytes without leading zeros.
    @inlinable
    public mutating func readTruncatedU64(length: Int, field: String = "tu64") throws(WireError) -> UInt64 {
        try readTruncated(length: length, maximumLength: 8, field: field)
    }

    @inlinable
    internal mutating func readTruncated(length: Int, maximumLength: Int, field: String) throws(WireError) -> UInt64 {
        guard length <= maximumLength else {
            throw WireError(.fieldTooLong(maximum: maximumLength, actual: length), offset: offset, context: field)
        }
        try require(length, field: field)
        // BOLT-1: "Leading zeros in truncated integers MUST be omitted", so zero is
        // the empty encoding and a first byte of 0 is never minimal.
        if length > 0, storage[position] == 0 {
            throw WireError(.nonMinimalTruncatedInteger, offset: offset, context: field)
        }
        var value: UInt64 = 0
        for index in position..<(position + length) {
            value = (value << 8) | UInt64(storage[index])
        }
        position += length
        return value
    }

    /// Throws `.trailingBytes` unless every byte was consumed.
    @inlinable
    public func expectEnd(field: String = "end") throws(WireError) {
        guard isAtEnd else {
            throw WireError(.trailingBytes(remaining), offset: offset, context: field)
        }
    }
}
