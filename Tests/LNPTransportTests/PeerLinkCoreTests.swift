import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import Testing

/// Two cores wired back to back in memory, with a clock the test moves by hand.
struct CorePair {
    var initiator: PeerLinkCore
    var responder: PeerLinkCore
    /// Everything but writes, per side, in order.
    var initiatorActions: [PeerLinkCore.Action] = []
    var responderActions: [PeerLinkCore.Action] = []
    let initiatorKey = PrivateKey.generate()
    let responderKey = PrivateKey.generate()
    var now = ContinuousClock.now
    /// Bytes written by each side and not yet delivered.
    var towardResponder: [UInt8] = []
    var towardInitiator: [UInt8] = []

    static let basicFeatures = FeatureVector(features: [.varOnionOptin, .paymentSecret])

    init(initiatorInit: InitMessage = InitMessage(features: basicFeatures),
         responderInit: InitMessage = InitMessage(features: basicFeatures),
         initiatorPolicy: LinkPolicy = LinkPolicy(), responderPolicy: LinkPolicy = LinkPolicy()) {
        initiator = PeerLinkCore(role: .initiator(remoteStatic: responderKey.publicKey), localKey: initiatorKey,
                                 localInit: initiatorInit, policy: initiatorPolicy, now: now)
        responder = PeerLinkCore(role: .responder, localKey: responderKey, localInit: responderInit,
                                 policy: responderPolicy, now: now)
    }

    mutating func collect(_ actions: [PeerLinkCore.Action], fromInitiator: Bool) {
        for action in actions {
            if case let .write(bytes) = action {
                if fromInitiator { towardResponder += bytes } else { towardInitiator += bytes }
            } else if fromInitiator {
                initiatorActions.append(action)
            } else {
                responderActions.append(action)
            }
        }
    }

    /// Delivers writes both ways until neither side has anything to say.
    mutating func pump() {
        while !towardResponder.isEmpty || !towardInitiator.isEmpty {
            if !towardResponder.isEmpty {
                let bytes = towardResponder
                towardResponder = []
                collect(responder.receive(bytes, now: now), fromInitiator: false)
            }
            if !towardInitiator.isEmpty {
                let bytes = towardInitiator
                towardInitiator = []
                collect(initiator.receive(bytes, now: now), fromInitiator: true)
            }
        }
    }

    mutating func connect() {
        collect(initiator.start(), fromInitiator: true)
        collect(responder.start(), fromInitiator: false)
        pump()
    }

    mutating func sendFromInitiator(_ messages: [[UInt8]]) throws {
        var frames: [UInt8] = []
        try initiator.encrypt(messages, appendingTo: &frames)
        towardResponder += frames
        pump()
    }

    mutating func advance(by duration: Duration) {
        now += duration
        collect(initiator.timerFired(now: now), fromInitiator: true)
        collect(responder.timerFired(now: now), fromInitiator: false)
    }
}

func delivered(_ actions: [PeerLinkCore.Action]) -> [[UInt8]] {
    actions.compactMap { if case let .deliver(bytes) = $0 { bytes } else { nil } }
}

func closeReason(_ actions: [PeerLinkCore.Action]) -> LinkFailure? {
    for case let .close(reason) in actions { return reason }
    return nil
}

func message(type: UInt16, payload: [UInt8] = [1, 2, 3]) -> [UInt8] {
    [UInt8(type >> 8), UInt8(type & 0xff)] + payload
}

@Suite struct PeerLinkCoreTests {
    @Test func handshakeAndInitExchange() {
        var pair = CorePair()
        pair.connect()
        #expect(pair.initiator.stage == .ready && pair.responder.stage == .ready)
        guard case let .ready(remote)? = pair.responderActions.first else {
            Issue.record("the responder must report ready: \(pair.responderActions)")
            return
        }
        #expect(remote.nodeID == pair.initiatorKey.publicKey)
        #expect(remote.initMessage.features == CorePair.basicFeatures)
        #expect(!remote.largeFrames)
        #expect(pair.initiator.nextDeadline == pair.now + .seconds(30))
    }

    @Test func largeFramesWhenBothOfferThem() throws {
        var features = CorePair.basicFeatures
        features.set(Feature.lnpLargeFrames.oddBit)
        var pair = CorePair(initiatorInit: InitMessage(features: features), responderInit: InitMessage(features: features))
        pair.connect()
        #expect(pair.initiator.frameFormat == .large && pair.responder.frameFormat == .large)
        let big = message(type: 32769, payload: [UInt8](repeating: 9, count: 100_000))
        try pair.sendFromInitiator([big])
        #expect(delivered(pair.responderActions) == [big])
    }

