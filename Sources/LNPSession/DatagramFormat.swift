import LNPCrypto

/// The bytes of one datagram on a lossy link (UDP, or a serial line under `LineFraming`).
///
/// The first byte says what the datagram is. Handshake datagrams carry a BOLT-8 act as is
/// (its own version byte included), so act two (51 bytes) is never larger than act one
/// (51 bytes): a forged source address cannot be used to amplify traffic.
///
///     act one    0x01 ‖ act (50)                          51 bytes
///     act two    0x02 ‖ act (50)                          51 bytes
///     act three  0x03 ‖ act (66)                          67 bytes
///     message    0x10 ‖ counter (4) ‖ ciphertext ‖ tag (16)
///     fragment   0x11 ‖ counter (4) ‖ E(index u16 ‖ count u16 ‖ piece) ‖ tag (16)
///     keepalive  0x12 ‖ counter (4) ‖ tag (16)            21 bytes
///
/// The counter is the low 32 bits of the sender's 64-bit datagram counter, big-endian;
/// the receiver restores the full value from the highest counter it has accepted (as
/// QUIC does with packet numbers). The full counter is the ChaCha20-Poly1305 nonce and
/// the 5 header bytes are the associated data, so a datagram whose counter was restored
/// wrongly, or whose kind or counter was altered, simply fails authentication.
///
/// The fragments of one message have consecutive counters, so the message is named by
/// the counter of its first fragment (`counter - index`) and needs no id of its own.
public enum DatagramFormat {
    public enum Kind: UInt8, Sendable, CaseIterable {
        case actOne = 0x01
        case actTwo = 0x02
        case actThree = 0x03
        case message = 0x10
        case fragment = 0x11
        case keepalive = 0x12

        var isTransport: Bool { rawValue >= 0x10 }
    }

    /// Kind byte plus truncated counter; authenticated as associated data.
    public static let headerSize = 5
    public static let tagSize = ChaCha20Poly1305.tagLength
    /// Header and tag: what every transport datagram adds to its payload.
    public static let transportOverhead = headerSize + tagSize
    /// Index and count of a fragment, inside the ciphertext.
    public static let fragmentHeaderSize = 4
    /// A fragment count travels as a u16.
    public static let maximumFragmentCount = 65_535

    public static let actOneSize = 1 + ActSize.one
    public static let actTwoSize = 1 + ActSize.two
    public static let actThreeSize = 1 + ActSize.three
    /// The largest datagram of the handshake; a link's datagram size must allow it.
    public static let largestHandshakeDatagram = actThreeSize

    /// Bytes on the link for a message of `length` bytes sent whole.
    public static func datagramSize(forMessageLength length: Int) -> Int { transportOverhead + length }

    /// Separates the datagram keys from BOLT-8's own transport keys derived from the same handshake.
    static let keyLabel = Array("lnp datagram keys v1".utf8)

    /// The 64-bit counter nearest to the one expected next whose low 32 bits are `truncated`.
    public static func restoreCounter(_ truncated: UInt32, highestAccepted: UInt64?) -> UInt64 {
        let span: UInt64 = 1 << 32
        let half = span / 2
        let expected = highestAccepted.map { $0 + 1 } ?? 0
        let candidate = (expected & ~(span - 1)) | UInt64(truncated)
        if candidate + half <= expected, candidate <= UInt64.max - span {
            return candidate + span
        }
        if candidate > expected + half, candidate >= span {
            return candidate - span
        }
        return candidate
    }
}

/// Which recent counters have already been accepted in one direction.
///
/// A counter more than `size - 1` below the highest accepted is too old to tell apart
/// from a replay and is refused; a counter inside the window is refused when its bit is
/// set. The window only moves after a datagram has authenticated, so forged datagrams
/// cannot push genuine ones out of it.
public struct ReplayWindow: Sendable, Equatable {
    public static let size: UInt64 = 1024
    private static let wordCount = Int(size / 64)

    public enum Verdict: Sendable, Equatable {
        case fresh
        case duplicate
        case tooOld
    }

