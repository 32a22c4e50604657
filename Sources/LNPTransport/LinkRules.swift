import LNPWire

/// Rules every session link applies to its peer, whatever carries the bytes: the stream
/// core (`PeerLinkCore`) and the frame core (`FrameLinkCore`) share them so a peer meets
/// the same judgement over TCP, UDP or a serial line.
enum LinkRules {
    /// Why the peer's `init` cannot be accepted, or nil when it can.
    static func incompatibility(of remoteInit: InitMessage, localInit: InitMessage, knownFeatures: Set<Int>) -> LinkFailure? {
        do {
            try remoteInit.validateFeatures(known: knownFeatures)
        } catch {
            return .incompatibleInit(error)
        }
        if let ours = localInit.networks, !ours.isEmpty,
           let theirs = remoteInit.networks, !theirs.isEmpty,
           !theirs.contains(where: ours.contains) {
            return .noCommonNetwork
        }
        return nil
    }

    /// The message type of a whole message, or nil when it is shorter than its type.
    static func messageType(of message: [UInt8]) -> UInt16? {
        message.count >= 2 ? UInt16(message[0]) << 8 | UInt16(message[1]) : nil
    }

    /// One of the peer's messages after `init`, as the rules see it.
    enum PeerMessage {
        case ping(Ping)
        case pong(Pong)
        case `init`
        /// For the owner: odd, `warning`, `error`, or an even type it declared.
        case application
    }

    /// Sorts one of the peer's messages, or names the rule it breaks (a malformed ping or
    /// pong, a ping flood, an unknown even type): the link then warns the peer and closes.
    static func classify(_ message: [UInt8], policy: LinkPolicy, pingFlood: inout PingFloodLimiter,
                         now: ContinuousClock.Instant) -> Result<PeerMessage, LinkFailure> {
        guard let type = messageType(of: message) else {
            return .failure(.malformedMessage(type: nil, reason: "shorter than its 2-byte type"))
        }
        switch type {
        case MessageType.ping:
            guard pingFlood.admit(now: now) else {
                return .failure(.pingFlood(count: policy.maximumPingsPerWindow, window: policy.pingFloodWindow))
            }
            return decodeControl(message, type: type).map { if case let .ping(ping) = $0 { .ping(ping) } else { .application } }
        case MessageType.pong:
            return decodeControl(message, type: type).map { if case let .pong(pong) = $0 { .pong(pong) } else { .application } }
        case MessageType.`init`:
            return .success(.`init`)
        default:
            // BOLT-1: an even type nobody here understands ends the link ("it's OK to be odd").
            if type & 1 == 0, !policy.acceptedEvenMessageTypes.contains(type) {
                return .failure(.unknownEvenMessage(type: type))
            }
            return .success(.application)
        }
    }

    private static func decodeControl(_ message: [UInt8], type: UInt16) -> Result<Message, LinkFailure> {
        do {
            return .success(try Message.decode(message))
        } catch {
            return .failure(.malformedMessage(type: type, reason: error.description))
        }
    }
}

/// Counts the peer's pings in a sliding window; a peer over the limit is flooding us.
/// Holds at most `limit` instants, so the memory it costs is bounded too.
struct PingFloodLimiter: Sendable {
    let limit: Int
    let window: Duration
    /// Arrival times of the peer's recent pings, oldest first.
    private var recent: [ContinuousClock.Instant] = []

    init(limit: Int, window: Duration) {
        self.limit = limit
        self.window = window
    }

    /// Records a ping; false when it exceeds the limit.
    mutating func admit(now: ContinuousClock.Instant) -> Bool {
        let windowStart = now - window
        if let firstRecent = recent.firstIndex(where: { $0 > windowStart }) {
            recent.removeFirst(firstRecent)
        } else {
            recent.removeAll(keepingCapacity: true)
        }
        guard recent.count < limit else { return false }
        recent.append(now)
        return true
    }
}

/// When to redial a lost persistent peer: exponential backoff with "equal jitter"
/// (uniform in the upper half of the delay), so peers that lost us at the same moment do
/// not all come back at once.
public enum ReconnectBackoff {
    public static func delay(afterFailures failures: Int, initial: Duration, maximum: Duration) -> Duration {
        let ceiling = min(initial * (1 << min(failures, 30)), maximum)
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        guard nanoseconds > 1 else { return ceiling }
        return .nanoseconds(Int64.random(in: (nanoseconds / 2)...nanoseconds))
    }
}

/// The count behind a transport's bounded per-peer queue, kept under the transport's lock:
/// bytes taken and not yet written, and whether a refused sender is owed `.writable`.
public struct OutboundQueueGauge: Sendable {
    public let limit: Int
    public private(set) var bytes = 0
    /// A batch was refused; `.writable` is owed once the queue drains to half.
    public private(set) var refused = false

    public init(limit: Int) {
        self.limit = limit
    }

    /// Takes `bytes` unless the queue is at its limit or the link's own buffer is full
    /// (`linkWritable` false). An empty queue takes any batch, or one larger than the
    /// limit could never be sent; memory stays below the limit plus one batch.
    public mutating func reserve(_ bytes: Int, linkWritable: Bool) -> Bool {
        guard self.bytes == 0 || self.bytes + bytes <= limit, linkWritable else {
            refused = true
            return false
        }
        self.bytes += bytes
        return true
    }

    /// Returns true when a refused sender should now hear `.writable`.
    public mutating func release(_ bytes: Int) -> Bool {
        self.bytes -= bytes
        return clearRefusalIfDrained()
    }

    /// The link's buffer drained; true when `.writable` is owed because ours is low too.
    public mutating func clearRefusalIfDrained() -> Bool {
        guard refused, bytes < limit / 2 else { return false }
        refused = false
        return true
    }
}
