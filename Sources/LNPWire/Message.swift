/// BOLT-1 message type numbers this codec decodes.
public enum MessageType {
    public static let warning: UInt16 = 1
    public static let `init`: UInt16 = 16
    public static let error: UInt16 = 17
    public static let ping: UInt16 = 18
    public static let pong: UInt16 = 19

    public static let known: Set<UInt16> = [warning, `init`, error, ping, pong]

    /// First type of the custom range (BOLT-1: experimental and application-specific).
    public static let customRangeStart: UInt16 = 32768

    public static func name(of type: UInt16) -> String {
        switch type {
        case warning: return "warning"
        case `init`: return "init"
        case error: return "error"
        case ping: return "ping"
        case pong: return "pong"
        default: return type >= customRangeStart ? "custom(\(type))" : "type(\(type))"
        }
    }
}

/// A decoded Lightning message: `[u16:type][payload][extension TLV stream]`.
public enum Message: Equatable, Sendable {
    case `init`(InitMessage)
    case error(ErrorMessage)
    case warning(WarningMessage)
    case ping(Ping)
    case pong(Pong)
    /// Any odd type this codec does not know (including custom types >= 32768).
    /// BOLT-1 says to ignore such messages; the payload is carried opaquely.
    case unknownOdd(type: UInt16, payload: [UInt8])

    public var type: UInt16 {
        switch self {
        case .`init`: return MessageType.`init`
        case .error: return MessageType.error
        case .warning: return MessageType.warning
        case .ping: return MessageType.ping
        case .pong: return MessageType.pong
        case let .unknownOdd(type, _): return type
        }
    }

    /// Decodes one whole message. Error offsets count from the type's first byte.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Message {
        var reader = WireReader(bytes)
        return try decode(&reader)
    }

    public static func decode(_ bytes: ArraySlice<UInt8>) throws(WireError) -> Message {
        var reader = WireReader(bytes)
        return try decode(&reader)
    }

    /// Decodes a message held in a buffer owned elsewhere (such as a transport's
    /// decryption buffer); the bytes are copied once, so the result outlives it.
    public static func decode(copying buffer: UnsafeRawBufferPointer) throws(WireError) -> Message {
        var reader = WireReader(copying: buffer)
        return try decode(&reader)
    }

    /// Decodes one message that fills the rest of `reader`.
    public static func decode(_ reader: inout WireReader) throws(WireError) -> Message {
        guard reader.remaining >= 2 else {
            throw WireError(.messageTooShort, offset: reader.offset, context: "type")
        }
        let typeOffset = reader.offset
        let type = try reader.readU16(field: "type")
        let known: Message?
        do throws(WireError) {
            known = try decodeKnownPayload(type: type, &reader)
        } catch {
            throw error.inContext(MessageType.name(of: type))
        }
        if let known { return known }
        // "It's OK to be odd": unknown odd messages are ignored, unknown even ones close the connection.
        guard type & 1 == 1 else {
            throw WireError(.unknownEvenMessageType(type), offset: typeOffset, context: "type")
        }
        return .unknownOdd(type: type, payload: reader.readRemainingBytes())
    }

    /// The payload of a type this codec knows, or `nil` for any other type.
    private static func decodeKnownPayload(type: UInt16, _ reader: inout WireReader) throws(WireError) -> Message? {
        switch type {
        case MessageType.`init`: return .`init`(try InitMessage(payload: &reader))
        case MessageType.error: return .error(try ErrorMessage(payload: &reader))
        case MessageType.warning: return .warning(try WarningMessage(payload: &reader))
        case MessageType.ping: return .ping(try Ping(payload: &reader))
        case MessageType.pong: return .pong(try Pong(payload: &reader))
        default: return nil
        }
    }

    /// Length of `encode()`'s result.
    public var encodedLength: Int {
        switch self {
        case let .`init`(message): return 2 + message.payloadLength
        case let .error(message): return 2 + message.payloadLength
        case let .warning(message): return 2 + message.payloadLength
        case let .ping(message): return 2 + message.payloadLength
        case let .pong(message): return 2 + message.payloadLength
        case let .unknownOdd(_, payload): return 2 + payload.count
        }
    }

    /// `[u16:type][payload]`, allocated once. Fields that cannot be represented
    /// (a `channel_id` that is not 32 bytes, a byte string over 65535 bytes) trap;
    /// `checkEncodable()` reports them, and anything else that would not decode
    /// back to an equal message, as an error instead.
    public func encode() -> [UInt8] {
        var writer = WireWriter(capacity: encodedLength)
        encode(into: &writer)
        return writer.bytes
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeU16(type)
        switch self {
        case let .`init`(message): message.encodePayload(into: &writer)
        case let .error(message): message.encodePayload(into: &writer)
        case let .warning(message): message.encodePayload(into: &writer)
        case let .ping(message): message.encodePayload(into: &writer)
        case let .pong(message): message.encodePayload(into: &writer)
        case let .unknownOdd(_, payload): writer.writeBytes(payload)
        }
    }

    /// Throws if `encode()` would trap or produce bytes that do not decode back to `self`.
    public func checkEncodable() throws(WireError) {
        switch self {
        case let .`init`(message): try message.checkEncodable()
        case let .error(message): try message.checkEncodable()
        case let .warning(message): try message.checkEncodable()
        case let .ping(message): try message.checkEncodable()
        case let .pong(message): try message.checkEncodable()
        case let .unknownOdd(type, _):
            guard type & 1 == 1, !MessageType.known.contains(type) else {
                throw WireError(
                    .invalidValue("unknownOdd needs an odd type other than the known ones, got \(type)"),
                    offset: 0, context: "type")
            }
        }
    }
}
