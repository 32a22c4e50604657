import LNPCrypto
import LNPSession

/// The 16 random bytes that name a bundle. They link nothing (fresh per bundle) and let an
/// importer remember what it has taken in without remembering contents.
public struct SpoolBundleID: Hashable, Sendable, CustomStringConvertible {
    public static let length = 16
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) throws(SpoolBundleError) {
        guard bytes.count == Self.length else { throw .badBundleID(length: bytes.count) }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == Self.length else { return nil }
        self.bytes = bytes
    }

    public static func random() -> SpoolBundleID {
        // The length is right by construction.
        try! SpoolBundleID(SecureRandom.bytes(length))
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }
}

/// Bundle file format version 1 (SPOOL-FORMAT.md, next to this file): a header, sealed
/// envelopes back to back, and a SHA-256 of everything before it.
///
///     magic           8   "LNPSPOOL"
///     version         1   0x01
///     bundle id      16   random
///     envelope count  4   u32 big-endian, at least 1
///     envelopes       *   sealed envelopes (SEALED-ENVELOPE.md), each self-delimiting
///     checksum       32   SHA-256 of all the bytes above
///
/// Nothing in it names the sender or the recipient: those are inside the envelopes.
public enum SpoolBundle {
    public static let magic: [UInt8] = Array("LNPSPOOL".utf8)
    public static let version: UInt8 = 1
    static let idOffset = magic.count + 1
    static let countOffset = idOffset + SpoolBundleID.length
    public static let headerLength = countOffset + 4
    public static let checksumLength = 32
    /// The largest bundle file the format allows; a reader may set a lower limit.
    public static let maximumLength = 64 << 20
    /// Every envelope is at least `SealedEnvelope.overhead` bytes, so no bundle within the
    /// size limit can hold more; a count above it is rejected before anything is read.
    public static let maximumEnvelopeCount = (maximumLength - headerLength - checksumLength) / SealedEnvelope.overhead
    /// File names end with this; anything else in a spool directory is ignored.
    public static let fileExtension = ".lnpspool"

    /// A whole bundle file's bytes for `envelopes` (already sealed).
    public static func encode(id: SpoolBundleID, envelopes: [[UInt8]]) -> [UInt8] {
        var bytes = magic
        bytes.reserveCapacity(headerLength + envelopes.reduce(0) { $0 + $1.count } + checksumLength)
        bytes.append(version)
        bytes += id.bytes
        let count = UInt32(envelopes.count)
        bytes += [UInt8(count >> 24), UInt8(truncatingIfNeeded: count >> 16), UInt8(truncatingIfNeeded: count >> 8),
                  UInt8(truncatingIfNeeded: count)]
        for envelope in envelopes { bytes += envelope }
        bytes += Hashing.sha256(bytes)
        return bytes
    }

    /// The length `envelopes` would take in a bundle.
    public static func encodedLength(envelopeBytes: Int) -> Int { headerLength + envelopeBytes + checksumLength }

    /// What the header alone says: enough for an importer to skip a bundle it already took
    /// in without reading the rest.
    public struct Header: Sendable, Equatable {
        public let id: SpoolBundleID
        public let envelopeCount: Int
    }

    /// Reads the header from a bundle's first `headerLength` bytes (or more).
    public static func header(_ prefix: ArraySlice<UInt8>) throws(SpoolBundleError) -> Header {
        let bytes = Array(prefix.prefix(headerLength))
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else { throw .notABundle }
        guard bytes.count > magic.count else { throw .truncated(length: bytes.count, minimum: headerLength + checksumLength) }
        // The version before the length, so that a later layout is reported as such.
        guard bytes[magic.count] == version else { throw .unknownVersion(bytes[magic.count]) }
        guard bytes.count == headerLength else { throw .truncated(length: bytes.count, minimum: headerLength + checksumLength) }
        let id = try SpoolBundleID(Array(bytes[idOffset..<countOffset]))
        let count = bytes[countOffset..<headerLength].reduce(0) { $0 << 8 | Int($1) }
        guard count > 0 else { throw .noEnvelopes }
        guard count <= maximumEnvelopeCount else { throw .tooManyEnvelopes(count: count, limit: maximumEnvelopeCount) }
        return Header(id: id, envelopeCount: count)
    }

    /// A bundle whose structure and checksum are sound; its envelopes are still unopened.
    public struct Parsed: Sendable {
        public let id: SpoolBundleID
        /// Each envelope's range in the file's bytes.
        public let envelopeRanges: [Range<Int>]
    }

    /// Checks a whole bundle file, in this order: size limit, magic, version, header, the
    /// checksum (which finds truncation and damage before any envelope is used), then that
    /// the envelopes fill the space between header and checksum exactly. No cryptography.
    public static func parse(_ bytes: [UInt8], maximumLength: Int = SpoolBundle.maximumLength) throws(SpoolBundleError) -> Parsed {
        let limit = min(maximumLength, Self.maximumLength)
        guard bytes.count <= limit else { throw .tooLarge(length: bytes.count, limit: limit) }
        let header = try header(bytes[...])
        guard bytes.count >= headerLength + checksumLength else {
            throw .truncated(length: bytes.count, minimum: headerLength + checksumLength)
        }
        let bodyEnd = bytes.count - checksumLength
        let checksum = bytes.withUnsafeBytes { Hashing.sha256(buffer: UnsafeRawBufferPointer(rebasing: $0[0..<bodyEnd])) }
        guard checksum == Array(bytes[bodyEnd...]) else {
            // Say "cut short" when the envelopes the header declares run past the end of the
            // file: the common case of an interrupted copy.
            let walked = walk(bytes, count: header.envelopeCount, end: bytes.count)
            if walked.ranges.count < header.envelopeCount, walked.failure == nil || walked.ranOut {
                throw .envelopesCutShort(declared: header.envelopeCount, complete: walked.ranges.count)
            }
            throw .checksumMismatch
        }
        let walked = walk(bytes, count: header.envelopeCount, end: bodyEnd)
        if let failure = walked.failure {
            if walked.ranOut { throw .envelopesCutShort(declared: header.envelopeCount, complete: walked.ranges.count) }
            throw .badEnvelopeHeader(index: walked.ranges.count, failure)
        }
        let used = walked.ranges.last?.upperBound ?? headerLength
        guard used == bodyEnd else { throw .bytesAfterEnvelopes(count: bodyEnd - used) }
        return Parsed(id: header.id, envelopeRanges: walked.ranges)
    }

    /// Splits envelopes by their clear headers, at most `count`, never past `end`.
    private static func walk(_ bytes: [UInt8], count: Int, end: Int)
        -> (ranges: [Range<Int>], failure: SealedEnvelopeError?, ranOut: Bool) {
        var ranges = [Range<Int>]()
        ranges.reserveCapacity(min(count, (end - headerLength) / SealedEnvelope.overhead + 1))
        var position = headerLength
        while ranges.count < count {
            let length: Int
            do throws(SealedEnvelopeError) {
                length = try SealedEnvelope.envelopeLength(header: bytes[position..<min(end, position + SealedEnvelope.headerLength)])
            } catch {
                if case .truncated = error { return (ranges, error, true) }
                return (ranges, error, false)
            }
            guard length <= end - position else {
                return (ranges, .truncated(expected: length, received: end - position), true)
            }
            ranges.append(position..<(position + length))
            position += length
        }
        return (ranges, nil, false)
    }
}
