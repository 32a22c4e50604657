import LNPCrypto
import LNPWire

public struct NodeInfo: RPCPayload, Equatable {
    public var nodeID: PublicKey
    public var listen: [String]
    public var version: String
    public var peerCount: UInt32
    public var onion: String?
    public var tor: TorStatus

    public init(nodeID: PublicKey, listen: [String], version: String, peerCount: UInt32, onion: String? = nil, tor: TorStatus = TorStatus()) {
        self.nodeID = nodeID
        self.listen = listen
        self.version = version
        self.peerCount = peerCount
        self.onion = onion
        self.tor = tor
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeNodeID(nodeID)
        StringList(listen).encode(into: &writer)
        writer.writeString(version)
        writer.writeU32(peerCount)
        writer.writeOptionalString(onion)
        tor.encode(into: &writer)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        nodeID = try reader.readNodeID(field: "node_id")
        listen = try StringList(from: &reader).values
        version = try reader.readString(field: "version")
        peerCount = try reader.readU32(field: "peer_count")
        onion = try reader.readOptionalString(field: "onion")
        tor = try TorStatus(from: &reader)
    }
}

/// What peerd knows about its tor: how it is reached, bootstrap progress, the onion service.
public struct TorStatus: RPCPayload, Equatable {
    public enum State: UInt8, Sendable, CaseIterable {
        /// The node does not use Tor.
        case off = 0
        /// Starting our tor, or connecting to the configured one.
        case starting
        /// tor runs and is bootstrapping (see `bootstrapProgress`).
        case bootstrapping
        /// Bootstrapped: onion peers can be reached.
        case ready
        /// The control connection is lost (tor stopped or restarting); the node retries.
        case unavailable

        public var name: String {
            switch self {
            case .off: "off"
            case .starting: "starting"
            case .bootstrapping: "bootstrapping"
            case .ready: "ready"
            case .unavailable: "unavailable"
            }
        }
    }

    public var state: State
    /// "external" (a tor the user runs), "launched" (the node's own), or "" when off.
    public var mode: String
    /// 0–100, from tor's `status/bootstrap-phase`.
    public var bootstrapProgress: UInt8
    /// tor's bootstrap summary, or why tor is unavailable.
    public var summary: String
    public var socks: String?
    /// `NAME.onion:PORT` once the onion service is added.
    public var onion: String?
    /// tor reported the onion's descriptor uploaded: other nodes can reach it.
    public var onionReachable: Bool
    public var torOnly: Bool

    public init(state: State = .off, mode: String = "", bootstrapProgress: UInt8 = 0, summary: String = "", socks: String? = nil,
                onion: String? = nil, onionReachable: Bool = false, torOnly: Bool = false) {
        self.state = state
        self.mode = mode
        self.bootstrapProgress = bootstrapProgress
        self.summary = summary
        self.socks = socks
        self.onion = onion
        self.onionReachable = onionReachable
        self.torOnly = torOnly
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeU8(state.rawValue)
        writer.writeString(mode)
        writer.writeU8(bootstrapProgress)
        writer.writeString(summary)
        writer.writeOptionalString(socks)
        writer.writeOptionalString(onion)
        writer.writeBool(onionReachable)
        writer.writeBool(torOnly)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        let offset = reader.offset
        let rawState = try reader.readU8(field: "tor.state")
        guard let state = State(rawValue: rawState) else {
            throw WireError(.invalidValue("tor state \(rawState)"), offset: offset, context: "tor.state")
        }
        self.state = state
        mode = try reader.readString(field: "tor.mode")
        let progressOffset = reader.offset
        bootstrapProgress = try reader.readU8(field: "tor.bootstrap")
        guard bootstrapProgress <= 100 else {
            throw WireError(.invalidValue("bootstrap \(bootstrapProgress) %"), offset: progressOffset, context: "tor.bootstrap")
        }
        summary = try reader.readString(field: "tor.summary")
        socks = try reader.readOptionalString(field: "tor.socks")
        onion = try reader.readOptionalString(field: "tor.onion")
        onionReachable = try reader.readBool(field: "tor.onion_reachable")
        torOnly = try reader.readBool(field: "tor.tor_only")
    }
}

