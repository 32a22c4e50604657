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

    /// BOLT-1: an even type nobody here understands ends the link ("it's OK to be odd").
    static func isUnknownEven(_ type: UInt16, policy: LinkPolicy) -> Bool {
        type & 1 == 0 && !policy.acceptedEvenMessageTypes.contains(type)
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
