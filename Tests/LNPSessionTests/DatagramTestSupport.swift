import LNPCrypto
import LNPSession

/// Time for sans-IO cores under test: a fixed origin plus however far the test has moved it.
struct DatagramTestClock {
    let origin = ContinuousClock.now
    private(set) var elapsed: Duration = .zero
    var now: ContinuousClock.Instant { origin + elapsed }
    mutating func advance(by step: Duration) { elapsed += step }
}

enum LinkSide: Hashable, CustomStringConvertible {
    case initiator, responder
    var other: LinkSide { self == .initiator ? .responder : .initiator }
    var description: String { self == .initiator ? "initiator" : "responder" }
}

/// The fault injection a real network cannot be made to produce on demand: a seeded
/// channel that loses, duplicates, delays and so reorders datagrams, and an attacker that
/// replays what it saw and sends altered copies. Everything is decided by the seed.
struct FaultyChannel {
    struct Faults {
        var loss = 0.0
        var duplication = 0.0
        var latency: Duration = .milliseconds(5)
        /// Extra random delay per datagram, which reorders them.
        var jitter: Duration = .milliseconds(20)
        /// Chance per datagram that the attacker also sends a copy with one bit flipped.
        var tampering = 0.0
        /// Chance per datagram that the attacker sends again a datagram it saw earlier.
        var replay = 0.0
    }

    private struct InFlight {
        let deliverAt: Duration
        let sequence: Int
        let side: LinkSide
        let datagram: [UInt8]
    }

    var faults: Faults
    var random: SplitMix64
    private var inFlight: [InFlight] = []
    private var sequence = 0
    private var seen: [(LinkSide, [UInt8])] = []
    private(set) var lost = 0
    private(set) var duplicated = 0
    private(set) var tampered = 0
    private(set) var replayed = 0

    init(faults: Faults, seed: UInt64) {
        self.faults = faults
        random = SplitMix64(state: seed)
    }

    var isIdle: Bool { inFlight.isEmpty }

    mutating func transmit(_ datagram: [UInt8], to side: LinkSide, at now: Duration) {
        if seen.count < 4096 { seen.append((side, datagram)) } else { seen[Int.random(in: 0..<seen.count, using: &random)] = (side, datagram) }
        if Double.random(in: 0..<1, using: &random) < faults.tampering, !datagram.isEmpty {
            var altered = datagram
            let bit = Int.random(in: 0..<(altered.count * 8), using: &random)
            altered[bit / 8] ^= 1 << (bit % 8)
            enqueue(altered, to: side, at: now)
            tampered += 1
        }
        if Double.random(in: 0..<1, using: &random) < faults.replay, let old = seen.randomElement(using: &random) {
            enqueue(old.1, to: old.0, at: now)
            replayed += 1
        }
        if Double.random(in: 0..<1, using: &random) < faults.loss {
            lost += 1
            return
        }
        enqueue(datagram, to: side, at: now)
        if Double.random(in: 0..<1, using: &random) < faults.duplication {
            enqueue(datagram, to: side, at: now)
            duplicated += 1
        }
    }

    /// Everything due by `now`, in delivery order.
    mutating func due(at now: Duration) -> [(LinkSide, [UInt8])] {
        let ready = inFlight.filter { $0.deliverAt <= now }.sorted { ($0.deliverAt, $0.sequence) < ($1.deliverAt, $1.sequence) }
        inFlight.removeAll { $0.deliverAt <= now }
        return ready.map { ($0.side, $0.datagram) }
    }

    private mutating func enqueue(_ datagram: [UInt8], to side: LinkSide, at now: Duration) {
        let delay = faults.latency + faults.jitter * Double.random(in: 0..<1, using: &random)
        inFlight.append(InFlight(deliverAt: now + delay, sequence: sequence, side: side, datagram: datagram))
        sequence += 1
    }
}

/// Two real `DatagramSession`s (real secp256k1 handshake, real ChaCha20-Poly1305) joined
/// by a `FaultyChannel`, driven by a manual clock in fixed steps.
struct DatagramHarness {
    var clock = DatagramTestClock()
    var channel: FaultyChannel
    var initiator: DatagramSession
    var responder: DatagramSession
    let initiatorKey: PrivateKey
    let responderKey: PrivateKey
    let policy: DatagramPolicy
    /// Everything but `.send`, per side, in order.
    var events: [LinkSide: [DatagramSession.Action]] = [.initiator: [], .responder: []]
    var delivered: [LinkSide: [[UInt8]]] = [.initiator: [], .responder: []]