/// A list of short strings (peerd's listen addresses).
public struct StringList: RPCPayload, Equatable {
    public var values: [String]
    public init(_ values: [String]) { self.values = values }
    public func encode(into writer: inout WireWriter) {
        writer.writeU32(UInt32(values.count))
        for value in values { writer.writeString(value) }
    }
    public init(from reader: inout WireReader) throws(WireError) {
        let count = Int(try reader.readU32(field: "strings.count"))
        // Each string takes at least its 2-byte length.
        guard count <= reader.remaining / 2 else {
            throw WireError(.invalidValue("\(count) strings"), offset: reader.offset, context: "strings")
        }
        values = []
        for _ in 0..<count { values.append(try reader.readString(field: "string")) }
    }
}

public struct AddressRequest: RPCPayload, Equatable {
    public var address: String
    public init(address: String) { self.address = address }
    public func encode(into writer: inout WireWriter) { writer.writeString(address) }
    public init(from reader: inout WireReader) throws(WireError) { address = try reader.readString(field: "address") }
}

public struct NodeIDRequest: RPCPayload, Equatable {
    public var nodeID: PublicKey
    public init(nodeID: PublicKey) { self.nodeID = nodeID }
    public func encode(into writer: inout WireWriter) { writer.writeNodeID(nodeID) }
    public init(from reader: inout WireReader) throws(WireError) { nodeID = try reader.readNodeID(field: "node_id") }
}

public struct PeerRecord: RPCPayload, Equatable {
    public var nodeID: PublicKey
    public var address: String
    public var connected: Bool
    public var inbound: Bool
    public var persistent: Bool
    public var largeFrames: Bool
    /// The peer's init features (global OR local), BOLT-9 bytes.
    public var features: [UInt8]

    public init(nodeID: PublicKey, address: String, connected: Bool, inbound: Bool, persistent: Bool, largeFrames: Bool, features: [UInt8]) {
        self.nodeID = nodeID
        self.address = address
        self.connected = connected
        self.inbound = inbound
        self.persistent = persistent
        self.largeFrames = largeFrames
        self.features = features
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeNodeID(nodeID)
        writer.writeString(address)
        writer.writeBool(connected)
        writer.writeBool(inbound)
        writer.writeBool(persistent)
        writer.writeBool(largeFrames)
        writer.writeU16(UInt16(min(features.count, Int(UInt16.max))))
        writer.writeBytes(Array(features.prefix(Int(UInt16.max))))
    }

    public init(from reader: inout WireReader) throws(WireError) {
        nodeID = try reader.readNodeID(field: "node_id")
        address = try reader.readString(field: "address")
        connected = try reader.readBool(field: "connected")
        inbound = try reader.readBool(field: "inbound")
        persistent = try reader.readBool(field: "persistent")
        largeFrames = try reader.readBool(field: "large_frames")
        let length = Int(try reader.readU16(field: "features.length"))
        features = try reader.readBytes(length, field: "features")
    }
}

public struct PeerList: RPCPayload, Equatable {
    public var peers: [PeerRecord]
    public init(peers: [PeerRecord]) { self.peers = peers }
    public func encode(into writer: inout WireWriter) { writer.writeList(peers) }
    public init(from reader: inout WireReader) throws(WireError) { peers = try reader.readList(PeerRecord.self, field: "peers", maximum: 100_000) }
}

public struct PingRequest: RPCPayload, Equatable {
    public var nodeID: PublicKey
    public var pongBytes: UInt16
    public init(nodeID: PublicKey, pongBytes: UInt16) {
        self.nodeID = nodeID
        self.pongBytes = pongBytes
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeNodeID(nodeID)
        writer.writeU16(pongBytes)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        nodeID = try reader.readNodeID(field: "node_id")
        pongBytes = try reader.readU16(field: "pong_bytes")
    }
}

public struct PingReply: RPCPayload, Equatable {
    public var roundTripNanoseconds: UInt64
    public init(roundTripNanoseconds: UInt64) { self.roundTripNanoseconds = roundTripNanoseconds }
    public func encode(into writer: inout WireWriter) { writer.writeU64(roundTripNanoseconds) }
    public init(from reader: inout WireReader) throws(WireError) { roundTripNanoseconds = try reader.readU64(field: "rtt_ns") }
}

