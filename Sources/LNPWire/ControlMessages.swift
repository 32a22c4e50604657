/// The shared layout of `error` (17) and `warning` (1):
/// `[channel_id:channel_id][u16:len][len*byte:data]` followed by a TLV extension
/// (no TLV types are defined for either, so only odd records are accepted).
public protocol ChannelDiagnosticMessage: Equatable, Sendable {
    static var name: String { get }
    var channelID: [UInt8] { get set }
    var data: [UInt8] { get set }
    var tlvs: TLVStream { get set }
    init(channelID: [UInt8], data: [UInt8], tlvs: TLVStream)
}

extension ChannelDiagnosticMessage {
    /// `channel_id` is always 32 bytes (BOLT-1 fundamental type).
    public static var channelIDLength: Int { 32 }

    /// A message about all channels (all-zero `channel_id`) carrying UTF-8 text.
    public init(allChannels text: String) {
        self.init(channelID: [UInt8](repeating: 0, count: Self.channelIDLength), data: Array(text.utf8), tlvs: TLVStream())
    }

    /// An all-zero `channel_id` refers to all channels with the peer.
    public var isForAllChannels: Bool { channelID.allSatisfy { $0 == 0 } }

    /// `data` for logs. BOLT-1: a receiver SHOULD NOT print `data` verbatim unless it
    /// is printable ASCII (32...126), so other bytes are shown as `\xHH`.
    public var printableData: String {
        var text = ""
        text.reserveCapacity(data.count)
        for byte in data {
            if (32...126).contains(byte) {
                text.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16)
                text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return text
    }

    /// Decodes the payload after the 2-byte type.
    public init(payload reader: inout WireReader) throws(WireError) {
        let channelID = try reader.readBytes(Self.channelIDLength, field: "channel_id")
        let length = try reader.readU16(field: "len")
        let data = try reader.readBytes(Int(length), field: "data")
        let tlvs = try TLVStream.decode(&reader, knownTypes: [], context: "tlvs")
        self.init(channelID: channelID, data: data, tlvs: tlvs)
    }

    public var payloadLength: Int { Self.channelIDLength + 2 + data.count + tlvs.encodedLength }

    /// Writes the payload (without the message type). A `channel_id` that is not
    /// 32 bytes or `data` longer than 65535 bytes cannot be represented and traps.
    public func encodePayload(into writer: inout WireWriter) {
        precondition(channelID.count == Self.channelIDLength, "channel_id must be 32 bytes, got \(channelID.count)")
        guard let length = UInt16(exactly: data.count) else {
            preconditionFailure("\(Self.name) data of \(data.count) bytes does not fit its u16 length")
        }
        writer.writeBytes(channelID)
        writer.writeU16(length)
        writer.writeBytes(data)
        tlvs.encode(into: &writer.bytes)
    }

    /// Reports values whose encoding would trap or not decode back to an equal message.
    public func checkEncodable() throws(WireError) {
        guard channelID.count == Self.channelIDLength else {
            throw WireError(
                .invalidFieldLength(expected: Self.channelIDLength, actual: channelID.count),
                offset: 2, context: Self.name + ".channel_id")
        }
        guard data.count <= Int(UInt16.max) else {
            throw WireError(
                .fieldTooLong(maximum: Int(UInt16.max), actual: data.count),
                offset: 2 + Self.channelIDLength + 2, context: Self.name + ".data")
        }
        try checkOnlyOddRecords(tlvs, context: Self.name + ".tlvs")
    }
}

/// Checks an extension with no known types: ordered, odd-only (even would be rejected on decode).
internal func checkOnlyOddRecords(_ tlvs: TLVStream, context: String) throws(WireError) {
    try tlvs.checkOrdering(context: context)
    for record in tlvs.records where !record.isOdd {
        throw WireError(.unknownEvenTLVType(record.type), offset: 0, context: context)
    }
}

/// BOLT-1 `error` (type 17): the sender fails the channel(s) it names.
public struct ErrorMessage: ChannelDiagnosticMessage {
    public static let name = "error"
    public var channelID: [UInt8]
    public var data: [UInt8]
    public var tlvs: TLVStream

    public init(channelID: [UInt8], data: [UInt8], tlvs: TLVStream = TLVStream()) {
        self.channelID = channelID
        self.data = data
        self.tlvs = tlvs
    }
}

/// BOLT-1 `warning` (type 1): diagnostic only, nothing is failed.
public struct WarningMessage: ChannelDiagnosticMessage {
    public static let name = "warning"
    public var channelID: [UInt8]
    public var data: [UInt8]
    public var tlvs: TLVStream