    @Test func applicationMessagesAreDeliveredInOrder() throws {
        var pair = CorePair(responderPolicy: LinkPolicy(acceptedEvenMessageTypes: [32]))
        pair.connect()
        let batch = [
            message(type: 32769), message(type: 33),
            Message.error(ErrorMessage(allChannels: "bad")).encode(),
            Message.warning(WarningMessage(allChannels: "careful")).encode(),
            message(type: 32, payload: []),
        ]
        try pair.sendFromInitiator(batch)
        #expect(delivered(pair.responderActions) == batch)
        #expect(pair.responder.stage == .ready)
    }

    @Test func unknownEvenTypeGetsWarningThenClose() throws {
        var pair = CorePair()
        pair.connect()
        try pair.sendFromInitiator([message(type: 100)])
        #expect(closeReason(pair.responderActions) == .unknownEvenMessage(type: 100))
        #expect(pair.responder.stage == .closed)
        // The warning reached the initiator, which hands it to its owner.
        let warnings = delivered(pair.initiatorActions).compactMap { bytes -> WarningMessage? in
            if case let .warning(warning)? = try? Message.decode(bytes) { warning } else { nil }
        }
        #expect(warnings.count == 1)
        #expect(warnings.first?.printableData.contains("unknown even message type 100") == true)
        #expect(warnings.first?.isForAllChannels == true)
    }

    @Test func ownerPingMeasuresRoundTrip() throws {
        var pair = CorePair()
        pair.connect()
        let (token, actions) = try pair.initiator.ping(pongBytes: 100, now: pair.now)
        pair.collect(actions, fromInitiator: true)
        pair.now += .milliseconds(40)
        pair.pump()
        #expect(pair.initiatorActions.contains(.pongReceived(token, roundTrip: .milliseconds(40))))
        #expect(throws: TransportError.invalidPongLength(65532)) { try pair.initiator.ping(pongBytes: 65532, now: pair.now) }
    }

    @Test func pingAskingForNoPongIsIgnored() throws {
        var pair = CorePair()
        pair.connect()
        var link = SessionAgainstCore()
        try link.connect()
        // Sent through a bare session: the core's own ping() refuses such sizes.
        try link.send(Message.ping(Ping(numPongBytes: 65532)).encode())
        try link.send(Message.ping(Ping(numPongBytes: 3)).encode())
        #expect(link.peerReceived == [Message.pong(Pong(ignored: [0, 0, 0])).encode()])
        #expect(link.core.stage == .ready)
    }

    @Test func keepaliveAndPongTimeout() throws {
        var pair = CorePair()
        pair.connect()
        pair.advance(by: .seconds(30))
        // Both sides were idle, so both pinged; delivering answers them.
        #expect(!pair.towardResponder.isEmpty && !pair.towardInitiator.isEmpty)
        pair.pump()
        #expect(pair.initiator.stage == .ready && pair.responder.stage == .ready)

        pair.advance(by: .seconds(30))
        // This time the initiator's ping is lost in transit.
        pair.towardResponder = []
        pair.towardInitiator = []
        pair.advance(by: .seconds(14))
        #expect(pair.initiator.stage == .ready)
        pair.advance(by: .seconds(1))
        #expect(closeReason(pair.initiatorActions) == .pongTimedOut(after: .seconds(15)))
    }

    @Test func pingFloodCloses() throws {
        var pair = CorePair(initiatorPolicy: LinkPolicy(maximumPendingPings: 100),
                            responderPolicy: LinkPolicy(maximumPingsPerWindow: 5, pingFloodWindow: .seconds(10)))
        pair.connect()
        for _ in 0..<5 {
            let (_, actions) = try pair.initiator.ping(pongBytes: 1, now: pair.now)
            pair.collect(actions, fromInitiator: true)
            pair.now += .seconds(1)
            pair.pump()
        }
        #expect(pair.responder.stage == .ready)
        // Outside the window the old pings no longer count.
        pair.now += .seconds(10)
        for _ in 0..<5 {
            let (_, actions) = try pair.initiator.ping(pongBytes: 1, now: pair.now)
            pair.collect(actions, fromInitiator: true)
        }
        pair.pump()
        #expect(pair.responder.stage == .ready)
        let (_, actions) = try pair.initiator.ping(pongBytes: 1, now: pair.now)
        pair.collect(actions, fromInitiator: true)
        pair.pump()
        #expect(closeReason(pair.responderActions) == .pingFlood(count: 5, window: .seconds(10)))
    }

