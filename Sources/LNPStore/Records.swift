import Foundation
import LNPCrypto

/// Where an outgoing message is in its life. The raw values are what the file stores.
public enum OutgoingState: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// Accepted and on disk; not yet handed to a link.
    case queued = 0
    /// Handed to a link at least once; the receiver has not yet acknowledged it.
    case sent = 1
    /// The receiver acknowledged it (cumulatively, by sequence number).
    case delivered = 2
    /// Its expiry passed before it was acknowledged; it will not be sent again (a copy
    /// already sent may still arrive).
    case expired = 3
    /// msgd gave up on it; it will not be sent again.
    case failed = 4

    /// Still owed to the recipient: sent again after a reconnect or a crash.
    public var isPending: Bool { self == .queued || self == .sent }

    public var description: String {
        switch self {
        case .queued: "queued"
        case .sent: "sent"
        case .delivered: "delivered"
        case .expired: "expired"
        case .failed: "failed"
        }
    }
}

public struct StoredOutgoing: Sendable, Equatable {
    /// 16 random bytes, unique across every message this store ever sends.
    public var id: [UInt8]
    public var recipient: PublicKey
    /// 1, 2, 3, ... per recipient, without gaps, never reused.
    public var seq: UInt64
    public var type: UInt16
    public var payload: [UInt8]
    /// Whole milliseconds: the file keeps times to the millisecond.
    public var createdAt: Date
    public var expiresAt: Date?
    public var state: OutgoingState
    /// The link the message last went out on (as msgd names it), once sent.
    public var link: String?

    public init(
        id: [UInt8], recipient: PublicKey, seq: UInt64, type: UInt16, payload: [UInt8],
        createdAt: Date, expiresAt: Date?, state: OutgoingState, link: String?
    ) {
        self.id = id
        self.recipient = recipient
        self.seq = seq
        self.type = type
        self.payload = payload
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.state = state
        self.link = link
    }
}

public struct StoredIncoming: Sendable, Equatable {
    /// Increases with every stored message: a reader's cursor for `incoming(afterRowID:...)`.
    public var rowID: Int64
    public var id: [UInt8]
    public var sender: PublicKey
    public var seq: UInt64?
    public var type: UInt16
    public var payload: [UInt8]
    public var receivedAt: Date

    public init(
        rowID: Int64, id: [UInt8], sender: PublicKey, seq: UInt64?, type: UInt16,
        payload: [UInt8], receivedAt: Date
    ) {
        self.rowID = rowID
        self.id = id
        self.sender = sender
        self.seq = seq
        self.type = type
        self.payload = payload
        self.receivedAt = receivedAt
    }
}

public struct StoredPeer: Sendable, Equatable {
    public var nodeID: PublicKey
    /// In the order they were first recorded, each as given (`NODEID@HOST:PORT`, `udp://...`).
    public var addresses: [String]
    /// Reconnected to after a restart; stays set until `removePeer`.
    public var persistent: Bool
    public var lastConnectedAt: Date?

    public init(nodeID: PublicKey, addresses: [String], persistent: Bool, lastConnectedAt: Date?) {
        self.nodeID = nodeID
        self.addresses = addresses
        self.persistent = persistent
        self.lastConnectedAt = lastConnectedAt
    }
}

/// The file keeps times as whole milliseconds since 1970; every `Date` the store hands
/// out went through this conversion, so a value read back equals the value returned
/// when it was written.
enum Millis {
    static func from(_ date: Date) -> Int64 {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        if ms >= 9.2e18 { return Int64.max }
        if ms <= -9.2e18 { return Int64.min }
        return Int64(ms)
    }

    static func date(_ ms: Int64) -> Date {
        Date(timeIntervalSince1970: Double(ms) / 1000)
    }

    static func normalised(_ date: Date) -> Date { Self.date(from(date)) }
}
