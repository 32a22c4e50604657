import LNPCrypto
import LNPSession
import LNPWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Two PeerSessions wired back to back in memory.
struct SessionPair {
    var initiator: PeerSession
    var responder: PeerSession
    var initiatorEvents: [PeerSession.Event] = []
    var responderEvents: [PeerSession.Event] = []

    static func initMessage(largeFrames: Bool) -> InitMessage {
        var features = FeatureVector(features: [.varOnionOptin, .paymentSecret])
        if largeFrames { features.set(Feature.lnpLargeFrames.oddBit) }
        return InitMessage(features: features)
    }

    init(initiatorLarge: Bool = false, responderLarge: Bool = false, maximumMessageLength: Int = FrameFormat.large.maximumMessageLength) {
        let initiatorKey = PrivateKey.generate()
        let responderKey = PrivateKey.generate()
        initiator = PeerSession(role: .initiator(remoteStatic: responderKey.publicKey), localStatic: initiatorKey,
                                localInit: Self.initMessage(largeFrames: initiatorLarge), maximumMessageLength: maximumMessageLength)
        responder = PeerSession(role: .responder, localStatic: responderKey,
                                localInit: Self.initMessage(largeFrames: responderLarge), maximumMessageLength: maximumMessageLength)
    }

    /// Runs the handshake and init exchange, delivering every write in `chunk`-sized pieces.
    mutating func connect(chunk: Int = .max) throws {
        var toResponder = try initiator.start()
        var toInitiator: [UInt8] = []
        while !toResponder.isEmpty || !toInitiator.isEmpty {
            if !toResponder.isEmpty {
                let bytes = toResponder
                toResponder = []
                for piece in bytes.chunked(chunk) {
                    for event in try responder.receive(piece) {
                        if case let .write(out) = event { toInitiator += out } else { responderEvents.append(event) }
                    }
                }
            }
            if !toInitiator.isEmpty {
                let bytes = toInitiator
                toInitiator = []
                for piece in bytes.chunked(chunk) {
                    for event in try initiator.receive(piece) {
                        if case let .write(out) = event { toResponder += out } else { initiatorEvents.append(event) }
                    }
                }
            }
        }
    }
}

extension Array where Element == UInt8 {
    func chunked(_ size: Int) -> [[UInt8]] {
        guard size < count else { return [self] }
        return stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}

/// A deterministic generator, so a failing run can be reproduced from its printed seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct PeerSessionTests {
    @Test func handshakeAndInitExchange() throws {
        var pair = SessionPair()
        try pair.connect()
        #expect(pair.initiator.isEstablished && pair.responder.isEstablished)
        #expect(pair.responder.remoteStatic == pair.initiator.remoteStatic.flatMap { _ in pair.responder.remoteStatic })
        guard case .established = pair.initiatorEvents.first, case let .remoteInit(remote) = pair.initiatorEvents.last else {
            Issue.record("initiator events: \(pair.initiatorEvents)")
            return
        }
        #expect(remote == SessionPair.initMessage(largeFrames: false))
        #expect(pair.responderEvents.count == 2)
        #expect(!pair.initiator.largeFramesActive && !pair.responder.largeFramesActive)
    }

    @Test func responderLearnsInitiatorKey() throws {
        let initiatorKey = PrivateKey.generate(), responderKey = PrivateKey.generate()
        var pair = SessionPair()
        pair.initiator = PeerSession(role: .initiator(remoteStatic: responderKey.publicKey), localStatic: initiatorKey, localInit: SessionPair.initMessage(largeFrames: false))
        pair.responder = PeerSession(role: .responder, localStatic: responderKey, localInit: SessionPair.initMessage(largeFrames: false))
        try pair.connect()
        #expect(pair.responder.remoteStatic == initiatorKey.publicKey)
        #expect(pair.initiator.remoteStatic == responderKey.publicKey)
    }

