import LNPCrypto
import LNPSession
import LNPTransport
@testable import LNPTransportSerial
import LNPWire
import Testing

/// The line core without a device: two cores joined by a simulated line that loses
/// frames, driven by a simulated clock, so loss patterns are exact and repeatable.
@Suite struct SerialLinkCoreTests {
    struct Line {
        var alice: SerialLinkCore
        var bob: SerialLinkCore
        var now = ContinuousClock.now
        var toAlice: [[UInt8]] = []
        var toBob: [[UInt8]] = []
        var aliceEvents: [SerialLinkCore.Action] = []
        var bobEvents: [SerialLinkCore.Action] = []
        /// Transmissions sent so far; `lose` sees each one's number and direction.
        var transmissions = 0
        var lose: (Int, _ towardsAlice: Bool) -> Bool = { _, _ in false }

        init(settings: SerialLinkCore.Settings, alicesFeatures: FeatureVector = FeatureVector(features: [.varOnionOptin])) throws {
            let aliceKey = PrivateKey.generate(), bobKey = PrivateKey.generate()
            let localInit = InitMessage(features: FeatureVector(features: [.varOnionOptin]))
            alice = try SerialLinkCore(role: .responder, localKey: aliceKey, localInit: InitMessage(features: alicesFeatures),
                                       settings: settings)
            bob = try SerialLinkCore(role: .initiator(remote: aliceKey.publicKey, persistent: true), localKey: bobKey,
                                     localInit: localInit, settings: settings)
            route(bob.start(now: now), fromAlice: false)
        }

        mutating func route(_ actions: [SerialLinkCore.Action], fromAlice: Bool) {
            for action in actions {
                guard case let .transmit(bytes) = action else {
                    if fromAlice { aliceEvents.append(action) } else { bobEvents.append(action) }
                    continue
                }
                transmissions += 1
                if lose(transmissions, !fromAlice) { continue }
                if fromAlice { toBob.append(bytes) } else { toAlice.append(bytes) }
            }
        }

        /// Delivers what is in flight, then advances the clock by `step` and fires due timers.
        mutating func run(for duration: Duration, step: Duration = .milliseconds(50)) {
            let end = now + duration
            while now < end {
                while !toAlice.isEmpty || !toBob.isEmpty {
                    let (forAlice, forBob) = (toAlice, toBob)
                    toAlice = []
                    toBob = []
                    for bytes in forAlice { route(alice.receive(bytes, now: now), fromAlice: true) }
                    for bytes in forBob { route(bob.receive(bytes, now: now), fromAlice: false) }
                }
                now += step
                route(alice.timerFired(now: now), fromAlice: true)
                route(bob.timerFired(now: now), fromAlice: false)
            }
        }
    }

    static let settings = SerialLinkCore.Settings(
        datagramPolicy: .serial(), linkPolicy: LinkPolicy(), initRetryInterval: .milliseconds(500), redialDelay: .seconds(1))

    static func readyCount(_ events: [SerialLinkCore.Action]) -> Int {
        events.filter { if case .ready = $0 { true } else { false } }.count
    }

    @Test func theInitExchangeCompletesWhateverSingleTransmissionIsLost() throws {
        // Losing any one of the first twelve transmissions (acts, inits, the ready pings
        // and their pongs) still ends with both sides ready, once each.
        for lost in 1...12 {
            var line = try Line(settings: Self.settings)
            line.lose = { number, _ in number == lost }
            line.run(for: .seconds(20))
            #expect(Self.readyCount(line.aliceEvents) == 1, "lost transmission \(lost)")
            #expect(Self.readyCount(line.bobEvents) == 1, "lost transmission \(lost)")
            #expect(line.alice.isReady && line.bob.isReady, "lost transmission \(lost)")
        }
    }

