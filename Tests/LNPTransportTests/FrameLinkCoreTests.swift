import LNPCrypto
import LNPSession
import LNPTransport
import LNPWire
import Testing

/// Two frame cores back to back over an in-memory "session" whose messages the test
/// delivers, loses or reorders by hand, with a clock it moves by hand.
struct FramePair {
    var a: FrameLinkCore
    var b: FrameLinkCore
    let aKey = PrivateKey.generate().publicKey
    let bKey = PrivateKey.generate().publicKey
    var now = ContinuousClock.now
    /// Messages each side sent and the test has not yet delivered or lost.
    var towardB: [[UInt8]] = []
    var towardA: [[UInt8]] = []
    /// Everything but sends, per side, in order.
    var aEvents: [FrameLinkCore.Action] = []
    var bEvents: [FrameLinkCore.Action] = []

    static let features = FeatureVector(features: [.varOnionOptin, .paymentSecret])

    init(aInit: InitMessage = InitMessage(features: features), bInit: InitMessage = InitMessage(features: features),
         policy: LinkPolicy = LinkPolicy(handshakeTimeout: .seconds(10))) {
        a = FrameLinkCore(localInit: aInit, policy: policy, initRetryInterval: .milliseconds(500))
        b = FrameLinkCore(localInit: bInit, policy: policy, initRetryInterval: .milliseconds(500))
    }

    mutating func collect(_ actions: [FrameLinkCore.Action], fromA: Bool) {
        for action in actions {
            if case let .send(message) = action {
                if fromA { towardB.append(message) } else { towardA.append(message) }
            } else if fromA {
                aEvents.append(action)
            } else {
                bEvents.append(action)
            }
        }
    }

    mutating func establish() {
        collect(a.sessionEstablished(remoteNodeID: bKey, now: now), fromA: true)
        collect(b.sessionEstablished(remoteNodeID: aKey, now: now), fromA: false)
    }

    /// Delivers what is in flight toward B (or A); `lose` picks messages to drop instead.
    mutating func deliverToB(lose: (Int) -> Bool = { _ in false }) {
        let messages = towardB
        towardB = []
        for (index, message) in messages.enumerated() where !lose(index) {
            collect(b.receive(message, now: now), fromA: false)
        }
    }

    mutating func deliverToA(lose: (Int) -> Bool = { _ in false }) {
        let messages = towardA
        towardA = []
        for (index, message) in messages.enumerated() where !lose(index) {
            collect(a.receive(message, now: now), fromA: true)
        }
    }

    mutating func advance(_ duration: Duration) {
        now += duration
        collect(a.timerFired(now: now), fromA: true)
        collect(b.timerFired(now: now), fromA: false)
    }
}

func isReady(_ events: [FrameLinkCore.Action]) -> Bool {
    events.contains { if case .ready = $0 { true } else { false } }
}

func closeReason(_ events: [FrameLinkCore.Action]) -> LinkFailure? {
    events.lazy.compactMap { if case let .close(reason) = $0 { reason } else { nil } }.first
}

func messageType(_ message: [UInt8]) -> UInt16 { UInt16(message[0]) << 8 | UInt16(message[1]) }

@Suite("FrameLinkCore: the init exchange and message rules of a frame link")
struct FrameLinkCoreTests {
    @Test func bothSidesBecomeReadyAfterInitAndAck() {
        var pair = FramePair()
        pair.establish()
        #expect(pair.towardB.map(messageType) == [MessageType.`init`])
        pair.deliverToB()
        pair.deliverToA()
        // Each side has the other's init and has acked it; the acks complete the exchange.
        pair.deliverToB()
        pair.deliverToA()
        #expect(isReady(pair.aEvents) && isReady(pair.bEvents))
        #expect(pair.a.stage == .ready && pair.b.stage == .ready)
        guard case let .ready(peer)? = pair.aEvents.first else { Issue.record("no ready event"); return }
        #expect(peer.nodeID == pair.bKey && peer.initMessage.combinedFeatures == FramePair.features)
    }

    @Test func lostInitIsSentAgainWithBackoffUntilAcked() {
        var pair = FramePair()
        pair.establish()
        pair.towardB = [] // A's init is lost
        pair.deliverToA() // B's init arrives; A acks
        pair.deliverToB() // B gets A's ack, but has no init from A yet
        #expect(!isReady(pair.bEvents))
        // B waits for A's init with nothing to repeat: its next deadline is the exchange's end.
        #expect(pair.b.nextDeadline == pair.now + LinkPolicy(handshakeTimeout: .seconds(10)).handshakeTimeout)
        pair.advance(.milliseconds(500))
        #expect(pair.towardB.map(messageType) == [MessageType.`init`], "A repeats its init")
        #expect(pair.towardA.isEmpty, "B stops repeating: A showed it has B's init")
        pair.deliverToB()
        pair.deliverToA()
        #expect(isReady(pair.aEvents) && isReady(pair.bEvents))
        // The next repeat waits twice as long.
        var lonely = FramePair()
        lonely.establish()
        lonely.towardB = []
        lonely.advance(.milliseconds(500))
        lonely.towardB = []
        lonely.advance(.milliseconds(500))
        #expect(lonely.towardB.isEmpty)
        lonely.advance(.milliseconds(500))
        #expect(lonely.towardB.count == 1)
    }

    @Test func repeatedInitIsAckedAgainEvenWhenReady() {
        var pair = FramePair()
        pair.establish()
        pair.deliverToB()
        pair.deliverToA()
        pair.deliverToB(lose: { _ in true }) // A's ack to B is lost
        pair.deliverToA()
        #expect(pair.a.stage == .ready && pair.b.stage == .awaitingInit)
        pair.advance(.milliseconds(500)) // B repeats its init
        pair.deliverToA()
        #expect(pair.towardB.map(messageType) == [FrameLinkCore.initAckType])
        pair.deliverToB()
        #expect(pair.b.stage == .ready)
    }