    @Test func handshakeOneByteAtATime() throws {
        var pair = SessionPair(initiatorLarge: true, responderLarge: true)
        try pair.connect(chunk: 1)
        #expect(pair.initiator.largeFramesActive && pair.responder.largeFramesActive)
        let message: [UInt8] = [0x80, 0x01] + Array("one byte at a time".utf8)
        var received: [[UInt8]] = []
        for byte in try pair.initiator.encrypt(message) {
            for case let .message(m) in try pair.responder.receive([byte]) { received.append(m) }
        }
        #expect(received == [message])
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func largeFramesOnlyWhenBothAdvertise(initiatorLarge: Bool, responderLarge: Bool) throws {
        var pair = SessionPair(initiatorLarge: initiatorLarge, responderLarge: responderLarge)
        try pair.connect()
        let both = initiatorLarge && responderLarge
        #expect(pair.initiator.largeFramesActive == both)
        #expect(pair.responder.largeFramesActive == both)
        let big = [0x80, 0x01] + [UInt8](repeating: 7, count: 100_000)
        if both {
            let frame = try pair.initiator.encrypt(big)
            #expect(frame.count == big.count + 3 + 32)
            #expect(try pair.responder.receive(frame) == [.message(big)])
        } else {
            #expect(throws: SessionError.messageTooLarge(length: big.count, limit: 65_535)) { try pair.initiator.encrypt(big) }
            // Still a normal Lightning session: a 65,535-byte message fits.
            let max = [0x80, 0x01] + [UInt8](repeating: 1, count: 65_533)
            #expect(try pair.responder.receive(pair.initiator.encrypt(max)) == [.message(max)])
        }
    }

    @Test func nothingMayBeSentBeforeTheHandshakeOrTheRemoteInit() throws {
        var pair = SessionPair()
        #expect(throws: SessionError.self) { try pair.initiator.encrypt([0, 18]) }
        let actOne = try pair.initiator.start()
        let events = try pair.responder.receive(actOne)
        guard case let .write(actTwo) = events.first else { Issue.record("no act two"); return }
        let afterActTwo = try pair.initiator.receive(actTwo)
        #expect(pair.initiator.isEstablished)
        // Established, but the responder's init has not arrived yet.
        #expect(throws: SessionError.self) { try pair.initiator.encrypt([0x80, 0x01]) }
        #expect(afterActTwo.count == 3) // act three, established, our init
    }

    @Test func firstMessageMustBeInit() throws {
        let responderKey = PrivateKey.generate()
        var responder = PeerSession(role: .responder, localStatic: responderKey, localInit: SessionPair.initMessage(largeFrames: false))
        // A raw handshake whose initiator sends a ping instead of init.
        var initiator = HandshakeInitiator(localStatic: PrivateKey.generate(), remoteStatic: responderKey.publicKey)
        let events = try responder.receive(try initiator.makeActOne())
        guard case let .write(actTwo) = events.first else { Issue.record("no act two"); return }
        let (actThree, keys) = try initiator.receiveActTwo(actTwo)
        var encoder = FrameEncoder(cipher: keys.sendingCipher)
        let ping = try encoder.encrypt(Message.ping(Ping(numPongBytes: 4, ignored: [])).encode())
        #expect(throws: SessionError.firstMessageNotInit(type: 18)) { try responder.receive(actThree + ping) }
        // A failed session stays failed.
        #expect(throws: SessionError.self) { try responder.receive([0]) }
    }

    @Test func tamperedFrameFailsTheSession() throws {
        var pair = SessionPair()
        try pair.connect()
        var frame = try pair.initiator.encrypt([0x80, 0x01, 1, 2, 3])
        frame[frame.count - 1] ^= 1
        #expect(throws: SessionError.badBodyTag(messageIndex: 1)) { try pair.responder.receive(frame) }
        var pair2 = SessionPair()
        try pair2.connect()
        var frame2 = try pair2.initiator.encrypt([0x80, 0x01])
        frame2[0] ^= 1
        #expect(throws: SessionError.badLengthTag(messageIndex: 1)) { try pair2.responder.receive(frame2) }
    }

    @Test func frameAboveTheLocalLimitIsRefusedBeforeItsBodyArrives() throws {
        var pair = SessionPair(initiatorLarge: true, responderLarge: true, maximumMessageLength: 1_000)
        try pair.connect()
        let frame = try pair.initiator.encrypt([UInt8](repeating: 0, count: 5_000))
        // The header alone is enough to refuse it.
        #expect(throws: SessionError.messageTooLarge(length: 5_000, limit: 1_000)) { try pair.responder.receive(Array(frame.prefix(19))) }
    }

    @Test func garbageInsteadOfActOneIsRejected() throws {
        var responder = PeerSession(role: .responder, localStatic: PrivateKey.generate(), localInit: SessionPair.initMessage(largeFrames: false))
        #expect(responder.handshakeBytesPending == 50)
        #expect(try responder.receive([0, 1, 2]).isEmpty)
        #expect(responder.handshakeBytesPending == 47)
        #expect(throws: SessionError.handshake(.badPublicKey(act: .one))) { try responder.receive([UInt8](repeating: 0, count: 47)) }
        var other = PeerSession(role: .responder, localStatic: PrivateKey.generate(), localInit: SessionPair.initMessage(largeFrames: false))
        #expect(throws: SessionError.handshake(.badVersion(act: .one, version: 0x47))) { try other.receive(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n01234567890123456789012".utf8)) }
    }

    /// The issue's soak: a million frames of random sizes, both formats, random chunking.
    @Test(arguments: [false, true])
    func millionRandomFramesInBothDirections(large: Bool) throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("millionRandomFrames large=\(large) seed=\(seed)")
        var rng = SplitMix64(state: seed)
        var pair = SessionPair(initiatorLarge: large, responderLarge: large)
        try pair.connect()
        #expect(pair.initiator.largeFramesActive == large)
        let pool = SecureRandom.bytes(1 << 20)
        let framesPerDirection = 250_000
        for direction in 0..<2 {
            var sent: [(offset: Int, length: Int)] = []
            var stream: [UInt8] = []
            var receivedCount = 0
            var mismatches = 0
            func deliver(_ bytes: [UInt8], into pair: inout SessionPair) throws {
                var index = 0
                while index < bytes.count {
                    // Mostly socket-sized reads, sometimes single bytes.
                    let size = rng.next() % 16 == 0 ? Int(rng.next() % 3) + 1 : Int(rng.next() % 70_000) + 1
                    let piece = Array(bytes[index..<min(index + size, bytes.count)])
                    index += piece.count
                    let events = direction == 0 ? try pair.responder.receive(piece) : try pair.initiator.receive(piece)
                    for case let .message(m) in events {
                        let expected = sent[receivedCount]
                        let same = m.count == expected.length && m.withUnsafeBytes { got in
                            pool.withUnsafeBytes { all in
                                expected.length == 0 || memcmp(got.baseAddress!, all.baseAddress! + expected.offset, expected.length) == 0
                            }
                        }
                        if !same { mismatches += 1 }
                        receivedCount += 1
                    }
                }
            }
            for i in 0..<framesPerDirection {
                let roll = rng.next() % 1000
                let maxLength = large ? 1_000_000 : 65_535
                let length = roll < 980 ? Int(rng.next() % 300) : roll < 999 ? Int(rng.next() % 65_536) : Int(rng.next() % UInt64(maxLength + 1))
                let clamped = min(length, maxLength)
                let offset = Int(rng.next() % UInt64(pool.count - clamped + 1))
                sent.append((offset, clamped))
                let message = Array(pool[offset..<offset + clamped])
                if direction == 0 { try pair.initiator.encrypt(message, appendingTo: &stream) } else { try pair.responder.encrypt(message, appendingTo: &stream) }
                if stream.count > 4_000_000 || i == framesPerDirection - 1 {
                    try deliver(stream, into: &pair)
                    stream.removeAll(keepingCapacity: true)
                }
            }
            #expect(receivedCount == framesPerDirection, "seed \(seed)")
            #expect(mismatches == 0, "seed \(seed)")
        }
    }
}
