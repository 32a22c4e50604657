/// A decoding (or encodability) failure of the BOLT-1 wire codec.
///
/// Every failure says *what* went wrong (`kind`), *where* (`offset`, a byte
/// offset into the input the reader was created over, usually the whole
/// message including its 2-byte type) and *in which field* (`context`, a dotted
/// path such as `init.init_tlvs.length`).
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// A field needs `needed` bytes but only `available` remain.
        case truncated(needed: Int, available: Int)
        /// A BigSize used more bytes than the minimal encoding of its value.
        case nonCanonicalBigSize
        /// TLV record types must be strictly increasing (this also rejects duplicates).
        case tlvTypesNotIncreasing(previous: UInt64, current: UInt64)
        /// A TLV record announces more value bytes than the stream still holds.
        case tlvLengthExceedsStream(length: UInt64, remaining: Int)
        /// An even TLV type the decoder does not know ("it's OK to be odd" only covers odd types).
        case unknownEvenTLVType(UInt64)
        /// A truncated integer (tu16/tu32/tu64) has a leading zero byte.
        case nonMinimalTruncatedInteger
        /// A fixed-size field has the wrong size.
        case invalidFieldLength(expected: Int, actual: Int)
        /// A variable-size field exceeds its maximum size (e.g. a tu64 longer than 8 bytes,
        /// or a byte string too long for its u16 length prefix when encoding).
        case fieldTooLong(maximum: Int, actual: Int)
        /// A field made of fixed-size elements has a size that is not a multiple of the element size.
        case lengthNotMultiple(of: Int, actual: Int)
        /// A message of even type that this codec does not know; the connection must be closed.
        case unknownEvenMessageType(UInt16)
        /// Bytes left over after a value that must be consumed exactly.
        case trailingBytes(Int)
        /// A field has the right shape but a value the spec forbids.
        case invalidValue(String)
        /// A feature is set without the feature it depends on (both given by their even bit).
        case featureDependencyMissing(feature: Int, requires: Int)
        /// An unknown even ("required") feature bit is set.
        case unknownRequiredFeature(Int)
        /// The message is shorter than its 2-byte type.
        case messageTooShort
    }

    public var kind: Kind
    /// Byte offset of the failing field in the decoded input. For feature-vector
    /// validation it is the index of the byte holding the offending bit.
    public var offset: Int
    /// Dotted field path, outermost first.
    public var context: String

    public init(_ kind: Kind, offset: Int, context: String) {
        self.kind = kind
        self.offset = offset
        self.context = context
    }

    /// The same error seen from an enclosing structure: `outer.context`.
    public func inContext(_ outer: String) -> WireError {
        var copy = self
        copy.context = context.isEmpty ? outer : outer + "." + context
        return copy
    }

    public var description: String {
        "\(kind) at byte offset \(offset) in \(context.isEmpty ? "<input>" : context)"
    }
}

extension WireError.Kind: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .truncated(needed, available):
            return "truncated: needed \(needed) byte(s), only \(available) available"
        case .nonCanonicalBigSize:
            return "BigSize is not minimally encoded"
        case let .tlvTypesNotIncreasing(previous, current):
            return "TLV type \(current) does not strictly follow previous type \(previous)"
        case let .tlvLengthExceedsStream(length, remaining):
            return "TLV length \(length) exceeds the \(remaining) byte(s) left in the stream"
        case let .unknownEvenTLVType(type):
            return "unknown even TLV type \(type)"
        case .nonMinimalTruncatedInteger:
            return "truncated integer has a leading zero byte"
        case let .invalidFieldLength(expected, actual):
            return "field must be \(expected) byte(s) long, got \(actual)"
        case let .fieldTooLong(maximum, actual):
            return "field may be at most \(maximum) byte(s) long, got \(actual)"
        case let .lengthNotMultiple(unit, actual):
            return "field length \(actual) is not a multiple of \(unit)"
        case let .unknownEvenMessageType(type):
            return "unknown even message type \(type)"
        case let .trailingBytes(count):
            return "\(count) unexpected trailing byte(s)"
        case let .invalidValue(reason):
            return "invalid value: \(reason)"
        case let .featureDependencyMissing(feature, requires):
            return "feature bit \(feature) (\(Feature.name(ofBit: feature))) requires feature bit \(requires) (\(Feature.name(ofBit: requires)))"
        case let .unknownRequiredFeature(bit):
            return "unknown required (even) feature bit \(bit)"
        case .messageTooShort:
            return "message is shorter than its 2-byte type"
        }
    }
}
