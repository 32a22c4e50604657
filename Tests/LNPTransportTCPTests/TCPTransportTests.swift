import LNPCrypto
import LNPSession
import LNPTestSupport
import LNPTransport
import LNPTransportTCP
import LNPWire
import NIOCore
import NIOPosix
import Testing

@Suite struct TCPTransportTests {
    @Test func tenThousandMessagesEachWayInOrderThenPingAndDisconnect() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group)

            let info = try await alice.transport.connect(to: bob.address(), persistent: true)
            #expect(info.nodeID == bob.nodeID)
            #expect(info.direction == .outbound && info.persistent && !info.largeFrames)
            #expect(info.remoteFeatures == Node.features)
            #expect(info.address == bob.address().description)
            try await waitUntil("bob to see alice") { bob.transport.peers().map(\.nodeID) == [alice.nodeID] }
            let bobsView = bob.transport.peers()[0]
            #expect(bobsView.direction == .inbound && !bobsView.persistent)
            #expect(bobsView.address.hasPrefix("127.0.0.1:"))

            let count = 10_000
            async let aliceSent: Void = send(count, from: alice, to: bob)
            async let bobSent: Void = send(count, from: bob, to: alice)
            _ = try await (aliceSent, bobSent)
            try await waitUntil("10,000 messages each way", timeout: .seconds(30)) {
                bob.events.messages(from: alice.nodeID).count == count && alice.events.messages(from: bob.nodeID).count == count
            }
            let expected = (0..<count).map { customMessage($0, padding: $0 % 200) }
            #expect(bob.events.messages(from: alice.nodeID) == expected)
            #expect(alice.events.messages(from: bob.nodeID) == expected)

            let roundTrip = try await alice.transport.ping(bob.nodeID, pongBytes: 1000)
            #expect(roundTrip > .zero && roundTrip < .seconds(5))
            let reverse = try await bob.transport.ping(alice.nodeID, pongBytes: 0)
            #expect(reverse > .zero)
            await #expect(throws: TransportError.invalidPongLength(65535)) {
                try await alice.transport.ping(bob.nodeID, pongBytes: 65535)
            }

            await alice.transport.disconnect(bob.nodeID)
            try await waitUntil("both sides to see the disconnection") {
                !alice.events.disconnections(of: bob.nodeID).isEmpty && !bob.events.disconnections(of: alice.nodeID).isEmpty
            }
            #expect(alice.events.disconnections(of: bob.nodeID) == ["disconnected by us"])
            #expect(alice.transport.peers().isEmpty && alice.transport.persistentPeers().isEmpty)
            #expect(throws: TransportError.notConnected(bob.nodeID)) { try alice.transport.send([customMessage(0)], to: bob.nodeID) }
            // Backoff is 20 ms here: a redial, if any were scheduled, would show well within this.
            try await Task.sleep(for: .milliseconds(300))
            #expect(alice.events.connections(of: bob.nodeID) == 1)

            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func sendAndFlushResolvesOnceWritten() async throws {
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group)
            let bob = try await Node.start(group: group)
            _ = try await alice.transport.connect(to: bob.address(), persistent: false)
            try await alice.transport.sendAndFlush([customMessage(1), customMessage(2)], to: bob.nodeID)
            #expect(alice.transport.queuedBytes(for: bob.nodeID) == 0)
            try await waitUntil("bob to receive both") { bob.events.messages(from: alice.nodeID).count == 2 }
            await #expect(throws: TransportError.reservedMessageType(index: 0, type: 18)) {
                try await alice.transport.sendAndFlush([[0, 18, 0, 0, 0, 0]], to: bob.nodeID)
            }
            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func largeFramesCarryOneMegabyteMessages() async throws {
        var features = Node.features
        features.set(Feature.lnpLargeFrames.oddBit)
        try await withEventLoopGroup { group in
            let alice = try await Node.start(group: group, features: features)
            let bob = try await Node.start(group: group, features: features)
            let info = try await alice.transport.connect(to: bob.address(), persistent: false)
            #expect(info.largeFrames)
            let big = customMessage(7, padding: 1 << 20)
            #expect(try alice.transport.send([big], to: bob.nodeID) == .written(bytes: big.count + 19 + 16))
            try await waitUntil("the 1 MiB message") { bob.events.messages(from: alice.nodeID) == [big] }
            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func redialsAfterTheListenerRestarts() async throws {
        try await withEventLoopGroup { group in
            let bobKey = PrivateKey.generate()
            var bob = try await Node.start(key: bobKey, group: group)
            let alice = try await Node.start(listen: [], group: group)
            _ = try await alice.transport.connect(to: bob.address(), persistent: true)
            let port = bob.port

            await bob.transport.shutdown()
            try await waitUntil("alice to lose bob and fail a redial") {
                alice.events.disconnections(of: bobKey.publicKey).count == 1 && !alice.events.connectFailures().isEmpty
            }
            #expect(alice.events.disconnections(of: bobKey.publicKey).first?.hasSuffix("; redialling") == true)
            #expect(alice.events.connectFailures().allSatisfy { $0.willRetry })

            bob = try await Node.start(key: bobKey, listen: ["127.0.0.1:\(port)"], group: group)
            try await waitUntil("alice to redial bob") { alice.events.connections(of: bob.nodeID) == 2 }
            try await expectExchange(bob, alice, tag: 100)

            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func persistentPeerIsRedialledEvenIfTheFirstAttemptFails() async throws {
        try await withEventLoopGroup { group in
            let bobKey = PrivateKey.generate()
            // A port nobody listens on, and that no other test can take meanwhile, so the
            // first dial is refused.
            let reserved = try ReservedPort()
            let port = reserved.port

            let alice = try await Node.start(listen: [], group: group)
            let address = try PeerAddress(parsing: "\(bobKey.publicKey.hex)@127.0.0.1:\(port)")
            await #expect {
                try await alice.transport.connect(to: address, persistent: true)
            } throws: { error in
                guard case let .connectFailed(failedAddress, _)? = error as? TransportError else { return false }
                return failedAddress == address.description
            }
            #expect(alice.events.connectFailures().first?.willRetry == true)
            #expect(alice.transport.persistentPeers() == [address])

            reserved.release()
            let bob = try await Node.start(key: bobKey, listen: ["127.0.0.1:\(port)"], group: group)
            try await waitUntil("alice to reach bob in the background") { alice.events.connections(of: bob.nodeID) == 1 }
            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func wrongNodeIDFailsWithAClearError() async throws {
        try await withEventLoopGroup { group in
            let bob = try await Node.start(group: group)
            let alice = try await Node.start(listen: [], group: group)
            let impostor = PrivateKey.generate().publicKey
            let address = try PeerAddress(parsing: "\(impostor.hex)@127.0.0.1:\(bob.port)")
            await #expect {
                try await alice.transport.connect(to: address, persistent: false)
            } throws: { error in
                guard case let .handshakeFailed(failedAddress, reason)? = error as? TransportError else { return false }
                return failedAddress == address.description && reason.contains("does not hold the private key of the node id we dialled")
            }
            #expect(alice.events.connectFailures().map(\.willRetry) == [false])
            #expect(alice.transport.peers().isEmpty && bob.transport.peers().isEmpty)
            // Bob is unharmed.
            _ = try await alice.transport.connect(to: bob.address(), persistent: false)
            try await expectExchange(bob, alice, tag: 1)
            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func newestConnectionFromTheSameNodeWins() async throws {
        try await withEventLoopGroup { group in
            let bob = try await Node.start(group: group)
            let key = PrivateKey.generate()
            let first = try await RawPeer.connect(port: bob.port, key: key, group: group)
            try await first.handshake(with: bob.nodeID)
            try await waitUntil("bob to register the first link") { bob.transport.peers().count == 1 }
            let firstAddress = bob.transport.peers()[0].address

            let second = try await RawPeer.connect(port: bob.port, key: key, group: group)
            try await second.handshake(with: bob.nodeID)
            #expect(try await first.waitUntilClosed())
            try await waitUntil("bob to keep only the second link") {
                bob.transport.peers().count == 1 && bob.transport.peers()[0].address != firstAddress
            }
            #expect(bob.events.connections(of: key.publicKey) == 2)
            #expect(bob.events.disconnections(of: key.publicKey).isEmpty)
            try await second.send(customMessage(5))
            try await waitUntil("the message over the second link") { bob.events.messages(from: key.publicKey) == [customMessage(5)] }
            await second.close()
            await bob.transport.shutdown()
        }
    }

    @Test func addressesAndStatesItCannotServe() async throws {
        try await withEventLoopGroup { group in
            let node = try await Node.start(listen: ["127.0.0.1:0", "127.0.0.1:0"], group: group)
            #expect(node.port != 0)
            let id = PrivateKey.generate().publicKey.hex
            for text in ["udp://\(id)@127.0.0.1:1", "serial://\(id)@/dev/ttyS0", "\(id)@2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:9735"] {
                let address = try PeerAddress(parsing: text)
                #expect(!node.transport.canReach(address))
                await #expect(throws: TransportError.self) { try await node.transport.connect(to: address, persistent: false) }
            }
            await #expect(throws: TransportError.unsupportedAddress(node.address().description, reason: "that is this node's own id")) {
                try await node.transport.connect(to: node.address(), persistent: false)
            }
            let stranger = PrivateKey.generate().publicKey
            #expect(throws: TransportError.notConnected(stranger)) { try node.transport.send([customMessage(1)], to: stranger) }
            await node.transport.shutdown()
            await #expect(throws: TransportError.shutDown) {
                try await node.transport.connect(to: PeerAddress(nodeID: stranger, location: node.address().location), persistent: false)
            }
            await #expect(throws: TransportError.shutDown) { try await node.transport.start() }

            var configuration = TCPTransportConfiguration(localKey: PrivateKey.generate(), localInit: InitMessage(features: Node.features),
                                                          listen: [try ListenAddress(parsing: "udp://127.0.0.1:0")])
            configuration.logger = testLogger
            let udp = TCPTransport(configuration: configuration, group: group) { _ in }
            await #expect(throws: TransportError.self) { try await udp.start() }
            await udp.shutdown()
        }
    }

    /// The node key lives in keyd, a bus round trip away (a network one when the services
    /// run on several hosts). A handshake waiting for it must not hold up the event loop,
    /// which serves every other link too.
    @Test func aHandshakeWaitingForTheNodeKeyDoesNotStallOtherLinks() async throws {
        try await withEventLoopGroup { group in
            // Bob runs on a single event loop, so every link of his shares it.
            let bobsLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let slowKey = SlowKeyAgreement(key: PrivateKey.generate())
            let bob = try await Node.start(key: slowKey.key, group: bobsLoop) { $0.localKey = slowKey }
            let alice = try await Node.start(group: group)
            let carol = try await Node.start(group: group)
            _ = try await alice.transport.connect(to: bob.address(), persistent: false)

            slowKey.setDelay(.seconds(3))
            let carolConnects = Task { try await carol.transport.connect(to: bob.address(), persistent: false) }
            try await waitUntil("bob to wait for the node key in carol's handshake") { slowKey.waiting == 1 }
            let start = ContinuousClock.now
            _ = try await alice.transport.ping(bob.nodeID, pongBytes: 16)
            let pingTook = ContinuousClock.now - start
            #expect(pingTook < .seconds(1), "alice's ping waited \(pingTook) for carol's handshake")
            #expect(slowKey.waiting == 1, "carol's handshake was still waiting for the node key during the ping")
            slowKey.setDelay(.zero)
            let carolsInfo = try await carolConnects.value
            #expect(carolsInfo.nodeID == bob.nodeID)
            try await expectExchange(alice, bob, tag: 7)

            await alice.transport.shutdown()
            await carol.transport.shutdown()
            await bob.transport.shutdown()
            try await bobsLoop.shutdownGracefully()
        }
    }

    @Test func inboundFromLoopbackGetsNoRemoteAddress() async throws {
        try await withEventLoopGroup { group in
            let bob = try await Node.start(group: group)
            let raw = try await RawPeer.connect(port: bob.port, group: group)
            try await raw.handshake(with: bob.nodeID)
            // BOLT-1: a private address is never reported in remote_addr.
            #expect(raw.remoteInit?.remoteAddress == nil)
            #expect(raw.remoteInit?.features == Node.features)
            await raw.close()
            await bob.transport.shutdown()
        }
    }
}

/// Sends `count` numbered messages in batches of up to 100, waiting out `.queueFull`.
private func send(_ count: Int, from sender: Node, to receiver: Node) async throws {
    var next = 0
    while next < count {
        let batch = (next..<min(next + 100, count)).map { customMessage($0, padding: $0 % 200) }
        // Counted before sending: `.writable` may follow a refusal at once.
        let writable = sender.events.writableEvents(for: receiver.nodeID)
        switch try sender.transport.send(batch, to: receiver.nodeID) {
        case .written:
            next += batch.count
        case .queueFull:
            try await waitUntil("room in the queue") { sender.events.writableEvents(for: receiver.nodeID) > writable }
        }
    }
}
