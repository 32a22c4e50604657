import LNPWire

/// The plaintext inside a sealed envelope: a versioned record of the message layer.
///
///     record version  1   0x01
///     kind            1   0x01 message, 0x02 receipt
///     fields          *   a BOLT-1 TLV stream (strictly increasing types, minimal BigSize,
///                         unknown even types rejected, unknown odd types skipped)
///
/// message: 0 message_id (16 bytes), 1 seq (tu64, optional, at least 1), 2 created (tu64,
/// unix seconds), 4 expiry (tu64, unix seconds, not before created), 6 type (u16), 8 body
/// (the rest of the record's value).
/// receipt: 0 delivered (0 to 1024 message ids, 16 bytes each), 1 through_seq (tu64,
/// optional, at least 1); at least one of the two must acknowledge something.
/// Every other listed field is required; a known field with the wrong size is an error.
public enum EnvelopeRecord: Sendable, Equatable {
    case message(EnvelopeMessage)
    case receipt(EnvelopeReceipt)

    public static let version: UInt8 = 1

    enum Kind: UInt8 {
        case message = 1
        case receipt = 2
    }

    enum MessageField {
        static let id: UInt64 = 0
        /// Odd: a reader that predates it skips it and deduplicates by id alone.
        static let seq: UInt64 = 1
        static let created: UInt64 = 2
        static let expiry: UInt64 = 4
        static let type: UInt64 = 6
        static let body: UInt64 = 8
        static let all: Set<UInt64> = [id, seq, created, expiry, type, body]
    }

    enum ReceiptField {
        static let delivered: UInt64 = 0
        /// Odd, like the message's seq: a cumulative acknowledgement of the sender's sequence.
        static let throughSeq: UInt64 = 1
        static let all: Set<UInt64> = [delivered, throughSeq]
    }

    public func encode() -> [UInt8] {
        var fields = TLVStream()
        var writer = WireWriter()
        writer.writeU8(Self.version)
        switch self {
        case let .message(message):
            writer.writeU8(Kind.message.rawValue)
            fields[MessageField.id] = message.id
            if let seq = message.seq { fields[MessageField.seq] = truncated(seq) }
            fields[MessageField.created] = truncated(message.created)
            fields[MessageField.expiry] = truncated(message.expiry)
            var type = WireWriter(capacity: 2)
            type.writeU16(message.type)
            fields[MessageField.type] = type.bytes
            fields[MessageField.body] = message.body
        case let .receipt(receipt):
            writer.writeU8(Kind.receipt.rawValue)
            if !receipt.delivered.isEmpty || receipt.throughSeq == nil {
                fields[ReceiptField.delivered] = receipt.delivered.flatMap { $0 }
            }
            if let throughSeq = receipt.throughSeq { fields[ReceiptField.throughSeq] = truncated(throughSeq) }
        }
        fields.encode(into: &writer.bytes)
        return writer.bytes
    }

