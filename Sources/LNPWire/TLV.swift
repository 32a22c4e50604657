/// One `tlv_record`: BigSize type, BigSize length, `length` value bytes.
public struct TLVRecord: Equatable, Hashable, Sendable {
    public var type: UInt64
    public var value: [UInt8]

    public init(type: UInt64, value: [UInt8]) {
        self.type = type
        self.value = value
    }

    /// Odd types may be ignored by readers that do not know them ("it's OK to be odd").
    @inlinable public var isOdd: Bool { type & 1 == 1 }

    @inlinable
    public var encodedLength: Int {
        BigSize.encodedLength(type) + BigSize.encodedLength(UInt64(value.count)) + value.count
    }

    @inlinable
    public func encode(into bytes: inout [UInt8]) {
        BigSize.encode(type, into: &bytes)
        BigSize.encode(UInt64(value.count), into: &bytes)
        bytes.append(contentsOf: value)
    }
}

/// A `tlv_stream`: zero or more records in strictly increasing type order.
///
/// Decoding keeps every record (known ones and unknown odd ones) so that a
/// re-encoded stream is byte-identical to the one received, which matters for
/// signed messages. `records` must stay strictly increasing by type; the
/// subscript setter maintains that, direct edits of `records` must too.
public struct TLVStream: Equatable, Hashable, Sendable {
    public var records: [TLVRecord]

    public init() {
        records = []
    }

    /// Takes the records as given; use `checkOrdering()` when they come from elsewhere.
    public init(_ records: [TLVRecord]) {
        self.records = records
    }

    @inlinable public var isEmpty: Bool { records.isEmpty }

    /// Index of the record with `type`, or of where it would be inserted.
    @usableFromInline
    internal func insertionIndex(of type: UInt64) -> Int {
        var low = 0
        var high = records.count
        while low < high {
            let middle = low + (high - low) / 2
            if records[middle].type < type {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low
    }

    /// The value of the record with this type; assigning `nil` removes the record.
    public subscript(type: UInt64) -> [UInt8]? {
        get {
            let index = insertionIndex(of: type)
            guard index < records.count, records[index].type == type else { return nil }
            return records[index].value
        }
        set {
            let index = insertionIndex(of: type)
            let exists = index < records.count && records[index].type == type
            switch (newValue, exists) {
            case let (value?, true): records[index].value = value
            case let (value?, false): records.insert(TLVRecord(type: type, value: value), at: index)
            case (nil, true): records.remove(at: index)
            case (nil, false): break
            }
        }
    }

    /// Throws `.tlvTypesNotIncreasing` if `records` is not strictly increasing.
    public func checkOrdering(context: String = "tlv") throws(WireError) {
        var offset = 0
        for index in records.indices {
            if index > 0, records[index].type <= records[index - 1].type {
                throw WireError(
                    .tlvTypesNotIncreasing(previous: records[index - 1].type, current: records[index].type),
                    offset: offset, context: context + ".type")
            }
            offset += records[index].encodedLength
        }
    }

    @inlinable
    public var encodedLength: Int {
        var total = 0
        for record in records { total += record.encodedLength }
        return total
    }

    @inlinable
    public func encode(into bytes: inout [UInt8]) {
        for record in records { record.encode(into: &bytes) }
    }

    public func encode() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encodedLength)
        encode(into: &bytes)
        return bytes
    }

    /// Decodes records until the reader is exhausted, applying the BOLT-1 reader
    /// rules: minimal BigSize type and length, strictly increasing types, length
    /// within the stream, and unknown even types rejected. Records with a type in
    /// `knownTypes` are returned for the caller to interpret (and check their exact
    /// length); unknown odd records are kept as-is.
    public static func decode(
        _ reader: inout WireReader, knownTypes: Set<UInt64>, context: String = "tlv"
    ) throws(WireError) -> TLVStream {
        try decodeWithValueOffsets(&reader, knownTypes: knownTypes, context: context).stream
    }

    /// Decodes a whole byte array as one stream.
    public static func decode(
        _ bytes: [UInt8], knownTypes: Set<UInt64>, context: String = "tlv"
    ) throws(WireError) -> TLVStream {
        var reader = WireReader(bytes)
        return try decode(&reader, knownTypes: knownTypes, context: context)
    }

    /// Like `decode`, also returning the absolute offset of each record's value so
    /// callers interpreting known records can report precise positions.
    internal static func decodeWithValueOffsets(
        _ reader: inout WireReader, knownTypes: Set<UInt64>, context: String
    ) throws(WireError) -> (stream: TLVStream, valueOffsets: [Int]) {
        var records: [TLVRecord] = []
        var valueOffsets: [Int] = []
        var previousType: UInt64?
        do throws(WireError) {
            while !reader.isAtEnd {
                let typeOffset = reader.offset
                let type = try reader.readBigSize(field: "type")
                if let previousType, type <= previousType {
                    throw WireError(
                        .tlvTypesNotIncreasing(previous: previousType, current: type),
                        offset: typeOffset, context: "type")
                }
                let length = try reader.readBigSize(field: "length")
                guard length <= UInt64(reader.remaining) else {
                    throw WireError(
                        .tlvLengthExceedsStream(length: length, remaining: reader.remaining),
                        offset: reader.offset, context: "value")
                }
                if type & 1 == 0, !knownTypes.contains(type) {
                    throw WireError(.unknownEvenTLVType(type), offset: typeOffset, context: "type")
                }
                valueOffsets.append(reader.offset)
                // `length` fits in Int: it is at most `reader.remaining`.
                let value = try reader.readBytes(Int(length), field: "value")
                records.append(TLVRecord(type: type, value: value))
                previousType = type
            }
        } catch {
            throw error.inContext(context)
        }
        return (TLVStream(records), valueOffsets)
    }
}
