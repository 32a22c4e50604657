/// A BOLT-9 feature bitmap.
///
/// Bit numbering follows BOLT-1/BOLT-9: bit 0 is the least significant bit of
/// the *last* byte, so the byte string grows at the front as higher bits are set.
/// The stored `bytes` are always minimal (no leading zero bytes), which makes
/// equality and hashing independent of how much padding a peer sent.
public struct FeatureVector: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Minimal big-endian bitmap.
    public private(set) var bytes: [UInt8]

    /// The largest bitmap a u16-length-prefixed field can carry.
    public static let maximumByteCount = Int(UInt16.max)
    /// Bits `0..<maximumBitCount` can be set.
    public static let maximumBitCount = maximumByteCount * 8

    public init() {
        bytes = []
    }

    /// Takes a wire bitmap; leading zero bytes are dropped. Decoded bitmaps always
    /// fit `maximumByteCount`; a longer one built here cannot be encoded.
    public init(bytes: [UInt8]) {
        self.bytes = FeatureVector.minimal(bytes[...])
    }

    public init(bytes: ArraySlice<UInt8>) {
        self.bytes = FeatureVector.minimal(bytes)
    }

    public init(bits: [Int]) {
        self.init()
        for bit in bits { set(bit) }
    }

    public init(features: [Feature], required: Bool = false) {
        self.init()
        for feature in features { set(required ? feature.evenBit : feature.oddBit) }
    }

    private static func minimal(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        guard let first = bytes.firstIndex(where: { $0 != 0 }) else { return [] }
        return Array(bytes[first...])
    }

    @inlinable public var isEmpty: Bool { bytes.isEmpty }

    public func isSet(_ bit: Int) -> Bool {
        guard bit >= 0 else { return false }
        let byteFromEnd = bit / 8
        guard byteFromEnd < bytes.count else { return false }
        return bytes[bytes.count - 1 - byteFromEnd] & (1 << UInt8(bit % 8)) != 0
    }

    /// Sets `bit`, growing the bitmap at the front as needed. Bits outside
    /// `0..<maximumBitCount` cannot be represented on the wire and trap.
    public mutating func set(_ bit: Int) {
        precondition(bit >= 0 && bit < FeatureVector.maximumBitCount, "feature bit \(bit) out of range")
        let byteFromEnd = bit / 8
        if byteFromEnd >= bytes.count {
            bytes.insert(contentsOf: repeatElement(0, count: byteFromEnd + 1 - bytes.count), at: 0)
        }
        bytes[bytes.count - 1 - byteFromEnd] |= 1 << UInt8(bit % 8)
    }

    /// Clears `bit` (a no-op when it is not set), keeping the bitmap minimal.
    public mutating func clear(_ bit: Int) {
        guard isSet(bit) else { return }
        bytes[bytes.count - 1 - bit / 8] &= ~(1 << UInt8(bit % 8))
        bytes = FeatureVector.minimal(bytes[...])
    }

    /// Every set bit, ascending.
    public var setBits: [Int] {
        var bits: [Int] = []
        for (indexFromEnd, byte) in bytes.reversed().enumerated() where byte != 0 {
            for bitInByte in 0..<8 where byte & (1 << UInt8(bitInByte)) != 0 {
                bits.append(indexFromEnd * 8 + bitInByte)
            }
        }
        return bits
    }

    /// Offered: either the required or the optional bit is set.
    public func supports(_ feature: Feature) -> Bool {
        isSet(feature.evenBit) || isSet(feature.oddBit)
    }

    /// The even bit is set; BOLT-9 says a pair with both bits set counts as required.
    public func requires(_ feature: Feature) -> Bool {
        isSet(feature.evenBit)
    }

    /// Bitwise OR, e.g. to combine `init`'s `globalfeatures` and `features`.
    public func union(_ other: FeatureVector) -> FeatureVector {
        var result = self
        result.formUnion(other)
        return result
    }

    public mutating func formUnion(_ other: FeatureVector) {
        if other.bytes.count > bytes.count {
            bytes.insert(contentsOf: repeatElement(0, count: other.bytes.count - bytes.count), at: 0)
        }
        let shift = bytes.count - other.bytes.count
        for index in other.bytes.indices {
            bytes[shift + index] |= other.bytes[index]
        }
    }

    /// Bitwise AND.
    public func intersection(_ other: FeatureVector) -> FeatureVector {
        let count = min(bytes.count, other.bytes.count)
        var result: [UInt8] = []
        result.reserveCapacity(count)
        for indexFromEnd in stride(from: count - 1, through: 0, by: -1) {
            result.append(bytes[bytes.count - 1 - indexFromEnd] & other.bytes[other.bytes.count - 1 - indexFromEnd])
        }
        return FeatureVector(bytes: result)
    }

    /// Checks a peer's (combined) features as BOLT-1 `init` requires of a receiver:
    /// - an even bit whose pair is not in `known` is a required feature we do not
    ///   understand (`.unknownRequiredFeature`); unknown odd bits are ignored
    ///   ("it's OK to be odd");
    /// - setting both bits of a pair is accepted (BOLT-9: treated as required);
    /// - every feature of `Feature.all` that is set and known must have all its
    ///   dependencies set as either bit (`.featureDependencyMissing`); checking
    ///   direct dependencies of every set feature covers transitive ones.
    /// `known` holds bit numbers (see `Feature.bits(of:)`); either bit of a pair
    /// marks the whole pair as known, since understanding a feature means
    /// understanding both its forms.
    public func validate(known: Set<Int>) throws(WireError) {
        for bit in setBits where bit % 2 == 0 {
            if !known.contains(bit), !known.contains(bit + 1) {
                throw WireError(.unknownRequiredFeature(bit), offset: byteOffset(ofBit: bit), context: "features")
            }
        }
        for feature in Feature.all where supports(feature) {
            guard known.contains(feature.evenBit) || known.contains(feature.oddBit) else { continue }
            for dependency in feature.dependencies where !supports(dependency) {
                let setBit = isSet(feature.evenBit) ? feature.evenBit : feature.oddBit
                throw WireError(
                    .featureDependencyMissing(feature: feature.evenBit, requires: dependency.evenBit),
                    offset: byteOffset(ofBit: setBit), context: "features")
            }
        }
    }

    /// Index in `bytes` of the byte holding `bit` (which must be set).
    private func byteOffset(ofBit bit: Int) -> Int {
        bytes.count - 1 - bit / 8
    }

    public var description: String {
        "FeatureVector(" + setBits.map { bit in
            let name = Feature.name(ofBit: bit)
            return name == "unknown" ? "\(bit)" : "\(bit) \(name)"
        }.joined(separator: ", ") + ")"
    }
}
