import LNPCrypto

/// How an encrypted message is framed on a stream.
///
/// `bolt` is BOLT-8: a 2-byte encrypted length, so a message is at most 65,535 bytes.
/// `large` is LNP's own: a 3-byte encrypted length, up to 16,777,215 bytes, so large
/// payloads need no chunking. Both use the same keys, nonces and rotation; a session
/// starts with `bolt` and switches only when both peers advertise `option_lnp_large_frames`.
public enum FrameFormat: Sendable, Equatable {
    case bolt
    case large

    public var lengthFieldSize: Int { self == .bolt ? 2 : 3 }
    public var maximumMessageLength: Int { self == .bolt ? 65_535 : 16_777_215 }
    /// Encrypted length field plus its tag.
    public var headerSize: Int { lengthFieldSize + ChaCha20Poly1305.tagLength }

    public func frameSize(forMessageLength length: Int) -> Int {
        headerSize + length + ChaCha20Poly1305.tagLength
    }
}

/// Encrypts messages into frames for one direction of a session.
public struct FrameEncoder: Sendable {
    public private(set) var cipher: CipherState
    public var format: FrameFormat

    private static let zeroTag = [UInt8](repeating: 0, count: ChaCha20Poly1305.tagLength)

    public init(cipher: CipherState, format: FrameFormat = .bolt) {
        self.cipher = cipher
        self.format = format
    }

    /// Appends the frame for `message` to `output`.
    public mutating func encrypt(_ message: UnsafeRawBufferPointer, appendingTo output: inout [UInt8]) throws(SessionError) {
        try checkLength(message.count)
        appendFrame(message, to: &output)
    }

    public mutating func encrypt(_ message: [UInt8], appendingTo output: inout [UInt8]) throws(SessionError) {
        try checkLength(message.count)
        message.withUnsafeBytes { appendFrame($0, to: &output) }
    }

    private func checkLength(_ length: Int) throws(SessionError) {
        guard length <= format.maximumMessageLength else {
            throw .messageTooLarge(length: length, limit: format.maximumMessageLength)
        }
    }

    private mutating func appendFrame(_ message: UnsafeRawBufferPointer, to output: inout [UInt8]) {
        let length = message.count
        let lengthField = format.lengthFieldSize
        let headerSize = format.headerSize
        let start = output.count
        var bigEndianLength = UInt32(length).bigEndian
        withUnsafeBytes(of: &bigEndianLength) { output.append(contentsOf: $0[(4 - lengthField)...]) }
        output.append(contentsOf: Self.zeroTag)
        output.append(contentsOf: message)
        output.append(contentsOf: Self.zeroTag)
        output.withUnsafeMutableBytes { raw in
            let frame = raw.baseAddress! + start
            cipher.seal(frame, length: lengthField)
            cipher.seal(frame + headerSize, length: length)
        }
    }

    public mutating func encrypt(_ message: [UInt8]) throws(SessionError) -> [UInt8] {
        var output = [UInt8]()
        try encrypt(message, appendingTo: &output)
        return output
    }
}

/// Decrypts frames for one direction of a session from bytes that arrive in chunks of
/// any size, down to one byte at a time.
///
/// Memory is bounded by the caller's reads plus one frame: a length header is only
/// trusted after its tag verifies, and it is checked against `maximumMessageLength`
/// before any body bytes are waited for.
public struct FrameDecoder: Sendable {
    public private(set) var cipher: CipherState
    public private(set) var format: FrameFormat
    /// A local limit at or below the format's maximum.
    public var maximumMessageLength: Int
    public private(set) var messagesDecoded: UInt64 = 0

    private static let readSlack = 262_144
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// Set once a header is decrypted and the body has not fully arrived.
    private var pendingBodyLength: Int?

    public init(cipher: CipherState, format: FrameFormat = .bolt, maximumMessageLength: Int = FrameFormat.large.maximumMessageLength) {
        self.cipher = cipher
        self.format = format
        self.maximumMessageLength = maximumMessageLength
    }

    public var bufferedByteCount: Int { buffer.count - readIndex }
    public var isAtFrameBoundary: Bool { pendingBodyLength == nil }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex > 0, buffer.count + bytes.count > buffer.capacity {
            // Move the unread tail down only when the array would otherwise grow: each
            // byte is then copied about once, and memory stays at about one frame plus
            // one read.
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if let done: Void = bytes.withContiguousStorageIfAvailable({ append(UnsafeRawBufferPointer($0)) }) {
            return done
        }
        let copy = Array(bytes)
        copy.withUnsafeBytes { append($0) }
    }

    /// Changes the frame format; allowed only between frames, since the next length
    /// header's size depends on it.
    public mutating func switchFormat(to newFormat: FrameFormat) throws(SessionError) {
        guard pendingBodyLength == nil else { throw .notReady("the frame format can only change between frames") }
        format = newFormat
    }

    /// The next complete message, or nil until more bytes arrive. Any error is fatal for
    /// the session: the stream cannot be resynchronised after a bad tag.
    public mutating func nextMessage() throws(SessionError) -> [UInt8]? {
        try withNextMessage { Array($0) }
    }

    /// Zero-copy variant: `body` sees the plaintext in the decoder's own buffer.
    public mutating func withNextMessage<R>(_ body: (UnsafeRawBufferPointer) -> R) throws(SessionError) -> R? {
        let available = buffer.count - readIndex
        let bodyLength: Int
        var headerConsumed = 0
        if let pending = pendingBodyLength {
            bodyLength = pending
        } else {
            let lengthField = format.lengthFieldSize
            let headerSize = format.headerSize
            guard available >= headerSize else { return nil }
            let index = messagesDecoded
            let decoded: Int? = buffer.withUnsafeMutableBytes { raw -> Int? in
                let header = raw.baseAddress! + readIndex
                do { try cipher.open(header, length: lengthField) } catch { return nil }
                var length = 0
                for i in 0..<lengthField { length = length << 8 | Int(header.load(fromByteOffset: i, as: UInt8.self)) }
                return length
            }
            guard let length = decoded else { throw .badLengthTag(messageIndex: index) }
            guard length <= maximumMessageLength else {
                throw .messageTooLarge(length: length, limit: maximumMessageLength)
            }
            headerConsumed = headerSize
            readIndex += headerSize
            bodyLength = length
        }
        let frameBody = bodyLength + ChaCha20Poly1305.tagLength
        guard available - headerConsumed >= frameBody else {
            pendingBodyLength = bodyLength
            if buffer.capacity < readIndex + frameBody {
                // Make room for this frame plus a few reads of slack, so the unread tail
                // (less than one read) moves about once every few frames, not every frame.
                buffer.removeSubrange(0..<readIndex)
                readIndex = 0
                buffer.reserveCapacity(frameBody + Self.readSlack)
            }
            return nil
        }
        let index = messagesDecoded
        let start = readIndex
        let result: R? = buffer.withUnsafeMutableBytes { raw -> R? in
            let bodyStart = raw.baseAddress! + start
            do { try cipher.open(bodyStart, length: bodyLength) } catch { return nil }
            return body(UnsafeRawBufferPointer(start: bodyStart, count: bodyLength))
        }
        guard let result else { throw .badBodyTag(messageIndex: index) }
        readIndex += frameBody
        pendingBodyLength = nil
        messagesDecoded += 1
        return result
    }
}