    @Test func unknownRequiredFeatureFailsWithWarning() {
        var features = CorePair.basicFeatures
        features.set(42)
        var pair = CorePair(initiatorInit: InitMessage(features: features))
        pair.connect()
        guard case let .incompatibleInit(error)? = closeReason(pair.responderActions) else {
            Issue.record("expected an init failure, got \(pair.responderActions)")
            return
        }
        #expect(error.kind == .unknownRequiredFeature(42))
        #expect(!pair.responderActions.contains { if case .ready = $0 { true } else { false } })
        #expect(delivered(pair.initiatorActions).first.map { $0[0...1] == [0, 1] } == true)
    }

    @Test func knownFeatureBitsOverrideOurInit() {
        var features = CorePair.basicFeatures
        features.set(42)
        var pair = CorePair(initiatorInit: InitMessage(features: features),
                            responderPolicy: LinkPolicy(knownFeatureBits: Feature.bits(of: [.varOnionOptin, .paymentSecret]).union([42, 43])))
        pair.connect()
        #expect(pair.responder.stage == .ready)
    }

    @Test func noCommonNetworkFails() {
        let bitcoin = [UInt8](repeating: 1, count: 32)
        let testnet = [UInt8](repeating: 2, count: 32)
        var pair = CorePair(initiatorInit: InitMessage(features: CorePair.basicFeatures, networks: [testnet]),
                            responderInit: InitMessage(features: CorePair.basicFeatures, networks: [bitcoin]))
        pair.connect()
        #expect(closeReason(pair.responderActions) == .noCommonNetwork)
        var sharing = CorePair(initiatorInit: InitMessage(features: CorePair.basicFeatures, networks: [testnet, bitcoin]),
                               responderInit: InitMessage(features: CorePair.basicFeatures, networks: [bitcoin]))
        sharing.connect()
        #expect(sharing.responder.stage == .ready)
    }

    @Test func handshakeTimeout() {
        var pair = CorePair(responderPolicy: LinkPolicy(handshakeTimeout: .seconds(2)))
        pair.collect(pair.responder.start(), fromInitiator: false)
        pair.collect(pair.responder.receive([0, 1, 2], now: pair.now), fromInitiator: false)
        #expect(pair.responder.nextDeadline == pair.now + .seconds(2))
        pair.now += .seconds(1)
        pair.collect(pair.responder.timerFired(now: pair.now), fromInitiator: false)
        #expect(pair.responder.stage == .awaitingActOne)
        pair.now += .seconds(1)
        pair.collect(pair.responder.timerFired(now: pair.now), fromInitiator: false)
        #expect(closeReason(pair.responderActions) == .handshakeTimedOut(after: .seconds(2), stage: .awaitingActOne))
        #expect(pair.responder.nextDeadline == nil)
    }

    @Test func garbageInsteadOfActOneCloses() {
        var pair = CorePair()
        pair.collect(pair.responder.start(), fromInitiator: false)
        pair.collect(pair.responder.receive([UInt8](repeating: 0x41, count: 50), now: pair.now), fromInitiator: false)
        #expect(closeReason(pair.responderActions) == .session(.handshake(.badVersion(act: .one, version: 0x41))))
    }

    @Test func badMACCloses() throws {
        var pair = CorePair()
        pair.connect()
        var frame: [UInt8] = []
        try pair.initiator.encrypt([message(type: 32769)], appendingTo: &frame)
        frame[frame.count - 1] ^= 0x01
        pair.responderActions = []
        pair.collect(pair.responder.receive(frame, now: pair.now), fromInitiator: false)
        #expect(closeReason(pair.responderActions) == .session(.badBodyTag(messageIndex: 1)))
    }

    @Test func oversizedMessageCloses() throws {
        var pair = CorePair(responderPolicy: LinkPolicy(maximumMessageLength: 1000))
        pair.connect()
        try pair.sendFromInitiator([message(type: 32769, payload: [UInt8](repeating: 0, count: 2000))])
        #expect(closeReason(pair.responderActions) == .session(.messageTooLarge(length: 2002, limit: 1000)))
    }