/// One application message: a Lightning message type and its payload.
public struct TypedMessage: RPCPayload, Equatable {
    public var type: UInt16
    public var payload: [UInt8]
    public init(type: UInt16, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeU16(type)
        writer.writeBlob(payload)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        type = try reader.readU16(field: "type")
        payload = try reader.readBlob(field: "payload")
    }
}

public struct SendRequest: RPCPayload, Equatable {
    public var recipient: PublicKey
    public var messages: [TypedMessage]
    public init(recipient: PublicKey, messages: [TypedMessage]) {
        self.recipient = recipient
        self.messages = messages
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeNodeID(recipient)
        writer.writeList(messages)
    }
    public var encodedSizeHint: Int { messages.reduce(33 + 4) { $0 + 6 + $1.payload.count } }
    public init(from reader: inout WireReader) throws(WireError) {
        recipient = try reader.readNodeID(field: "recipient")
        messages = try reader.readList(TypedMessage.self, field: "messages")
    }
}

public struct MessageIDs: RPCPayload, Equatable {
    public var ids: [[UInt8]]
    public init(ids: [[UInt8]]) { self.ids = ids }
    public func encode(into writer: inout WireWriter) {
        writer.writeU32(UInt32(ids.count))
        for id in ids { writer.writeBytes(id) }
    }
    public init(from reader: inout WireReader) throws(WireError) {
        let count = Int(try reader.readU32(field: "ids.count"))
        guard count <= reader.remaining / 16 else { throw WireError(.invalidValue("\(count) ids"), offset: reader.offset, context: "ids") }
        ids = []
        ids.reserveCapacity(count)
        for _ in 0..<count { ids.append(try reader.readBytes(16, field: "id")) }
    }
}

public struct RecvRequest: RPCPayload, Equatable {
    /// Messages stored after this row (0: from the beginning).
    public var afterRowID: UInt64
    public var from: PublicKey?
    public var limit: UInt32
    /// Long poll: wait up to this long for at least one message.
    public var waitMilliseconds: UInt32

    public init(afterRowID: UInt64, from: PublicKey?, limit: UInt32, waitMilliseconds: UInt32) {
        self.afterRowID = afterRowID
        self.from = from
        self.limit = limit
        self.waitMilliseconds = waitMilliseconds
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeU64(afterRowID)
        writer.writeOptionalNodeID(from)
        writer.writeU32(limit)
        writer.writeU32(waitMilliseconds)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        afterRowID = try reader.readU64(field: "after_row")
        from = try reader.readOptionalNodeID(field: "from")
        limit = try reader.readU32(field: "limit")
        waitMilliseconds = try reader.readU32(field: "wait_ms")
    }
}

public struct IncomingRecord: RPCPayload, Equatable {
    public var rowID: UInt64
    public var id: [UInt8]
    public var from: PublicKey
    public var type: UInt16
    public var payload: [UInt8]
    /// Microseconds since the Unix epoch.
    public var receivedAtMicros: UInt64

    public init(rowID: UInt64, id: [UInt8], from: PublicKey, type: UInt16, payload: [UInt8], receivedAtMicros: UInt64) {
        self.rowID = rowID
        self.id = id
        self.from = from
        self.type = type
        self.payload = payload
        self.receivedAtMicros = receivedAtMicros
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeU64(rowID)
        writer.writeBytes(id)
        writer.writeNodeID(from)
        writer.writeU16(type)
        writer.writeBlob(payload)
        writer.writeU64(receivedAtMicros)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        var sender: PublicKey?
        try self.init(from: &reader, previousSender: &sender)
    }

