#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LNPCrypto
import LNPSession
import LNPTestSupport
import LNPTransport
import LNPTransportSerial
import LNPWire
import Testing

/// Two serial transports on the two ends of a socat pty pair: real ttys in raw mode, real
/// termios, real Noise_XK (libsecp256k1) and ChaCha20-Poly1305.
@Suite(.serialized) struct SerialTransportTests {
    @Test func tenThousandMessagesArriveIntactThenPingAndDisconnect() async throws {
        try await withPtyPair { pair in
            let alice = try await SerialNode.start(listen: ["serial://\(pair.a)?baud=115200"])
            let bob = try await SerialNode.start()

            let info = try await bob.transport.connect(to: alice.address(on: pair.b), persistent: true)
            #expect(info.nodeID == alice.nodeID)
            #expect(info.direction == .outbound && info.persistent)
            #expect(info.remoteFeatures == SerialNode.features)
            #expect(info.address == alice.address(on: pair.b).description)
            try await waitUntil("alice to see bob") { alice.transport.peers().map(\.nodeID) == [bob.nodeID] }
            let alicesView = alice.transport.peers()[0]
            #expect(alicesView.direction == .inbound && alicesView.remoteFeatures == SerialNode.features)
            #expect(alicesView.address == "serial://\(pair.a)?baud=115200")

            // Sizes from 6 bytes to three fragments, so reassembly is exercised too.
            let count = 10_000
            let messages = (0..<count).map { customMessage($0, padding: $0 % 97 == 0 ? 1200 : $0 % 300) }
            try await sendAll(messages, from: bob, to: alice.nodeID)
            try await waitUntil("10,000 messages", timeout: .seconds(60)) { alice.events.messages(from: bob.nodeID).count >= count }
            // On a pty nothing is lost; whatever arrives must be exactly what was sent, once, in order.
            #expect(alice.events.messages(from: bob.nodeID) == messages)
            let lineStatistics = try #require(alice.transport.lineStatistics(path: pair.a))
            #expect(lineStatistics.framesDropped == 0)
            #expect(lineStatistics.datagrams.totalDropped == 0)
            #expect(lineStatistics.datagrams.messagesDelivered >= count)

            let roundTrip = try await bob.transport.ping(alice.nodeID, pongBytes: 1000)
            #expect(roundTrip > .zero && roundTrip < .seconds(5))
            let reverse = try await alice.transport.ping(bob.nodeID, pongBytes: 0)
            #expect(reverse > .zero)
            await #expect(throws: TransportError.invalidPongLength(65535)) {
                try await bob.transport.ping(alice.nodeID, pongBytes: 65535)
            }
            #expect(throws: TransportError.reservedMessageType(index: 0, type: MessageType.ping)) {
                try bob.transport.send([Message.ping(Ping(numPongBytes: 1)).encode()], to: alice.nodeID)
            }
            #expect(throws: TransportError.messageTooLarge(index: 0, length: 65_536, limit: 65_535)) {
                try bob.transport.send([customMessage(0, padding: 65_530)], to: alice.nodeID)
            }

            // sendAndFlush returns once the frames are on the device.
            try await bob.transport.sendAndFlush([customMessage(count)], to: alice.nodeID)
            try await waitUntil("the flushed message") { alice.events.messages(from: bob.nodeID).last == customMessage(count) }

            await bob.transport.disconnect(alice.nodeID)
            #expect(bob.events.disconnections(of: alice.nodeID) == ["disconnected by us"])
            #expect(bob.transport.peers().isEmpty)
            #expect(throws: TransportError.notConnected(alice.nodeID)) { try bob.transport.send([customMessage(0)], to: alice.nodeID) }
            // Bob is silent now: alice's dead-peer timer ends her side and her line waits for the next handshake.
            try await waitUntil("alice to drop the silent session") { !alice.events.disconnections(of: bob.nodeID).isEmpty }
            #expect(alice.transport.peers().isEmpty)

            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func aRestartedInitiatorOrResponderGetsANewSession() async throws {
        try await withPtyPair { pair in
            let aliceKey = PrivateKey.generate()
            let bobKey = PrivateKey.generate()
            var alice = try await SerialNode.start(key: aliceKey, listen: ["serial://\(pair.a)"])
            var bob = try await SerialNode.start(key: bobKey)
            _ = try await bob.transport.connect(to: alice.address(on: pair.b), persistent: true)
            try await exchange(alice, bob, tag: 1)

            // The initiator restarts: a fresh act one on the line replaces alice's session.
            await bob.transport.shutdown()
            bob = try await SerialNode.start(key: bobKey)
            _ = try await bob.transport.connect(to: alice.address(on: pair.b), persistent: true)
            try await waitUntil("alice to take bob's new session") { alice.events.connections(of: bob.nodeID).count == 2 }
            try await exchange(alice, bob, tag: 10)

            // The responder restarts: bob's dead-peer timer notices and starts over by itself.
            await alice.transport.shutdown()
            alice = try await SerialNode.start(key: aliceKey, listen: ["serial://\(pair.a)"])
            try await waitUntil("bob to reconnect to the restarted alice", timeout: .seconds(20)) {
                bob.events.connections(of: alice.nodeID).count == 2 && !alice.transport.peers().isEmpty
            }
            #expect(bob.events.disconnections(of: alice.nodeID).count == 1)
            try await exchange(alice, bob, tag: 20)

            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func noiseOnTheLineIsCountedAndTheSessionCarriesOn() async throws {
        try await withPtyPair { pair in
            let alice = try await SerialNode.start(listen: ["serial://\(pair.a)"])
            let bob = try await SerialNode.start()
            _ = try await bob.transport.connect(to: alice.address(on: pair.b), persistent: true)
            try await exchange(alice, bob, tag: 1)

            var generator = SystemRandomNumberGenerator()
            var tag = 100
            for round in 0..<20 {
                // Bytes written into bob's device come out of alice's, between bob's frames.
                let noise = (0..<Int.random(in: 1...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                try pair.inject(noise + (round % 2 == 0 ? [0] : []), into: pair.b)
                try await Task.sleep(for: .milliseconds(60))
                try await exchange(alice, bob, tag: tag)
                tag += 10
            }
            // A long burst without a delimiter: the decoder gives up on it without holding it.
            try pair.inject([UInt8](repeating: 0x55, count: 200_000), into: pair.b)
            try await Task.sleep(for: .milliseconds(200))
            try await exchange(alice, bob, tag: tag)

            let statistics = try #require(alice.transport.lineStatistics(path: pair.a))
            #expect(statistics.framesDropped >= 10)
            #expect(statistics.frameDrops[.oversized, default: 0] >= 1)
            #expect(alice.transport.peers().map(\.nodeID) == [bob.nodeID])
            #expect(alice.events.connections(of: bob.nodeID).count == 1)
            #expect(bob.events.disconnections(of: alice.nodeID).isEmpty)

            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func aFullLineQueueRefusesThenReportsWritable() async throws {
        try await withPtyPair { pair in
            let alice = try await SerialNode.start(listen: ["serial://\(pair.a)"])
            let bob = try await SerialNode.start { $0.maximumQueuedBytesPerLine = 16 << 10 }
            _ = try await bob.transport.connect(to: alice.address(on: pair.b), persistent: true)
            try await exchange(alice, bob, tag: 1)

            // With socat stopped the line does not move: the pty's buffer fills, then bob's queue.
            kill(pair.process.processIdentifier, SIGSTOP)
            var accepted: [[UInt8]] = []
            var refused = false
            for index in 0..<1000 where !refused {
                let message = customMessage(100 + index, padding: 400)
                if try bob.transport.send([message], to: alice.nodeID) == .queueFull {
                    refused = true
                } else {
                    accepted.append(message)
                }
            }
            #expect(refused, "1000 messages of 406 bytes fit a 16 KiB queue on a stalled line")
            #expect(bob.events.writableEvents() == 0)
            await #expect(throws: TransportError.queueFull(alice.nodeID)) {
                try await bob.transport.sendAndFlush([customMessage(0, padding: 400)], to: alice.nodeID)
            }

            kill(pair.process.processIdentifier, SIGCONT)
            try await waitUntil(".writable once the line moves") { bob.events.writableEvents() >= 1 }
            try await waitUntil("every accepted message") { alice.events.messages(from: bob.nodeID).count >= accepted.count + 1 }
            #expect(Array(alice.events.messages(from: bob.nodeID).dropFirst()) == accepted)

            await alice.transport.shutdown()
            await bob.transport.shutdown()
        }
    }

    @Test func badDevicesGiveClearErrors() async throws {
        try await withPtyPair { pair in
            let bob = try await SerialNode.start()
            let alice = PrivateKey.generate().publicKey
            func failure(_ address: String, from node: SerialNode? = nil) async -> String? {
                do {
                    _ = try await (node ?? bob).transport.connect(to: try PeerAddress(parsing: address), persistent: false)
                    return nil
                } catch {
                    return (error as? TransportError)?.description
                }
            }
            let missing = await failure("serial://\(alice.hex)@/dev/lnp-no-such-tty?baud=9600")
            #expect(missing?.contains("there is no device at /dev/lnp-no-such-tty") == true)
            let regularFile = pair.directory + "/not-a-tty"
            _ = FileManager.default.createFile(atPath: regularFile, contents: Data([1, 2, 3]))
            let notATerminal = await failure("serial://\(alice.hex)@\(regularFile)")
            #expect(notATerminal?.contains("is not a serial device") == true)
            let oddBaud = await failure("serial://\(alice.hex)@\(pair.a)?baud=12345")
            #expect(oddBaud?.contains("12345 baud is not a rate") == true)

            // A line one node holds cannot be opened by another.
            let holder = try await SerialNode.start(listen: ["serial://\(pair.a)"])
            let busy = await failure("serial://\(alice.hex)@\(pair.a)")
            #expect(busy?.contains("already in use") == true)
            let second = SerialTransport(configuration: SerialTransportConfiguration(
                localKey: PrivateKey.generate(), localInit: InitMessage(features: SerialNode.features),
                listen: [try ListenAddress(parsing: "serial://\(pair.a)")])) { _ in }
            await #expect(throws: TransportError.self) { try await second.start() }

            // No one answers on the other end: a non-persistent dial gives up after its attempts.
            let lonely = try await SerialNode.start { $0.datagramPolicy.handshakeAttempts = 2 }
            let timedOut = await failure("serial://\(alice.hex)@\(pair.b)", from: lonely)
            #expect(timedOut?.contains("did not answer the handshake after 2 attempts") == true)
            await holder.transport.shutdown()
            await bob.transport.shutdown()
            await lonely.transport.shutdown()
        }
    }

    /// One message each way, and both arrive.
    private func exchange(_ alice: SerialNode, _ bob: SerialNode, tag: Int) async throws {
        let before = (alice.events.messages(from: bob.nodeID).count, bob.events.messages(from: alice.nodeID).count)
        try await waitUntil("both sides ready", timeout: .seconds(20)) {
            alice.transport.peers().contains { $0.nodeID == bob.nodeID } && bob.transport.peers().contains { $0.nodeID == alice.nodeID }
        }
        #expect(try bob.transport.send([customMessage(tag)], to: alice.nodeID) != .queueFull)
        #expect(try alice.transport.send([customMessage(tag + 1)], to: bob.nodeID) != .queueFull)
        try await waitUntil("an exchange (tag \(tag))") {
            alice.events.messages(from: bob.nodeID).count > before.0 && bob.events.messages(from: alice.nodeID).count > before.1
        }
        #expect(alice.events.messages(from: bob.nodeID).last == customMessage(tag))
        #expect(bob.events.messages(from: alice.nodeID).last == customMessage(tag + 1))
    }
}