    init(policy: DatagramPolicy = .udp, faults: FaultyChannel.Faults = .init(), seed: UInt64) throws {
        self.policy = policy
        initiatorKey = PrivateKey.generate()
        responderKey = PrivateKey.generate()
        channel = FaultyChannel(faults: faults, seed: seed)
        initiator = try DatagramSession(role: .initiator(remoteStatic: responderKey.publicKey), localStatic: initiatorKey, policy: policy)
        responder = try DatagramSession(role: .responder, localStatic: responderKey, policy: policy)
    }

    subscript(side: LinkSide) -> DatagramSession {
        get { side == .initiator ? initiator : responder }
        set { if side == .initiator { initiator = newValue } else { responder = newValue } }
    }

    mutating func start() {
        let actions = initiator.start(now: clock.now)
        dispatch(actions, from: .initiator)
    }

    /// A side restarts: its session is replaced by a fresh one with the same node key.
    mutating func restart(_ side: LinkSide) throws {
        switch side {
        case .initiator:
            initiator = try DatagramSession(role: .initiator(remoteStatic: responderKey.publicKey), localStatic: initiatorKey, policy: policy)
            start()
        case .responder:
            responder = try DatagramSession(role: .responder, localStatic: responderKey, policy: policy)
        }
    }

    /// Sends a message if the session can take it now; false if it must wait.
    mutating func send(_ message: [UInt8], from side: LinkSide) throws -> Bool {
        let datagrams: [[UInt8]]
        do {
            datagrams = try self[side].send(message, now: clock.now)
        } catch DatagramSessionError.awaitingConfirmation, DatagramSessionError.notEstablished {
            return false
        }
        for datagram in datagrams { channel.transmit(datagram, to: side.other, at: clock.elapsed) }
        return true
    }

    mutating func dispatch(_ actions: [DatagramSession.Action], from side: LinkSide) {
        for action in actions {
            switch action {
            case let .send(datagram):
                channel.transmit(datagram, to: side.other, at: clock.elapsed)
            case let .deliver(message):
                delivered[side, default: []].append(message)
                events[side, default: []].append(action)
            default:
                events[side, default: []].append(action)
            }
        }
    }

    /// Moves time forward one step: delivers what is due, then fires due timers.
    mutating func step(_ duration: Duration = .milliseconds(1)) {
        clock.advance(by: duration)
        for (side, datagram) in channel.due(at: clock.elapsed) {
            let actions = self[side].receive(datagram, now: clock.now)
            dispatch(actions, from: side)
        }
        for side in [LinkSide.initiator, .responder] {
            if let deadline = self[side].nextDeadline, deadline <= clock.now {
                let actions = self[side].timerFired(now: clock.now)
                dispatch(actions, from: side)
            }
        }
    }

    mutating func run(for duration: Duration, step size: Duration = .milliseconds(1)) {
        let end = clock.elapsed + duration
        while clock.elapsed < end { step(size) }
    }

    /// Runs until `condition` holds or `limit` has passed; returns whether it holds.
    mutating func run(upTo limit: Duration, until condition: (DatagramHarness) -> Bool) -> Bool {
        let end = clock.elapsed + limit
        while !condition(self), clock.elapsed < end { step() }
        return condition(self)
    }

    func establishedCount(_ side: LinkSide) -> Int {
        events[side, default: []].filter { if case .established = $0 { true } else { false } }.count
    }
}

/// Messages that check themselves: a 4-byte index, then bytes that follow from the index
/// alone, so a receiver can tell an intact message from any other byte string.
enum NumberedMessage {
    static func make(_ index: UInt32, length: Int) -> [UInt8] {
        precondition(length >= 8)
        var generator = SplitMix64(state: UInt64(index) &* 0x2545_F491_4F6C_DD1D)
        var bytes = [UInt8(index >> 24), UInt8(index >> 16 & 0xff), UInt8(index >> 8 & 0xff), UInt8(index & 0xff)]
        let lengthField = UInt32(length)
        bytes += [UInt8(lengthField >> 24), UInt8(lengthField >> 16 & 0xff), UInt8(lengthField >> 8 & 0xff), UInt8(lengthField & 0xff)]
        while bytes.count < length { bytes.append(UInt8.random(in: 0...255, using: &generator)) }
        return bytes
    }

    /// The index of an intact message, or nil for anything else.
    static func verify(_ message: [UInt8]) -> UInt32? {
        guard message.count >= 8 else { return nil }
        let index = UInt32(message[0]) << 24 | UInt32(message[1]) << 16 | UInt32(message[2]) << 8 | UInt32(message[3])
        let length = Int(UInt32(message[4]) << 24 | UInt32(message[5]) << 16 | UInt32(message[6]) << 8 | UInt32(message[7]))
        guard length == message.count, make(index, length: length) == message else { return nil }
        return index
    }
}