    @Test func secondInitAndStrayPongClose() throws {
        var strayPong = SessionAgainstCore()
        try strayPong.connect()
        try strayPong.send(Message.pong(Pong(ignored: [0, 0])).encode())
        #expect(closeReason(strayPong.coreActions) == .unexpectedPong(length: 2))

        var secondInit = SessionAgainstCore()
        try secondInit.connect()
        try secondInit.send(Message.`init`(InitMessage(features: CorePair.basicFeatures)).encode())
        #expect(closeReason(secondInit.coreActions) == .duplicateInit)
        #expect(secondInit.peerReceived.count == 1 && secondInit.peerReceived[0][0...1] == [0, 1])

        var malformedPing = SessionAgainstCore()
        try malformedPing.connect()
        try malformedPing.send([0, 18, 0])
        guard case .malformedMessage(type: 18, _)? = closeReason(malformedPing.coreActions) else {
            Issue.record("a truncated ping must close the link: \(malformedPing.coreActions)")
            return
        }
    }

    @Test func congestedLinkDoesNotAnswerPings() throws {
        var pair = CorePair()
        pair.connect()
        pair.responder.outboundCongested = true
        let (_, actions) = try pair.initiator.ping(pongBytes: 10, now: pair.now)
        pair.collect(actions, fromInitiator: true)
        pair.pump()
        #expect(pair.towardInitiator.isEmpty)
        #expect(!pair.initiatorActions.contains { if case .pongReceived = $0 { true } else { false } })
    }

    @Test func peerCloseDuringActTwoBlamesTheKey() {
        var pair = CorePair()
        pair.collect(pair.initiator.start(), fromInitiator: true)
        let reason = pair.initiator.linkClosed()
        #expect(reason == .closedByPeer(stage: .awaitingActTwo))
        #expect(reason.description.contains("does not hold the private key"))
        #expect(pair.initiator.linkClosed() == reason)
    }

    @Test func outboundBatchRules() throws {
        #expect(try PeerLinkCore.framedLength(of: [message(type: 32769, payload: [])], format: .bolt) == 2 + 18 + 16)
        #expect(try PeerLinkCore.framedLength(of: [message(type: 1, payload: [0])], format: .large) == 3 + 19 + 16)
        #expect(throws: TransportError.messageTooShort(index: 1, length: 1)) {
            try PeerLinkCore.framedLength(of: [message(type: 33), [7]], format: .bolt)
        }
        #expect(throws: TransportError.reservedMessageType(index: 0, type: 18)) {
            try PeerLinkCore.framedLength(of: [message(type: 18)], format: .bolt)
        }
        #expect(throws: TransportError.messageTooLarge(index: 0, length: 65_536, limit: 65_535)) {
            try PeerLinkCore.framedLength(of: [message(type: 33, payload: [UInt8](repeating: 0, count: 65_534))], format: .bolt)
        }
        var pair = CorePair()
        var output: [UInt8] = []
        #expect(throws: TransportError.self) { try pair.initiator.encrypt([message(type: 33)], appendingTo: &output) }
    }
}

/// A bare `PeerSession` (playing a peer that breaks the rules the core's own API
/// enforces) against a responder core.
struct SessionAgainstCore {
    var peer: PeerSession
    var core: PeerLinkCore
    var coreActions: [PeerLinkCore.Action] = []
    /// Messages the peer's session decrypted.
    var peerReceived: [[UInt8]] = []
    var now = ContinuousClock.now

    init(policy: LinkPolicy = LinkPolicy()) {
        let coreKey = PrivateKey.generate()
        peer = PeerSession(role: .initiator(remoteStatic: coreKey.publicKey), localStatic: PrivateKey.generate(),
                           localInit: InitMessage(features: CorePair.basicFeatures))
        core = PeerLinkCore(role: .responder, localKey: coreKey, localInit: InitMessage(features: CorePair.basicFeatures),
                            policy: policy, now: now)
    }

    mutating func feedCore(_ bytes: [UInt8]) throws {
        var toPeer: [UInt8] = []
        for action in core.receive(bytes, now: now) {
            if case let .write(out) = action { toPeer += out } else { coreActions.append(action) }
        }
        guard !toPeer.isEmpty, core.stage != .closed || !toPeer.isEmpty else { return }
        var toCore: [UInt8] = []
        for event in try peer.receive(toPeer) {
            switch event {
            case let .write(out): toCore += out
            case let .message(message): peerReceived.append(message)
            default: break
            }
        }
        if !toCore.isEmpty { try feedCore(toCore) }
    }

    mutating func connect() throws {
        _ = core.start()
        try feedCore(try peer.start())
    }

    mutating func send(_ message: [UInt8]) throws {
        try feedCore(try peer.encrypt(message))
    }
}
