import LNPWire

/// What a bus frame carries.
enum FrameKind: UInt8, Sendable {
    case request = 1
    case reply = 2
    case failure = 3
    case event = 4
}

/// The bus header in front of every payload: `kind u8, method u16, id u64`.
///
/// The kind and method come first so that a SUB socket's prefix filter
/// (`[event, method]`) selects events by method without any parsing.
struct FrameHeader: Equatable, Sendable {
    var kind: FrameKind
    var method: UInt16
    /// The request id for requests, replies and failures; for events, the publisher's
    /// sequence number of this method (1, 2, 3...), restarting when the server does.
    var id: UInt64
}

/// Encoding and validation of bus frames, written with the project's wire codec.
enum BusFrame {
    static let headerSize = 11
    static let maximumFrameSize = headerSize + BusMessage.maximumPayloadSize
    /// Failure messages are cut to this many UTF-8 bytes.
    static let maximumFailureMessageSize = 4096

    static func encode(_ kind: FrameKind, method: UInt16, id: UInt64, payload: [UInt8]) -> [UInt8] {
        var writer = WireWriter(capacity: headerSize + payload.count)
        writer.writeU8(kind.rawValue)
        writer.writeU16(method)
        writer.writeU64(id)
        writer.writeBytes(payload)
        return writer.bytes
    }

    /// Body of a failure: `code u16, length u16, message (UTF-8)`.
    static func encodeFailure(method: UInt16, id: UInt64, code: UInt16, message: String) -> [UInt8] {
        let text = truncatedUTF8(message, limit: maximumFailureMessageSize)
        var writer = WireWriter(capacity: headerSize + 4 + text.count)
        writer.writeU8(FrameKind.failure.rawValue)
        writer.writeU16(method)
        writer.writeU64(id)
        writer.writeU16(code)
        writer.writeU16(UInt16(text.count))
        writer.writeBytes(text)
        return writer.bytes
    }

    /// Where the id (an event's sequence number) sits in an encoded frame.
    static let sequenceOffset = 3

    static func subscriptionPrefix(method: UInt16?) -> [UInt8] {
        var writer = WireWriter(capacity: 3)
        writer.writeU8(FrameKind.event.rawValue)
        if let method { writer.writeU16(method) }
        return writer.bytes
    }

    /// Reads and checks the header of a received frame of `frame.count` bytes.
    static func decodeHeader(_ frame: UnsafeRawBufferPointer) throws(BusError) -> FrameHeader {
        guard frame.count >= headerSize else {
            throw BusError(.malformed("frame of \(frame.count) bytes is shorter than the \(headerSize)-byte header"))
        }
        guard frame.count <= maximumFrameSize else {
            throw BusError(.messageTooLarge(size: frame.count - headerSize, limit: BusMessage.maximumPayloadSize))
        }
        var reader = WireReader(copying: UnsafeRawBufferPointer(rebasing: frame[0..<headerSize]))
        let fields: (kind: UInt8, method: UInt16, id: UInt64)
        do throws(WireError) {
            fields = (try reader.readU8(field: "kind"), try reader.readU16(field: "method"), try reader.readU64(field: "id"))
        } catch {
            throw BusError(.malformed("bad header: \(error)"))
        }
        guard let kind = FrameKind(rawValue: fields.kind) else {
            throw BusError(.malformed("unknown frame kind \(fields.kind)"))
        }
        return FrameHeader(kind: kind, method: fields.method, id: fields.id)
    }

    static func payload(of frame: UnsafeRawBufferPointer) -> [UInt8] {
        Array(UnsafeRawBufferPointer(rebasing: frame[headerSize...]))
    }

    static func decodeFailure(_ frame: UnsafeRawBufferPointer) throws(BusError) -> (code: UInt16, message: String) {
        let bodySize = frame.count - headerSize
        guard bodySize <= 4 + maximumFailureMessageSize else {
            throw BusError(.malformed("failure body of \(bodySize) bytes exceeds \(4 + maximumFailureMessageSize)"))
        }
        var reader = WireReader(copying: UnsafeRawBufferPointer(rebasing: frame[headerSize...]))
        let code: UInt16
        let text: [UInt8]
        do throws(WireError) {
            code = try reader.readU16(field: "code")
            let length = try reader.readU16(field: "message_length")
            text = try reader.readBytes(Int(length), field: "message")
            try reader.expectEnd(field: "failure")
        } catch {
            throw BusError(.malformed("bad failure body: \(error)"))
        }
        guard let message = String(validating: text, as: UTF8.self) else {
            throw BusError(.malformed("failure message is not UTF-8"))
        }
        return (code, message)
    }

    static func truncatedUTF8(_ string: String, limit: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for scalar in string.unicodeScalars {
            let encoded = Array(String(scalar).utf8)
            if bytes.count + encoded.count > limit { break }
            bytes.append(contentsOf: encoded)
        }
        return bytes
    }

    static func checkPayloadSize(_ payload: [UInt8]) throws(BusError) {
        if payload.count > BusMessage.maximumPayloadSize {
            throw BusError(.messageTooLarge(size: payload.count, limit: BusMessage.maximumPayloadSize))
        }
    }
}