    @Test func onceBothSidesAreReadyNoInitIsRepeated() throws {
        var line = try Line(settings: Self.settings)
        line.run(for: .seconds(5))
        #expect(line.alice.isReady && line.bob.isReady)
        let sent = (line.alice.statistics.messagesSent, line.bob.statistics.messagesSent)
        // A quiet minute: keepalives only (below the message layer), no init, no ping.
        line.run(for: .seconds(60))
        #expect(line.alice.statistics.messagesSent == sent.0)
        #expect(line.bob.statistics.messagesSent == sent.1)
        #expect(line.alice.statistics.keepalivesSent > 0)
    }

    @Test func aLossyLineDeliversOnlyIntactMessagesAndNoiseIsCounted() throws {
        var line = try Line(settings: Self.settings)
        // One transmission in five lost, both ways.
        line.lose = { number, _ in number % 5 == 0 }
        line.run(for: .seconds(30))
        #expect(line.alice.isReady && line.bob.isReady)
        var sent: [[UInt8]] = []
        for index in 0..<200 {
            let message: [UInt8] = [0x80, 0x01, UInt8(index & 0xff), UInt8(index >> 8)] + Array(repeating: 7, count: index * 5)
            sent.append(message)
            line.route([.transmit(try line.bob.send([message], now: line.now))], fromAlice: false)
            if index % 10 == 0 { line.toAlice.append([0x13, 0x37, 0x00, 0xFF, 0xFE, 0x00]) }
        }
        line.run(for: .seconds(1))
        let delivered = line.aliceEvents.compactMap { if case let .deliver(_, bytes) = $0 { bytes } else { nil } }
        #expect(!delivered.isEmpty && delivered.count < sent.count)
        // Whatever arrived is exactly one of the messages sent, in order, never twice.
        var remaining = sent[...]
        for message in delivered {
            guard let index = remaining.firstIndex(of: message) else {
                Issue.record("a message arrived that was not sent, or arrived twice")
                break
            }
            remaining = remaining[(index + 1)...]
        }
        #expect(line.alice.framesDropped >= 20)
    }

    @Test func anUnknownEvenTypeIsRefusedWithAWarningAndTheSessionStays() throws {
        var line = try Line(settings: Self.settings)
        line.run(for: .seconds(5))
        line.route([.transmit(try line.bob.send([[0x80, 0x00, 1, 2, 3]], now: line.now))], fromAlice: false)
        line.route([.transmit(try line.bob.send([[0x80, 0x01, 4]], now: line.now))], fromAlice: false)
        line.run(for: .seconds(1))
        let delivered = line.aliceEvents.compactMap { if case let .deliver(_, bytes) = $0 { bytes } else { nil } }
        #expect(delivered == [[0x80, 0x01, 4]])
        let warnings = line.bobEvents.compactMap { event -> WarningMessage? in
            guard case let .deliver(_, bytes) = event, case let .warning(warning)? = try? Message.decode(bytes) else { return nil }
            return warning
        }
        #expect(warnings.map(\.printableData) == ["unknown even message type 32768"])
        #expect(line.alice.isReady && line.bob.isReady)
    }

    @Test func aPeerRequiringAnUnknownFeatureNeverBecomesReady() throws {
        // Alice requires feature bit 100, which bob does not know: bob refuses her init and
        // warns her; neither side reports a session, and bob starts over after its attempts.
        var line = try Line(settings: Self.settings, alicesFeatures: FeatureVector(bits: [100]))
        // Eight inits with backoff up to 16 s take about a minute; then one more wait.
        line.run(for: .seconds(120))
        #expect(Self.readyCount(line.bobEvents) == 0 && Self.readyCount(line.aliceEvents) == 0)
        #expect(!line.alice.isReady)
        #expect(!line.bob.isReady)
        #expect(line.bob.messagesDropped > 0)
        #expect(line.bob.sessionsStarted > 1)
        let objections = line.aliceEvents.compactMap { event -> String? in
            guard case let .log(true, text) = event, text.hasPrefix("the peer objects") else { return nil }
            return text
        }
        #expect(objections.first?.contains("incompatible init") == true)
    }
}