    /// Strict decoding: every failure names the field and what is wrong with it.
    public static func decode(_ bytes: [UInt8]) throws(EnvelopeRecordError) -> EnvelopeRecord {
        var reader = WireReader(bytes)
        let version = try header(&reader, field: "record.version")
        guard version == Self.version else { throw .unknownVersion(version) }
        let kindByte = try header(&reader, field: "record.kind")
        guard let kind = Kind(rawValue: kindByte) else { throw .unknownKind(kindByte) }
        switch kind {
        case .message:
            let fields = try stream(&reader, knownTypes: MessageField.all, context: "message")
            let id = try required(fields, MessageField.id, "message_id")
            var seq: UInt64?
            if let value = fields[MessageField.seq] { seq = try timestamp(value, "seq") }
            let created = try timestamp(try required(fields, MessageField.created, "created"), "created")
            let expiry = try timestamp(try required(fields, MessageField.expiry, "expiry"), "expiry")
            let type = try required(fields, MessageField.type, "type")
            guard type.count == 2 else { throw .badFieldLength(field: "type", expected: 2, actual: type.count) }
            let body = try required(fields, MessageField.body, "body")
            return .message(try EnvelopeMessage(id: id, created: created, expiry: expiry,
                                                type: UInt16(type[0]) << 8 | UInt16(type[1]), body: body, seq: seq))
        case .receipt:
            let fields = try stream(&reader, knownTypes: ReceiptField.all, context: "receipt")
            var throughSeq: UInt64?
            if let value = fields[ReceiptField.throughSeq] { throughSeq = try timestamp(value, "through_seq") }
            // The id list may be left out only when the cumulative mark says it all.
            let delivered = throughSeq == nil ? try required(fields, ReceiptField.delivered, "delivered") : fields[ReceiptField.delivered] ?? []
            let idLength = EnvelopeMessage.idLength
            guard delivered.count % idLength == 0 else { throw .partialMessageID(length: delivered.count) }
            // Checked before the ids are split out, so a huge list costs nothing.
            guard delivered.count / idLength <= EnvelopeReceipt.maximumIDs else {
                throw .tooManyMessageIDs(count: delivered.count / idLength, limit: EnvelopeReceipt.maximumIDs)
            }
            let ids = stride(from: 0, to: delivered.count, by: idLength).map { Array(delivered[$0..<($0 + idLength)]) }
            return .receipt(try EnvelopeReceipt(delivered: ids, throughSeq: throughSeq))
        }
    }

    private static func header(_ reader: inout WireReader, field: String) throws(EnvelopeRecordError) -> UInt8 {
        do throws(WireError) {
            return try reader.readU8(field: field)
        } catch {
            throw .malformed(error)
        }
    }

    private static func stream(
        _ reader: inout WireReader, knownTypes: Set<UInt64>, context: String
    ) throws(EnvelopeRecordError) -> TLVStream {
        do throws(WireError) {
            return try TLVStream.decode(&reader, knownTypes: knownTypes, context: context)
        } catch {
            throw .malformed(error)
        }
    }

    private static func required(_ fields: TLVStream, _ type: UInt64, _ name: String) throws(EnvelopeRecordError) -> [UInt8] {
        guard let value = fields[type] else { throw .missingField(name) }
        return value
    }

    /// A tu64 field (times and sequence numbers).
    private static func timestamp(_ value: [UInt8], _ name: String) throws(EnvelopeRecordError) -> UInt64 {
        var reader = WireReader(value)
        do throws(WireError) {
            return try reader.readTruncatedU64(length: value.count, field: name)
        } catch {
            throw .malformed(error)
        }
    }

    private func truncated(_ value: UInt64) -> [UInt8] {
        var writer = WireWriter(capacity: 8)
        writer.writeTruncatedU64(value)
        return writer.bytes
    }
}

/// A message carried in a sealed envelope. The receiver deduplicates by `id` until `expiry`.
public struct EnvelopeMessage: Sendable, Equatable {
    public static let idLength = 16

    public let id: [UInt8]
    /// Unix seconds.
    public let created: UInt64
    /// Unix seconds; after it the message is dropped and its id forgotten.
    public let expiry: UInt64
    public let type: UInt16
    public let body: [UInt8]
    /// The message's place in its sender's sequence to this recipient (from 1), the same
    /// number it carries as an `lnp_message`: the receiver then stores a message that comes
    /// by spool and by another link, or twice by spool, once. Nil for a message outside
    /// any sequence, deduplicated by id alone.
    public let seq: UInt64?

    public init(id: [UInt8], created: UInt64, expiry: UInt64, type: UInt16, body: [UInt8], seq: UInt64? = nil) throws(EnvelopeRecordError) {
        guard id.count == Self.idLength else {
            throw .badFieldLength(field: "message_id", expected: Self.idLength, actual: id.count)
        }
        guard expiry >= created else { throw .expiryBeforeCreation(created: created, expiry: expiry) }
        if let seq, seq == 0 || seq > UInt64(Int64.max) { throw .sequenceOutOfRange(field: "seq", seq) }
        self.seq = seq
        self.id = id
        self.created = created
        self.expiry = expiry
        self.type = type
        self.body = body
    }

    /// True once `now` (unix seconds) is past the expiry.
    public func hasExpired(at now: UInt64) -> Bool { now > expiry }
}

