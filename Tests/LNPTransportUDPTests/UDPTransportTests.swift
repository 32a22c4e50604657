import LNPCrypto
import LNPSession
import LNPTestSupport
import LNPTransport
import LNPTransportUDP
import LNPWire
import NIOCore
import NIOPosix
import Testing

@Suite("UDP transport on loopback", .serialized)
struct UDPTransportTests {
    @Test("dialling completes after the handshake and the init exchange; both sides see each other's features")
    func connectExchangesInit() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group, features: FeatureVector(features: [.varOnionOptin, .paymentSecret, .basicMPP]))
            try await withNodes([alice, bob]) {
                #expect(alice.transport.linkKind == .frame)
                #expect(alice.transport.canReach(bob.address))
                #expect(!alice.transport.canReach(try PeerAddress(parsing: "\(bob.nodeID.hex)@127.0.0.1:\(bob.port)")))
                let info = try await connect(alice, to: bob)
                #expect(info.nodeID == bob.nodeID)
                #expect(info.direction == .outbound)
                #expect(info.remoteFeatures == FeatureVector(features: [.varOnionOptin, .paymentSecret, .basicMPP]))
                let inbound = try #require(bob.events.connections(of: alice.nodeID).first)
                #expect(inbound.direction == .inbound)
                #expect(inbound.remoteFeatures == Node.features)
                #expect(alice.transport.peers().map(\.nodeID) == [bob.nodeID])
                #expect(bob.transport.peers().map(\.nodeID) == [alice.nodeID])
                // A second connect to a connected node returns the session it has.
                let again = try await alice.transport.connect(to: bob.address, persistent: false)
                #expect(again.nodeID == bob.nodeID)
                #expect(alice.events.connections(of: bob.nodeID).count == 1)
            }
        }
    }

    @Test("10,000 messages each way arrive intact, none twice")
    func tenThousandMessagesEachWay() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group)
            try await withNodes([alice, bob]) {
                try await connect(alice, to: bob)
                let count = 10_000
                let padding = 94 // 100-byte messages
                async let forward: Void = pump(count, from: alice, to: bob, padding: padding)
                async let backward: Void = pump(count, from: bob, to: alice, padding: padding)
                _ = try await (forward, backward)
                // Let the tail arrive.
                try? await waitUntil("the last messages", timeout: .seconds(3)) {
                    bob.events.messageCount(from: alice.nodeID) >= count && alice.events.messageCount(from: bob.nodeID) >= count
                }
                for (receiver, sender) in [(bob, alice), (alice, bob)] {
                    let received = receiver.events.messages(from: sender.nodeID)
                    let sequences = received.compactMap { sequence(of: $0, padding: padding) }
                    #expect(sequences.count == received.count, "every message arrives intact")
                    #expect(Set(sequences).count == sequences.count, "no message arrives twice")
                    #expect(sequences.allSatisfy { $0 < count })
                    let inOrder = zip(sequences, sequences.dropFirst()).filter { $0 < $1 }.count
                    print("udp loopback: \(received.count) of \(count) arrived, \(inOrder + 1) in order")
                    // Loopback loses next to nothing when the sender is paced.
                    #expect(received.count >= count * 99 / 100)
                }
            }
        }
    }

    @Test("a ping is answered with a pong of the asked length")
    func ping() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group)
            try await withNodes([alice, bob]) {
                try await connect(alice, to: bob)
                let roundTrip = try await alice.transport.ping(bob.nodeID, pongBytes: 1000)
                #expect(roundTrip > .zero && roundTrip < .seconds(2))
                _ = try await bob.transport.ping(alice.nodeID, pongBytes: 0)
                await #expect(throws: TransportError.invalidPongLength(65532)) {
                    _ = try await alice.transport.ping(bob.nodeID, pongBytes: 65532)
                }
                #expect(alice.events.messages(from: bob.nodeID).isEmpty, "ping and pong are the link's own")
            }
        }
    }

    @Test("disconnect ends the session here at once and at the peer by its dead-peer timer")
    func disconnect() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group)
            try await withNodes([alice, bob]) {
                try await connect(alice, to: bob, persistent: true)
                await alice.transport.disconnect(bob.nodeID)
                #expect(alice.events.disconnections(of: bob.nodeID).count == 1)
                #expect(alice.transport.peers().isEmpty)
                #expect(alice.transport.persistentPeers().isEmpty)
                #expect(throws: TransportError.notConnected(bob.nodeID)) {
                    _ = try alice.transport.send([customMessage(1)], to: bob.nodeID)
                }
                try await waitUntil("bob noticing the silence") { !bob.events.disconnections(of: alice.nodeID).isEmpty }
                #expect(bob.transport.peers().isEmpty)
                // No redial: alice forgot bob.
                try await Task.sleep(for: .milliseconds(500))
                #expect(alice.events.connections(of: bob.nodeID).count == 1)
            }
        }
    }

    @Test("a persistent peer is reached again after its transport restarts with the same node key")
    func redialAfterPeerRestart() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bobKey = PrivateKey.generate()
            let bob = try await Node.start(key: bobKey, group: group)
            var restarted: Node?
            defer { _ = restarted }
            try await withNodes([alice, bob]) {
                try await connect(alice, to: bob, persistent: true)
                await bob.transport.shutdown()
                try await waitUntil("alice noticing bob is gone") { !alice.events.disconnections(of: bob.nodeID).isEmpty }
                let newBob = try await Node.start(key: bobKey, port: bob.port, group: group)
                restarted = newBob
                try await withNodes([newBob]) {
                    try await waitUntil("alice reconnecting", timeout: .seconds(20)) {
                        alice.events.connections(of: bob.nodeID).count == 2 && !newBob.events.connections(of: alice.nodeID).isEmpty
                    }
                    #expect(try alice.transport.send([customMessage(7)], to: bob.nodeID) != .queueFull)
                    try await waitUntil("a message over the new session") { newBob.events.messages(from: alice.nodeID) == [customMessage(7)] }
                    #expect(try newBob.transport.send([customMessage(8)], to: alice.nodeID) != .queueFull)
                    try await waitUntil("a message back") { alice.events.messages(from: bob.nodeID) == [customMessage(8)] }
                }
            }
        }
    }

    @Test("dialling a port where nobody answers fails within the handshake's bounded retries")
    func absentPeer() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group) { configuration in
                configuration.datagramPolicy.handshakeAttempts = 4
            }
            // A port that was free a moment ago: bind, note it, close.
            let probe = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            let port = try #require(probe.localAddress?.port)
            try await probe.close()
            try await withNodes([alice]) {
                let absent = try PeerAddress(parsing: "udp://\(PrivateKey.generate().publicKey.hex)@127.0.0.1:\(port)")
                let started = ContinuousClock.now
                await #expect(throws: TransportError.self) {
                    _ = try await alice.transport.connect(to: absent, persistent: false)
                }
                let elapsed = ContinuousClock.now - started
                // 100 + 200 + 400 + 400 ms of retries, then give up.
                #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(5), "took \(elapsed)")
                let failures = alice.events.connectFailures()
                #expect(failures.count == 1)
                #expect(failures.first?.willRetry == false)
                #expect(failures.first?.reason.contains("did not answer the handshake") == true)
                #expect(alice.transport.peers().isEmpty)
            }
        }
    }

    @Test("garbage and forged datagrams from a plain UDP socket are dropped and counted; the transport stays up")
    func garbageIsDropped() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group)
            let attacker = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            do {
                try await withNodes([alice, bob]) {
                    try await connect(alice, to: bob)
                    let target = try SocketAddress(ipAddress: "127.0.0.1", port: bob.port)
                    var datagrams: [[UInt8]] = []
                    for length in 0..<50 { datagrams.append((0..<length).map { _ in UInt8.random(in: 2...0x0f) }) }
                    // Shaped like act one, but no act one of ours: it does not verify.
                    for _ in 0..<50 { datagrams.append([0x01] + (0..<50).map { _ in UInt8.random(in: 0...255) }) }
                    // Shaped like transport datagrams of a session that does not exist.
                    for kind: UInt8 in [0x10, 0x11, 0x12] {
                        for _ in 0..<20 { datagrams.append([kind] + (0..<60).map { _ in UInt8.random(in: 0...255) }) }
                    }
                    // Larger than any datagram the link carries.
                    for _ in 0..<10 { datagrams.append([0x10] + [UInt8](repeating: 0xAB, count: 3000)) }
                    for datagram in datagrams {
                        try await attacker.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: datagram)))
                    }
                    var statistics = await bob.transport.statistics()
                    let deadline = ContinuousClock.now + .seconds(5)
                    while statistics.strayDatagrams < datagrams.count, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                        statistics = await bob.transport.statistics()
                    }
                    #expect(statistics.strayDatagrams == datagrams.count)
                    #expect(statistics.halfOpenHandshakes == 0, "nothing unverified is kept")
                    #expect(statistics.sessions == 1)
                    #expect(bob.events.disconnections(of: alice.nodeID).isEmpty)
                    // The session is unharmed.
                    #expect(try alice.transport.send([customMessage(1)], to: bob.nodeID) != .queueFull)
                    try await waitUntil("a message after the garbage") { bob.events.messages(from: alice.nodeID) == [customMessage(1)] }
                    _ = try await bob.transport.ping(alice.nodeID, pongBytes: 4)
                }
                try await attacker.close()
            } catch {
                try? await attacker.close()
                throw error
            }
        }
    }

    @Test("an unknown even message gets a warning and ends the session")
    func unknownEvenType() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group)
            try await withNodes([alice, bob]) {
                try await connect(alice, to: bob)
                #expect(try alice.transport.send([customMessage(1, type: 32770)], to: bob.nodeID) != .queueFull)
                try await waitUntil("bob dropping alice") { !bob.events.disconnections(of: alice.nodeID).isEmpty }
                #expect(bob.events.disconnections(of: alice.nodeID).first?.contains("unknown even message type 32770") == true)
                try await waitUntil("alice receiving the warning") {
                    alice.events.messages(from: bob.nodeID).contains { $0.starts(with: [0, 1]) }
                }
                #expect(bob.events.messages(from: alice.nodeID).isEmpty)
                #expect(throws: TransportError.reservedMessageType(index: 0, type: FrameLinkCore.initAckType)) {
                    _ = try alice.transport.send([customMessage(1, type: FrameLinkCore.initAckType)], to: bob.nodeID)
                }
            }
        }
    }

    @Test("the init exchange and keepalive survive 20 % loss, duplicates and reordering")
    func lossyLink() async throws {
        try await withEventLoopGroup { group in
            let aliceFaults = FaultCounters()
            let bobFaults = FaultCounters()
            func lossy(_ counters: FaultCounters) -> (inout UDPTransportConfiguration) -> Void {
                { configuration in
                    // Roughly 36 % of round trips fail here: give a silent peer twice the time.
                    configuration.datagramPolicy.deadPeerTimeout = .seconds(3)
                    configuration.socketPipelineHook = { channel in
                        try channel.pipeline.syncOperations.addHandler(
                            FaultInjector(dropRate: 0.2, duplicateRate: 0.1, reorderRate: 0.1, counters: counters))
                    }
                }
            }
            let alice = try await Node.start(group: group, lossy(aliceFaults))
            let bob = try await Node.start(group: group, lossy(bobFaults))
            try await withNodes([alice, bob]) {
                // Several sessions in a row, so the exchange meets loss at every step.
                let rounds = 3
                for round in 0..<rounds {
                    try await connect(alice, to: bob)
                    #expect(alice.events.connections(of: bob.nodeID).count == round + 1)
                    await alice.transport.disconnect(bob.nodeID)
                    try await waitUntil("bob noticing round \(round) ended", timeout: .seconds(10)) {
                        bob.events.disconnections(of: alice.nodeID).count == round + 1
                    }
                }
                try await connect(alice, to: bob)
                // Idle for twice the dead-peer timeout: keepalives keep the session.
                try await Task.sleep(for: .seconds(6))
                #expect(alice.events.disconnections(of: bob.nodeID).count == rounds)
                #expect(bob.events.disconnections(of: alice.nodeID).count == rounds)
                // Messages still flow; lost ones are lost, none doubled or altered.
                let sent = 300
                for index in 0..<sent {
                    _ = try alice.transport.send([customMessage(index, padding: 40)], to: bob.nodeID)
                }
                try? await waitUntil("the messages", timeout: .seconds(2)) { bob.events.messageCount(from: alice.nodeID) >= sent }
                let sequences = bob.events.messages(from: alice.nodeID).compactMap { sequence(of: $0, padding: 40) }
                #expect(sequences.count == bob.events.messageCount(from: alice.nodeID))
                #expect(Set(sequences).count == sequences.count)
                #expect(sequences.count > sent / 2)
                for faults in [aliceFaults.snapshot, bobFaults.snapshot] {
                    print("fault injector: \(faults)")
                    #expect(faults.dropped > 0 && faults.duplicated > 0 && faults.reordered > 0)
                }
            }
        }
    }
}