    public init(channelID: [UInt8], data: [UInt8], tlvs: TLVStream = TLVStream()) {
        self.channelID = channelID
        self.data = data
        self.tlvs = tlvs
    }
}

/// BOLT-1 `ping` (type 18): `[u16:num_pong_bytes][u16:byteslen][byteslen*byte:ignored]`.
public struct Ping: Equatable, Sendable {
    /// BOLT-1: a receiver answers only if `num_pong_bytes` is below this; larger
    /// values let a sender create traffic that must not be answered.
    public static let noPongThreshold: UInt16 = 65532

    public var numPongBytes: UInt16
    public var ignored: [UInt8]
    public var tlvs: TLVStream

    public init(numPongBytes: UInt16, ignored: [UInt8] = [], tlvs: TLVStream = TLVStream()) {
        self.numPongBytes = numPongBytes
        self.ignored = ignored
        self.tlvs = tlvs
    }

    /// Whether BOLT-1 requires a `pong` in reply (`num_pong_bytes` < 65532).
    public var expectsPong: Bool { numPongBytes < Ping.noPongThreshold }

    /// The reply BOLT-1 requires (`byteslen` = `num_pong_bytes`, zeroed), or `nil`
    /// when the ping must be ignored.
    public var reply: Pong? {
        expectsPong ? Pong(ignored: [UInt8](repeating: 0, count: Int(numPongBytes))) : nil
    }

    public init(payload reader: inout WireReader) throws(WireError) {
        numPongBytes = try reader.readU16(field: "num_pong_bytes")
        let length = try reader.readU16(field: "byteslen")
        ignored = try reader.readBytes(Int(length), field: "ignored")
        tlvs = try TLVStream.decode(&reader, knownTypes: [], context: "tlvs")
    }

    public var payloadLength: Int { 4 + ignored.count + tlvs.encodedLength }

    public func encodePayload(into writer: inout WireWriter) {
        guard let length = UInt16(exactly: ignored.count) else {
            preconditionFailure("ping ignored of \(ignored.count) bytes does not fit its u16 length")
        }
        writer.writeU16(numPongBytes)
        writer.writeU16(length)
        writer.writeBytes(ignored)
        tlvs.encode(into: &writer.bytes)
    }

    public func checkEncodable() throws(WireError) {
        guard ignored.count <= Int(UInt16.max) else {
            throw WireError(.fieldTooLong(maximum: Int(UInt16.max), actual: ignored.count), offset: 6, context: "ping.ignored")
        }
        try checkOnlyOddRecords(tlvs, context: "ping.tlvs")
    }
}

/// BOLT-1 `pong` (type 19): `[u16:byteslen][byteslen*byte:ignored]`.
public struct Pong: Equatable, Sendable {
    public var ignored: [UInt8]
    public var tlvs: TLVStream

    public init(ignored: [UInt8], tlvs: TLVStream = TLVStream()) {
        self.ignored = ignored
        self.tlvs = tlvs
    }

    /// Whether this pong answers a ping that asked for `numPongBytes`.
    public func answers(_ ping: Ping) -> Bool {
        ping.expectsPong && ignored.count == Int(ping.numPongBytes)
    }

    public init(payload reader: inout WireReader) throws(WireError) {
        let length = try reader.readU16(field: "byteslen")
        ignored = try reader.readBytes(Int(length), field: "ignored")
        tlvs = try TLVStream.decode(&reader, knownTypes: [], context: "tlvs")
    }

    public var payloadLength: Int { 2 + ignored.count + tlvs.encodedLength }

    public func encodePayload(into writer: inout WireWriter) {
        guard let length = UInt16(exactly: ignored.count) else {
            preconditionFailure("pong ignored of \(ignored.count) bytes does not fit its u16 length")
        }
        writer.writeU16(length)
        writer.writeBytes(ignored)
        tlvs.encode(into: &writer.bytes)
    }

    public func checkEncodable() throws(WireError) {
        guard ignored.count <= Int(UInt16.max) else {
            throw WireError(.fieldTooLong(maximum: Int(UInt16.max), actual: ignored.count), offset: 4, context: "pong.ignored")
        }
        try checkOnlyOddRecords(tlvs, context: "pong.tlvs")
    }
}