/// Acknowledges messages delivered to the receipt's sender; valid only from the node those
/// messages were sealed to.
public struct EnvelopeReceipt: Sendable, Equatable {
    /// 1024 ids are 16 KiB: a receipt stays small however far behind it is.
    public static let maximumIDs = 1024

    public let delivered: [[UInt8]]
    /// Every message of the receipt's recipient's sequence up to here was received (what
    /// `lnp_ack` says on a live link); nil in a receipt that lists ids only.
    public let throughSeq: UInt64?

    public init(delivered: [[UInt8]], throughSeq: UInt64? = nil) throws(EnvelopeRecordError) {
        if let throughSeq, throughSeq == 0 || throughSeq > UInt64(Int64.max) { throw .sequenceOutOfRange(field: "through_seq", throughSeq) }
        guard !delivered.isEmpty || throughSeq != nil else { throw .noMessageIDs }
        self.throughSeq = throughSeq
        guard delivered.count <= Self.maximumIDs else { throw .tooManyMessageIDs(count: delivered.count, limit: Self.maximumIDs) }
        for id in delivered where id.count != EnvelopeMessage.idLength {
            throw .badFieldLength(field: "delivered", expected: EnvelopeMessage.idLength, actual: id.count)
        }
        self.delivered = delivered
    }
}

/// Every way a record inside an envelope can be malformed.
public enum EnvelopeRecordError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownVersion(UInt8)
    case unknownKind(UInt8)
    /// The bytes are not a well-formed record (cut short, bad TLV stream, unknown even field).
    case malformed(WireError)
    case missingField(String)
    case badFieldLength(field: String, expected: Int, actual: Int)
    case expiryBeforeCreation(created: UInt64, expiry: UInt64)
    case noMessageIDs
    /// The receipt's id list is not a whole number of 16-byte ids.
    case partialMessageID(length: Int)
    case tooManyMessageIDs(count: Int, limit: Int)
    /// A sequence number (`seq`, `through_seq`) of 0 or above 2^63 - 1.
    case sequenceOutOfRange(field: String, UInt64)

    public var specCode: String {
        switch self {
        case .unknownVersion: "RECORD_UNKNOWN_VERSION"
        case .unknownKind: "RECORD_UNKNOWN_KIND"
        case .malformed: "RECORD_MALFORMED"
        case .missingField: "RECORD_MISSING_FIELD"
        case .badFieldLength: "RECORD_BAD_FIELD_LENGTH"
        case .expiryBeforeCreation: "RECORD_EXPIRY_BEFORE_CREATION"
        case .noMessageIDs: "RECORD_NO_MESSAGE_IDS"
        case .partialMessageID: "RECORD_PARTIAL_MESSAGE_ID"
        case .tooManyMessageIDs: "RECORD_TOO_MANY_MESSAGE_IDS"
        case .sequenceOutOfRange: "RECORD_SEQUENCE_OUT_OF_RANGE"
        }
    }

    public var description: String {
        switch self {
        case let .unknownVersion(version):
            "the envelope record has unknown version \(version) (only \(EnvelopeRecord.version) is defined)"
        case let .unknownKind(kind):
            "the envelope record has unknown kind \(kind) (1 is a message, 2 a receipt)"
        case let .malformed(error):
            "the envelope record is malformed: \(error)"
        case let .missingField(field):
            "the envelope record lacks its required field \(field)"
        case let .badFieldLength(field, expected, actual):
            "the envelope record's field \(field) must be \(expected) bytes, got \(actual)"
        case let .expiryBeforeCreation(created, expiry):
            "the message expires (\(expiry)) before it was created (\(created))"
        case .noMessageIDs:
            "the receipt acknowledges no message"
        case let .partialMessageID(length):
            "the receipt's delivered field is \(length) bytes, not a whole number of \(EnvelopeMessage.idLength)-byte message ids"
        case let .tooManyMessageIDs(count, limit):
            "the receipt lists \(count) message ids, more than the limit of \(limit)"
        case let .sequenceOutOfRange(field, value):
            "the envelope record's \(field) is \(value), outside 1...\(Int64.max)"
        }
    }
}
