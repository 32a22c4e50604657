import LNPWire

/// The node-to-node messaging protocol msgd speaks with peers that advertise
/// `option_lnp_messaging` (bits 182/183). Other Lightning peers get the user's message
/// as a plain Lightning message of the user's type.
///
/// - `lnp_message` (type 33001): `[u64:seq][16*byte:id][u16:type][u32:len][len*byte:payload]`.
///   `seq` counts 1, 2, 3... per sender→recipient pair and survives restarts; `id` is the
///   message's identity shown to both users.
/// - `lnp_ack` (type 33003): `[u64:through_seq]`: every message up to and including this
///   sequence number is stored by the recipient. Cumulative, so one ack covers a batch.
///
/// A sender resends everything after the last acknowledged sequence number when a
/// connection comes back; the recipient drops sequence numbers it already stored. So a
/// message acknowledged by `send` reaches its recipient exactly once.
public enum MessagingWire {
    /// The type `lnp-cli send` uses when no `--type` is given (odd, custom range).
    public static let defaultUserType: UInt16 = 32_769
    public static let envelopeType: UInt16 = 33_001
    public static let ackType: UInt16 = 33_003
}

public struct Envelope: Equatable, Sendable {
    public var seq: UInt64
    public var id: [UInt8]
    public var type: UInt16
    public var payload: [UInt8]

    public init(seq: UInt64, id: [UInt8], type: UInt16, payload: [UInt8]) {
        self.seq = seq
        self.id = id
        self.type = type
        self.payload = payload
    }

    /// The whole Lightning message: u16 type 33001 then the fields.
    public func wireMessage() -> [UInt8] {
        var writer = WireWriter(capacity: Self.wireSize(payloadCount: payload.count))
        Self.write(seq: seq, id: id, type: type, payload: payload, into: &writer)
        return writer.bytes
    }

    /// The size of the whole Lightning message for a payload of `payloadCount` bytes (with
    /// a 16-byte id).
    public static func wireSize(payloadCount: Int) -> Int { 2 + 8 + 16 + 2 + 4 + payloadCount }

    /// Writes the whole Lightning message without building an `Envelope` first: msgd
    /// writes thousands of them straight into one request to peerd.
    public static func write(seq: UInt64, id: [UInt8], type: UInt16, payload: [UInt8], into writer: inout WireWriter) {
        writer.writeU16(MessagingWire.envelopeType)
        writer.writeU64(seq)
        writer.writeBytes(id)
        writer.writeU16(type)
        writer.writeU32(UInt32(payload.count))
        writer.writeBytes(payload)
    }

    /// Decodes the fields after the u16 message type.
    public init(payload reader: inout WireReader) throws(WireError) {
        seq = try reader.readU64(field: "lnp_message.seq")
        id = try reader.readBytes(16, field: "lnp_message.id")
        type = try reader.readU16(field: "lnp_message.type")
        let length = Int(try reader.readU32(field: "lnp_message.len"))
        payload = try reader.readBytes(length, field: "lnp_message.payload")
        try reader.expectEnd(field: "lnp_message")
    }
}

public struct Ack: Equatable, Sendable {
    public var throughSeq: UInt64
    public init(throughSeq: UInt64) { self.throughSeq = throughSeq }

    public func wireMessage() -> [UInt8] {
        var writer = WireWriter(capacity: 10)
        writer.writeU16(MessagingWire.ackType)
        writer.writeU64(throughSeq)
        return writer.bytes
    }

    public init(payload reader: inout WireReader) throws(WireError) {
        throughSeq = try reader.readU64(field: "lnp_ack.through_seq")
        try reader.expectEnd(field: "lnp_ack")
    }
}