    public private(set) var highestAccepted: UInt64?
    private var bits = [UInt64](repeating: 0, count: wordCount)

    public init() {}

    public func check(_ counter: UInt64) -> Verdict {
        guard let highest = highestAccepted, counter <= highest else { return .fresh }
        if highest - counter >= Self.size { return .tooOld }
        return isMarked(counter) ? .duplicate : .fresh
    }

    /// Records an authenticated counter that `check` called fresh.
    public mutating func accept(_ counter: UInt64) {
        if let highest = highestAccepted {
            if counter > highest {
                if counter - highest >= Self.size {
                    for index in bits.indices { bits[index] = 0 }
                } else {
                    var cleared = highest + 1
                    while cleared < counter {
                        unmark(cleared)
                        cleared += 1
                    }
                }
                highestAccepted = counter
            }
        } else {
            highestAccepted = counter
        }
        mark(counter)
    }

    private func isMarked(_ counter: UInt64) -> Bool {
        let slot = counter % Self.size
        return bits[Int(slot / 64)] & (1 << (slot % 64)) != 0
    }

    private mutating func mark(_ counter: UInt64) {
        let slot = counter % Self.size
        bits[Int(slot / 64)] |= 1 << (slot % 64)
    }

    private mutating func unmark(_ counter: UInt64) {
        let slot = counter % Self.size
        bits[Int(slot / 64)] &= ~(1 << (slot % 64))
    }
}

/// One direction's key for transport datagrams. No rotation chain: every datagram names
/// its own nonce, so a lost datagram cannot desynchronise the two sides. A 64-bit counter
/// never wraps in practice; the session stops sending long before it could.
struct DatagramKey: Sendable {
    let secret: SecretBytes

    /// Seals `prefix ‖ body` under the header (kind and truncated counter) into one datagram.
    func seal(kind: DatagramFormat.Kind, counter: UInt64, _ prefix: [UInt8], _ body: ArraySlice<UInt8>) -> [UInt8] {
        let plaintextLength = prefix.count + body.count
        let total = DatagramFormat.transportOverhead + plaintextLength
        // One allocation, filled in place: this is the per-message hot path.
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let base = UnsafeMutableRawPointer(buffer.baseAddress!)
            buffer[0] = kind.rawValue
            base.storeBytes(of: UInt32(truncatingIfNeeded: counter).bigEndian, toByteOffset: 1, as: UInt32.self)
            var offset = DatagramFormat.headerSize
            prefix.withUnsafeBytes { source in if let start = source.baseAddress { (base + offset).copyMemory(from: start, byteCount: source.count) } }
            offset += prefix.count
            body.withUnsafeBytes { source in if let start = source.baseAddress { (base + offset).copyMemory(from: start, byteCount: source.count) } }
            offset += body.count
            (base + offset).initializeMemory(as: UInt8.self, repeating: 0, count: DatagramFormat.tagSize)
            ChaCha20Poly1305.sealInPlace(
                key: secret.unsafeBaseAddress, nonce: counter,
                associatedData: UnsafeRawBufferPointer(start: base, count: DatagramFormat.headerSize),
                buffer: base + DatagramFormat.headerSize, length: plaintextLength)
            initialized = total
        }
    }

    /// Authenticates and decrypts a transport datagram in place; the plaintext is
    /// `datagram[headerSize ..< count - tagSize]` afterwards.
    func open(_ datagram: inout [UInt8], counter: UInt64) -> Bool {
        let plaintextLength = datagram.count - DatagramFormat.transportOverhead
        return datagram.withUnsafeMutableBytes { raw -> Bool in
            let base = raw.baseAddress!
            do {
                try ChaCha20Poly1305.openInPlace(
                    key: secret.unsafeBaseAddress, nonce: counter,
                    associatedData: UnsafeRawBufferPointer(start: base, count: DatagramFormat.headerSize),
                    buffer: base + DatagramFormat.headerSize, length: plaintextLength)
                return true
            } catch {
                return false
            }
        }
    }
}