    /// Decodes a record whose sender is most likely `previousSender`, the sender of the
    /// record before it in a list: the same 33 bytes reuse that key instead of parsing the
    /// point again (a square root, about 5 µs: the largest cost of a 100-byte record).
    init(from reader: inout WireReader, previousSender: inout PublicKey?) throws(WireError) {
        rowID = try reader.readU64(field: "row")
        id = try reader.readBytes(16, field: "id")
        let start = reader.offset
        if let previous = previousSender, reader.skip(ifNextBytesEqual: previous.compressed) {
            from = previous
        } else {
            let sender = try reader.readBytes(33, field: "from")
            guard let key = try? PublicKey(sender) else {
                throw WireError(.invalidValue("not a valid secp256k1 public key"), offset: start, context: "from")
            }
            from = key
            previousSender = key
        }
        type = try reader.readU16(field: "type")
        payload = try reader.readBlob(field: "payload")
        receivedAtMicros = try reader.readU64(field: "received_at")
    }
}

public struct IncomingList: RPCPayload, Equatable {
    public var messages: [IncomingRecord]
    public init(messages: [IncomingRecord]) { self.messages = messages }
    public func encode(into writer: inout WireWriter) { writer.writeList(messages) }
    public var encodedSizeHint: Int { messages.reduce(4) { $0 + 8 + $1.id.count + 33 + 2 + 4 + $1.payload.count + 8 } }
    public init(from reader: inout WireReader) throws(WireError) {
        let count = Int(try reader.readU32(field: "messages.count"))
        // Each element takes at least one byte, so a count beyond what remains is a lie.
        guard count <= RPCLimits.maximumListCount, count <= reader.remaining else {
            throw WireError(.invalidValue("list of \(count) elements"), offset: reader.offset, context: "messages")
        }
        messages = []
        messages.reserveCapacity(count)
        var sender: PublicKey?
        for _ in 0..<count { messages.append(try IncomingRecord(from: &reader, previousSender: &sender)) }
    }
}

/// Encodes an `IncomingList` one message at a time from borrowed bytes, with the same
/// result as `IncomingList(messages:).encoded()`: msgd writes `recv` replies straight from
/// the store's rows, without an `IncomingRecord` (two arrays, a key copy) per message.
public struct IncomingListBuilder {
    private var writer: WireWriter
    public private(set) var count = 0

    public init(capacity: Int = 0) {
        writer = WireWriter(capacity: capacity)
        writer.writeU32(0)
    }

    /// Payload and header bytes so far.
    public var byteCount: Int { writer.bytes.count }

    public mutating func append(
        rowID: UInt64, id: UnsafeRawBufferPointer, from sender: PublicKey, type: UInt16,
        payload: UnsafeRawBufferPointer, receivedAtMicros: UInt64
    ) {
        writer.writeU64(rowID)
        writer.bytes.append(contentsOf: id)
        writer.writeNodeID(sender)
        writer.writeU16(type)
        writer.writeU32(UInt32(payload.count))
        writer.bytes.append(contentsOf: payload)
        writer.writeU64(receivedAtMicros)
        count += 1
    }

    /// The encoded list.
    public func finish() -> [UInt8] {
        var bytes = writer.bytes
        let count = UInt32(self.count)
        for index in 0..<4 { bytes[index] = UInt8(truncatingIfNeeded: count >> (24 - 8 * index)) }
        return bytes
    }
}

public struct StatusRequest: RPCPayload, Equatable {
    public var id: [UInt8]
    public init(id: [UInt8]) { self.id = id }
    public func encode(into writer: inout WireWriter) { writer.writeBytes(id) }
    public init(from reader: inout WireReader) throws(WireError) { id = try reader.readBytes(16, field: "id") }
}

public struct StatusReply: RPCPayload, Equatable {
    public var id: [UInt8]
    public var recipient: PublicKey
    public var state: String
    public var link: String?
    public var createdAtMicros: UInt64

    public init(id: [UInt8], recipient: PublicKey, state: String, link: String?, createdAtMicros: UInt64) {
        self.id = id
        self.recipient = recipient
        self.state = state
        self.link = link
        self.createdAtMicros = createdAtMicros
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeBytes(id)
        writer.writeNodeID(recipient)
        writer.writeString(state)
        writer.writeOptionalString(link)
        writer.writeU64(createdAtMicros)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        id = try reader.readBytes(16, field: "id")
        recipient = try reader.readNodeID(field: "recipient")
        state = try reader.readString(field: "state")
        link = try reader.readOptionalString(field: "link")
        createdAtMicros = try reader.readU64(field: "created_at")
    }
}

