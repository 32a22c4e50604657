import LNPCrypto

/// The peers a session transport keeps redialling, with their backoff, as the transport's
/// locked state holds them. The transport owns the timers; the book keeps how to cancel
/// each, so a dial, a disconnect or a session that comes back stops the pending redial.
public struct PersistentPeerBook: Sendable {
    public struct Entry: Sendable {
        public var address: PeerAddress
        public var failedAttempts = 0
        /// Cancels the scheduled redial; nil when none is scheduled.
        var cancelRedial: (@Sendable () -> Void)?
    }

    /// Redial delays: doubling per failed attempt from `initial` up to `maximum`, jittered.
    public let backoff: (initial: Duration, maximum: Duration)
    private var entries: [PublicKey: Entry] = [:]

    public init(backoff: (initial: Duration, maximum: Duration)) {
        self.backoff = backoff
    }

    public func contains(_ nodeID: PublicKey) -> Bool { entries[nodeID] != nil }
    public var addresses: [PeerAddress] { entries.values.map(\.address) }

    /// Keeps `address` (the latest dialled) for its node; a redial scheduled for it is
    /// cancelled, since the caller dials now and its failure schedules the next.
    public mutating func register(_ address: PeerAddress) {
        var entry = entries[address.nodeID] ?? Entry(address: address)
        entry.address = address
        entry.cancelRedial?()
        entry.cancelRedial = nil
        entries[address.nodeID] = entry
    }

    /// No more redials of `nodeID`.
    public mutating func forget(_ nodeID: PublicKey) {
        entries.removeValue(forKey: nodeID)?.cancelRedial?()
    }

    public mutating func forgetAll() {
        for entry in entries.values { entry.cancelRedial?() }
        entries.removeAll()
    }

    /// A session with `nodeID` is ready: no redial pending, backoff back to its start.
    public mutating func connected(_ nodeID: PublicKey) {
        guard var entry = entries[nodeID] else { return }
        entry.cancelRedial?()
        entry.cancelRedial = nil
        entry.failedAttempts = 0
        entries[nodeID] = entry
    }

    /// Counts a failed dial; false when `nodeID` is not persistent.
    public mutating func recordFailure(_ nodeID: PublicKey) -> Bool {
        guard entries[nodeID] != nil else { return false }
        entries[nodeID]?.failedAttempts += 1
        return true
    }

    /// Schedules the next redial of a persistent peer: `schedule` arms a timer for the
    /// delay and returns how to cancel it. False (nothing scheduled) when `nodeID` is not
    /// persistent or a redial is already pending.
    public mutating func scheduleRedial(of nodeID: PublicKey,
                                        _ schedule: (Duration) -> @Sendable () -> Void) -> Bool {
        guard var entry = entries[nodeID], entry.cancelRedial == nil else { return false }
        let delay = ReconnectBackoff.delay(afterFailures: entry.failedAttempts, initial: backoff.initial, maximum: backoff.maximum)
        entry.cancelRedial = schedule(delay)
        entries[nodeID] = entry
        return true
    }

    /// The redial timer of `nodeID` fired: its address, or nil when it is no longer persistent.
    public mutating func takeRedial(of nodeID: PublicKey) -> PeerAddress? {
        guard var entry = entries[nodeID] else { return nil }
        entry.cancelRedial = nil
        entries[nodeID] = entry
        return entry.address
    }

    /// Cancels the pending redials of the peers `filter` picks and resets their backoff;
    /// returns them, for the caller to dial now.
    public mutating func resetRedials(where filter: (PublicKey, PeerAddress) -> Bool) -> [PublicKey] {
        var due: [PublicKey] = []
        for (nodeID, var entry) in entries where filter(nodeID, entry.address) {
            entry.cancelRedial?()
            entry.cancelRedial = nil
            entry.failedAttempts = 0
            entries[nodeID] = entry
            due.append(nodeID)
        }
        return due
    }
}
