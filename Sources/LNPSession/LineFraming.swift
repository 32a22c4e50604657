/// Datagrams on a byte stream that may drop, flip or invent bytes (a serial line in raw
/// mode): each datagram gets a CRC-32 and is COBS-encoded, then ends with a 0x00 byte.
///
///     line frame = COBS(datagram ‖ CRC-32(datagram), little-endian) ‖ 0x00
///
/// COBS rather than KISS: COBS adds exactly one byte to anything shorter than 254 bytes
/// and at most one per 254 after that, whatever the content, while KISS escapes its two
/// special values by doubling them (about 0.8 % on ciphertext, up to 100 % on chosen
/// data), so COBS gives fixed, countable overhead. And since 0x00 never occurs inside a
/// COBS frame, a receiver lost in noise is back in step at the very next delimiter.
///
/// The CRC only sorts line noise from frames cheaply; authenticity is the datagram
/// session's job (a CRC is no defence against a forger).
public enum LineFraming {
    public static let delimiter: UInt8 = 0
    public static let checksumSize = 4

    /// Appends the line frame for `datagram` to `output`.
    public static func encode(_ datagram: [UInt8], appendingTo output: inout [UInt8]) {
        let checksum = CRC32.checksum(datagram)
        let trailer: [UInt8] = [UInt8(truncatingIfNeeded: checksum), UInt8(truncatingIfNeeded: checksum >> 8),
                                UInt8(truncatingIfNeeded: checksum >> 16), UInt8(truncatingIfNeeded: checksum >> 24)]
        output.reserveCapacity(output.count + maximumEncodedSize(forDatagramLength: datagram.count))
        var codeIndex = output.count
        output.append(0)
        var code: UInt8 = 1
        for byte in [datagram, trailer].joined() {
            if byte == 0 {
                output[codeIndex] = code
                codeIndex = output.count
                output.append(0)
                code = 1
                continue
            }
            output.append(byte)
            code += 1
            if code == 0xFF {
                output[codeIndex] = code
                codeIndex = output.count
                output.append(0)
                code = 1
            }
        }
        output[codeIndex] = code
        output.append(delimiter)
    }

    public static func encode(_ datagram: [UInt8]) -> [UInt8] {
        var output = [UInt8]()
        encode(datagram, appendingTo: &output)
        return output
    }

    /// The most bytes a datagram of `length` bytes takes on the line, delimiter included.
    /// Exact for datagrams of at most 249 bytes (their frame is `length + 6`).
    public static func maximumEncodedSize(forDatagramLength length: Int) -> Int {
        let stuffed = length + checksumSize
        return stuffed + 1 + stuffed / 254 + 1
    }

    /// Decodes one frame's bytes (between delimiters, without them) back to its datagram.
    public static func decodeFrame(_ encoded: ArraySlice<UInt8>) throws(LineFrameError) -> [UInt8] {
        var decoded = [UInt8]()
        decoded.reserveCapacity(encoded.count)
        var index = encoded.startIndex
        while index < encoded.endIndex {
            let code = Int(encoded[index])
            guard code != 0 else { throw .badStuffing }
            index += 1
            let blockEnd = index + code - 1
            guard blockEnd <= encoded.endIndex else { throw .badStuffing }
            for byte in encoded[index..<blockEnd] {
                guard byte != 0 else { throw .badStuffing }
                decoded.append(byte)
            }
            index = blockEnd
            if code != 0xFF, index < encoded.endIndex { decoded.append(0) }
        }
        guard decoded.count > checksumSize else { throw .tooShort }
        let payloadLength = decoded.count - checksumSize
        let checksum = UInt32(decoded[payloadLength]) | UInt32(decoded[payloadLength + 1]) << 8
            | UInt32(decoded[payloadLength + 2]) << 16 | UInt32(decoded[payloadLength + 3]) << 24
        decoded.removeLast(checksumSize)
        guard CRC32.checksum(decoded) == checksum else { throw .checksumMismatch }
        return decoded
    }
}

/// Why bytes between two delimiters were not a frame.
public enum LineFrameError: Error, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case oversized
    case badStuffing
    case tooShort
    case checksumMismatch

    public var description: String {
        switch self {
        case .oversized: "the frame ran past the largest frame the link allows before its delimiter"
        case .badStuffing: "the frame's COBS stuffing is inconsistent (a code points past the end of the frame)"
        case .tooShort: "the frame is too short to hold a datagram and its CRC-32"
        case .checksumMismatch: "the frame's CRC-32 does not match its bytes (line noise)"
        }
    }
}

/// Turns a byte stream, fed in chunks of any size, back into datagrams. Noise costs only
/// the frames it touches: anything that fails to decode is dropped and counted, and
/// decoding starts afresh after the next delimiter. Memory stays within one frame.
public struct LineFrameDecoder: Sendable {
    public let maximumDatagramSize: Int
    /// The longest run of bytes without a delimiter that can still be a frame.
    public let maximumEncodedFrameLength: Int
    public private(set) var framesDecoded = 0
    public private(set) var drops: [LineFrameError: Int] = [:]
    public private(set) var lastError: LineFrameError?

    private var pending: [UInt8] = []
    /// The current frame already ran too long: skip to the next delimiter.
    private var discarding = false

    public init(maximumDatagramSize: Int) {
        self.maximumDatagramSize = maximumDatagramSize
        maximumEncodedFrameLength = LineFraming.maximumEncodedSize(forDatagramLength: maximumDatagramSize) - 1
        pending.reserveCapacity(maximumEncodedFrameLength)
    }

    public var bufferedByteCount: Int { pending.count }
    public var framesDropped: Int { drops.values.reduce(0, +) }
    public func dropped(_ reason: LineFrameError) -> Int { drops[reason, default: 0] }

    /// Feeds bytes read from the line; returns the datagrams completed by them, in order.
    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) -> [[UInt8]] where Bytes.Element == UInt8 {
        var datagrams: [[UInt8]] = []
        for byte in bytes {
            if byte == LineFraming.delimiter {
                if discarding {
                    discarding = false
                } else if !pending.isEmpty {
                    // Between frames a lone delimiter is idle fill, not an error.
                    finishFrame(into: &datagrams)
                }
                continue
            }
            if discarding { continue }
            guard pending.count < maximumEncodedFrameLength else {
                reject(.oversized)
                pending.removeAll(keepingCapacity: true)
                discarding = true
                continue
            }
            pending.append(byte)
        }
        return datagrams
    }

    private mutating func finishFrame(into datagrams: inout [[UInt8]]) {
        defer { pending.removeAll(keepingCapacity: true) }
        do {
            let datagram = try LineFraming.decodeFrame(pending[...])
            guard datagram.count <= maximumDatagramSize else { return reject(.oversized) }
            framesDecoded += 1
            datagrams.append(datagram)
        } catch {
            reject(error)
        }
    }

    private mutating func reject(_ error: LineFrameError) {
        drops[error, default: 0] += 1
        lastError = error
    }
}

/// CRC-32 as in IEEE 802.3, zlib and PNG (reflected polynomial 0xEDB88320).
public enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1
        }
        return value
    }

    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }
}