// MARK: peerd

/// Wire messages (u16 type + payload) for one peer, sent as one batch.
public struct PeerSendRequest: RPCPayload, Equatable {
    public var nodeID: PublicKey
    public var messages: [[UInt8]]
    public init(nodeID: PublicKey, messages: [[UInt8]]) {
        self.nodeID = nodeID
        self.messages = messages
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeNodeID(nodeID)
        writer.writeU32(UInt32(messages.count))
        for message in messages { writer.writeBlob(message) }
    }
    public var encodedSizeHint: Int { messages.reduce(33 + 4) { $0 + 4 + $1.count } }
    public init(from reader: inout WireReader) throws(WireError) {
        let (nodeID, messages) = try Self.read(&reader)
        self.nodeID = nodeID
        self.messages = messages.map { message in
            var message = message
            return message.readRemainingBytes()
        }
    }

    /// Decodes without copying the messages: each comes back as a reader over its bytes
    /// inside `bytes`. msgd parses thousands of inbound messages per event this way.
    public static func decodeInPlace(_ bytes: [UInt8]) throws(WireError) -> (nodeID: PublicKey, messages: [WireReader]) {
        var reader = WireReader(bytes)
        return try read(&reader)
    }

    private static func read(_ reader: inout WireReader) throws(WireError) -> (nodeID: PublicKey, messages: [WireReader]) {
        let nodeID = try reader.readNodeID(field: "node_id")
        let count = Int(try reader.readU32(field: "messages.count"))
        guard count <= reader.remaining / 4 else { throw WireError(.invalidValue("\(count) messages"), offset: reader.offset, context: "messages") }
        var messages: [WireReader] = []
        messages.reserveCapacity(count)
        for _ in 0..<count {
            let length = Int(try reader.readU32(field: "message.length"))
            guard length <= RPCLimits.maximumBlobLength else {
                throw WireError(.fieldTooLong(maximum: RPCLimits.maximumBlobLength, actual: length), offset: reader.offset, context: "message")
            }
            messages.append(try reader.readSubReader(length, field: "message"))
        }
        return (nodeID, messages)
    }
}

public enum PeerSendOutcome: UInt8, Sendable {
    case written = 0
    /// The peer's outbound queue is full: try again after its `writable` event.
    case queueFull = 1
}

/// Inbound application messages from one peer, in arrival order.
public typealias PeerMessagesEvent = PeerSendRequest

public struct PeerDisconnectedEvent: RPCPayload, Equatable {
    public var nodeID: PublicKey
    public var reason: String
    public init(nodeID: PublicKey, reason: String) {
        self.nodeID = nodeID
        self.reason = reason
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeNodeID(nodeID)
        writer.writeString(reason)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        nodeID = try reader.readNodeID(field: "node_id")
        reason = try reader.readString(field: "reason")
    }
}

// MARK: keyd

public struct ECDHRequest: RPCPayload, Equatable {
    public var point: PublicKey
    public init(point: PublicKey) { self.point = point }
    public func encode(into writer: inout WireWriter) { writer.writeNodeID(point) }
    public init(from reader: inout WireReader) throws(WireError) { point = try reader.readNodeID(field: "point") }
}

public struct DigestRequest: RPCPayload, Equatable {
    public var digest: [UInt8]
    public init(digest: [UInt8]) { self.digest = digest }
    public func encode(into writer: inout WireWriter) { writer.writeBytes(digest) }
    public init(from reader: inout WireReader) throws(WireError) { digest = try reader.readBytes(32, field: "digest") }
}

public struct Bytes32: RPCPayload, Equatable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public func encode(into writer: inout WireWriter) { writer.writeBytes(bytes) }
    public init(from reader: inout WireReader) throws(WireError) { bytes = try reader.readBytes(32, field: "bytes32") }
}

public struct Signature64: RPCPayload, Equatable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public func encode(into writer: inout WireWriter) { writer.writeBytes(bytes) }
    public init(from reader: inout WireReader) throws(WireError) { bytes = try reader.readBytes(64, field: "signature") }
}