    @Test func anOrdinaryMessageShowsThePeerHasOurInit() {
        var pair = FramePair()
        pair.establish()
        pair.deliverToB()
        pair.deliverToA(lose: { _ in false })
        pair.towardB = [] // A's ack lost
        #expect(pair.a.stage == .ready)
        pair.towardB = [[0x80, 0x01, 42]]
        pair.deliverToB()
        #expect(pair.b.stage == .ready)
        #expect(pair.bEvents.contains(.deliver([0x80, 0x01, 42])))
    }

    @Test func messagesBeforeThePeersInitAreDroppedAndCounted() {
        var pair = FramePair()
        pair.establish()
        pair.towardB = []
        pair.collect(pair.b.receive([0x80, 0x01, 1], now: pair.now), fromA: false)
        #expect(pair.b.messagesDroppedBeforeInit == 1)
        #expect(pair.bEvents.isEmpty)
    }

    @Test func initExchangeTimesOut() {
        var pair = FramePair(policy: LinkPolicy(handshakeTimeout: .seconds(3)))
        pair.establish()
        for _ in 0..<10 {
            pair.towardB = []
            pair.towardA = []
            pair.advance(.milliseconds(400))
        }
        #expect(closeReason(pair.aEvents) == .handshakeTimedOut(after: .seconds(3), stage: .awaitingInit))
        #expect(pair.a.stage == .closed && pair.a.nextDeadline == nil)
    }

    @Test func aDifferentSecondInitEndsTheLinkWithAWarning() {
        var pair = FramePair()
        pair.establish()
        pair.deliverToB()
        let other = Message.`init`(InitMessage(features: FeatureVector(features: [.varOnionOptin]))).encode()
        let actions = pair.b.receive(other, now: pair.now)
        #expect(actions.count == 2)
        guard case let .send(warning)? = actions.first else { Issue.record("no warning"); return }
        #expect(messageType(warning) == MessageType.warning)
        #expect(actions.last == .close(.duplicateInit))
    }

    @Test func incompatibleInitEndsTheLink() {
        var pair = FramePair(aInit: InitMessage(features: FeatureVector(bits: [42])))
        pair.establish()
        pair.deliverToB()
        guard case .incompatibleInit? = closeReason(pair.bEvents) else {
            Issue.record("expected an incompatible init, got \(pair.bEvents)")
            return
        }
    }

    @Test func unknownEvenTypeGetsAWarningAndCloses() {
        var pair = FramePair()
        pair.establish()
        pair.deliverToB(); pair.deliverToA(); pair.deliverToB(); pair.deliverToA()
        let actions = pair.b.receive([0x80, 0x02], now: pair.now)
        guard case let .send(warning)? = actions.first else { Issue.record("no warning"); return }
        #expect(messageType(warning) == MessageType.warning)
        #expect(actions.last == .close(.unknownEvenMessage(type: 0x8002)))
        #expect(pair.b.stage == .closed)
    }

    @Test func pingIsAnsweredAndALostPongFailsOnlyThePing() throws {
        var pair = FramePair()
        pair.establish()
        pair.deliverToB(); pair.deliverToA(); pair.deliverToB(); pair.deliverToA()
        let (first, actions) = try pair.a.ping(pongBytes: 10, now: pair.now)
        pair.collect(actions, fromA: true)
        pair.deliverToB()
        pair.now += .milliseconds(30)
        pair.deliverToA()
        #expect(pair.aEvents.last == .pongReceived(first, roundTrip: .milliseconds(30)))
        let (second, more) = try pair.a.ping(pongBytes: 3, now: pair.now)
        pair.collect(more, fromA: true)
        pair.deliverToB(lose: { _ in true })
        pair.advance(LinkPolicy().pongTimeout)
        #expect(pair.aEvents.last == .pingFailed(second, after: LinkPolicy().pongTimeout))
        #expect(pair.a.stage == .ready)
    }

    @Test func aNewSessionEpochRunsTheExchangeAgain() {
        var pair = FramePair()
        pair.establish()
        pair.deliverToB(); pair.deliverToA(); pair.deliverToB(); pair.deliverToA()
        #expect(pair.a.stage == .ready)
        // B restarted: a new handshake, a fresh core on B's side.
        pair.b = FrameLinkCore(localInit: InitMessage(features: FramePair.features), policy: LinkPolicy())
        pair.aEvents = []
        pair.establish()
        #expect(pair.a.stage == .awaitingInit)
        pair.deliverToB(); pair.deliverToA(); pair.deliverToB(); pair.deliverToA()
        #expect(isReady(pair.aEvents) && pair.b.stage == .ready)
    }

    @Test func outboundChecksRefuseReservedTypes() {
        #expect(throws: TransportError.reservedMessageType(index: 1, type: FrameLinkCore.initAckType)) {
            _ = try FrameLinkCore.checkOutbound([[0x80, 0x01], [0x81, 0x4d]], maximumMessageLength: 100)
        }
        #expect(throws: TransportError.messageTooLarge(index: 0, length: 101, limit: 100)) {
            _ = try FrameLinkCore.checkOutbound([[0x80, 0x01] + [UInt8](repeating: 0, count: 99)], maximumMessageLength: 100)
        }
        #expect(throws: TransportError.messageTooShort(index: 0, length: 1)) {
            _ = try FrameLinkCore.checkOutbound([[0x80]], maximumMessageLength: 100)
        }
    }
}
