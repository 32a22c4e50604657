import LNPCrypto

/// Many datagram sessions behind one socket, told apart by the sender's address (UDP
/// source address and port), as a sans-IO core like `DatagramSession`.
///
/// Unknown senders get no state until their act one verifies, and then only a half-open
/// responder session, of which there are at most `maximumHalfOpen`: a flood of act ones
/// (cheap to make, since anyone may know our node key) evicts the oldest half-open
/// handshakes instead of growing memory, and each answer is no larger than its act one.
/// The cost that remains is CPU, two ECDH per verified act one; a cookie round trip under
/// load (as WireGuard does) would be the next step.
public struct DatagramEndpoint<Address: Hashable & Sendable>: Sendable {
    public enum Action: Equatable, Sendable {
        case send([UInt8], to: Address)
        case established(Address, remoteStatic: PublicKey, epoch: Int)
        case deliver([UInt8], from: Address)
        case restarting(Address, DatagramSessionFailure)
        /// The session with this address is gone; its entry is already removed.
        case closed(Address, DatagramSessionFailure)
    }

    private struct Entry: Sendable {
        var session: DatagramSession
        let createdAt: ContinuousClock.Instant
    }

    public let policy: DatagramPolicy
    public let maximumSessions: Int
    public let maximumHalfOpen: Int
    private let localStatic: any StaticKeyAgreement
    private var entries: [Address: Entry] = [:]
    /// Act ones refused or evicted because of the limits.
    public private(set) var handshakesRefused = 0
    /// Datagrams from addresses without a session that were not a verifiable act one.
    public private(set) var strayDatagrams = 0

    public init(localStatic: any StaticKeyAgreement, policy: DatagramPolicy = .udp, maximumSessions: Int = 1024,
                maximumHalfOpen: Int = 128) throws(DatagramSessionError) {
        try policy.validate()
        guard maximumSessions >= 1, maximumHalfOpen >= 1 else {
            throw .invalidPolicy("an endpoint needs room for at least one session and one half-open handshake")
        }
        self.localStatic = localStatic
        self.policy = policy
        self.maximumSessions = maximumSessions
        self.maximumHalfOpen = maximumHalfOpen
    }

    public var sessionCount: Int { entries.count }
    /// Responder handshakes waiting for act three.
    public var halfOpenCount: Int { entries.values.filter { $0.session.stage == .awaitingActThree }.count }

    public func session(for address: Address) -> DatagramSession? { entries[address]?.session }

    /// Dials `remoteStatic` at `address`, replacing any session with that address.
    public mutating func connect(to address: Address, remoteStatic: PublicKey, now: ContinuousClock.Instant) throws(DatagramSessionError) -> [Action] {
        var session = try DatagramSession(role: .initiator(remoteStatic: remoteStatic), localStatic: localStatic, policy: policy)
        let actions = session.start(now: now)
        entries[address] = Entry(session: session, createdAt: now)
        return translate(actions, address: address)
    }

    public mutating func send(_ message: [UInt8], to address: Address, now: ContinuousClock.Instant) throws(DatagramSessionError) -> [[UInt8]] {
        guard var entry = entries.removeValue(forKey: address) else { throw .notEstablished(stage: .notStarted) }
        defer { entries[address] = entry }
        return try entry.session.send(message, now: now)
    }

    public mutating func receive(_ datagram: [UInt8], from address: Address, now: ContinuousClock.Instant) -> [Action] {
        if var entry = entries.removeValue(forKey: address) {
            let actions = entry.session.receive(datagram, now: now)
            entries[address] = entry
            return translate(actions, address: address)
        }
        guard datagram.first == DatagramFormat.Kind.actOne.rawValue else {
            strayDatagrams += 1
            return []
        }
        guard entries.count < maximumSessions else {
            handshakesRefused += 1
            return []
        }
        guard var session = try? DatagramSession(role: .responder, localStatic: localStatic, policy: policy) else { return [] }
        let actions = session.receive(datagram, now: now)
        // Only a verified act one is answered, and only then is anything kept.
        guard session.stage == .awaitingActThree else {
            strayDatagrams += 1
            return []
        }
        if halfOpenCount >= maximumHalfOpen { evictOldestHalfOpen() }
        entries[address] = Entry(session: session, createdAt: now)
        return translate(actions, address: address)
    }

    public var nextDeadline: ContinuousClock.Instant? {
        entries.values.compactMap(\.session.nextDeadline).min()
    }

    public mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        var actions: [Action] = []
        let due = entries.filter { entry in entry.value.session.nextDeadline.map { $0 <= now } ?? false }.map(\.key)
        for address in due {
            guard var entry = entries.removeValue(forKey: address) else { continue }
            let sessionActions = entry.session.timerFired(now: now)
            entries[address] = entry
            actions += translate(sessionActions, address: address)
        }
        return actions
    }

    public mutating func close(_ address: Address) -> [Action] {
        guard var entry = entries.removeValue(forKey: address) else { return [] }
        return translate(entry.session.close(), address: address)
    }

    private mutating func evictOldestHalfOpen() {
        let halfOpen = entries.filter { $0.value.session.stage == .awaitingActThree }
        guard let oldest = halfOpen.min(by: { $0.value.createdAt < $1.value.createdAt }) else { return }
        entries[oldest.key] = nil
        handshakesRefused += 1
    }

    private mutating func translate(_ actions: [DatagramSession.Action], address: Address) -> [Action] {
        actions.map { action in
            switch action {
            case let .send(datagram): return .send(datagram, to: address)
            case let .established(remoteStatic, epoch): return .established(address, remoteStatic: remoteStatic, epoch: epoch)
            case let .deliver(message): return .deliver(message, from: address)
            case let .restarting(failure): return .restarting(address, failure)
            case let .closed(failure):
                entries[address] = nil
                return .closed(address, failure)
            }
        }
    }
}
