import LNPCrypto
import LNPSession
import LNPTestSupport
import LNPTransport
import LNPTransportTCP
import LNPWire
import NIOCore
import Testing

enum Misbehaviour: String, CaseIterable, Sendable {
    case garbageInsteadOfActOne
    case truncatedAct
    case badMAC
    case oversizedFrame
    case unknownEvenType
    case pingFlood
}

/// Serialized: the short handshake timeout of one case must not be eaten by the CPU the
/// other cases use.
@Suite(.serialized) struct MisbehavingPeerTests {
    /// Short, for the truncated act only; every other case uses the default 10 s, so the
    /// well-behaved peer's handshake cannot time out on a busy machine.
    static let shortHandshakeTimeout: Duration = .seconds(1)
    static let maximumMessageLength = 4096
    static let pingLimit = 10

    /// A raw socket breaks one rule; the node drops it, and a well-behaved peer on the
    /// same node keeps exchanging messages before and after.
    @Test(arguments: Misbehaviour.allCases)
    func misbehavingPeerIsDroppedWhileOthersCarryOn(_ misbehaviour: Misbehaviour) async throws {
        try await withEventLoopGroup { group in
            let node = try await Node.start(group: group) { configuration in
                if misbehaviour == .truncatedAct { configuration.handshakeTimeout = Self.shortHandshakeTimeout }
                configuration.maximumMessageLength = Self.maximumMessageLength
                configuration.maximumPingsPerWindow = Self.pingLimit
            }
            let good = try await Node.start(listen: [], group: group)
            _ = try await good.transport.connect(to: node.address(), persistent: false)
            try await expectExchange(node, good, tag: 0)

            let started = ContinuousClock.now
            let raw = try await RawPeer.connect(port: node.port, group: group)
            switch misbehaviour {
            case .garbageInsteadOfActOne:
                // Longer than act one, so it is judged at once (its first byte is no version 0).
                try await raw.write(Array("GET / HTTP/1.1\r\nHost: lnp.example\r\nAccept: */*\r\nUser-Agent: test\r\n\r\n".utf8))
            case .truncatedAct:
                try await raw.write([0] + [UInt8](repeating: 7, count: 20))
            case .badMAC:
                try await raw.handshake(with: node.nodeID)
                try await raw.send(customMessage(1), corruptingLastByte: true)
            case .oversizedFrame:
                try await raw.handshake(with: node.nodeID)
                try await raw.send(customMessage(1, padding: Self.maximumMessageLength))
            case .unknownEvenType:
                try await raw.handshake(with: node.nodeID)
                try await raw.send([0, 100, 1, 2, 3])
            case .pingFlood:
                try await raw.handshake(with: node.nodeID)
                // One write: the node may close the socket before a second one.
                var frames: [UInt8] = []
                for _ in 0..<(Self.pingLimit * 5) {
                    frames += try raw.encryptFrame(Message.ping(Ping(numPongBytes: 1)).encode())
                }
                try await raw.write(frames)
            }
            #expect(try await raw.waitUntilClosed(), "the node must drop a peer sending \(misbehaviour)")

            switch misbehaviour {
            case .truncatedAct:
                #expect(ContinuousClock.now - started >= Self.shortHandshakeTimeout)
            case .unknownEvenType:
                let warnings = raw.messages.compactMap { message -> WarningMessage? in
                    if case let .warning(warning)? = try? Message.decode(message) { warning } else { nil }
                }
                #expect(warnings.map(\.printableData) == ["unknown even message type 100 (it's OK to be odd, not even)"])
            case .pingFlood:
                let pongs = raw.messages.filter { $0.starts(with: [0, 19]) }
                #expect(pongs.count == Self.pingLimit)
                #expect(raw.messages.last?.starts(with: [0, 1]) == true, "a warning comes last")
            default:
                break
            }
            // The socket closes a moment before the node forgets the session.
            try await waitUntil("the node to forget the dropped peer") { node.transport.peers().map(\.nodeID) == [good.nodeID] }
            try await expectExchange(node, good, tag: 10)

            await raw.close()
            await good.transport.shutdown()
            await node.transport.shutdown()
        }
    }

    @Test func peerThatNeverReadsGetsQueueFullAndMemoryStaysBounded() async throws {
        try await withEventLoopGroup { group in
            let limit = 256 << 10
            let node = try await Node.start(group: group) { $0.maximumQueuedBytesPerPeer = limit }
            let raw = try await RawPeer.connect(port: node.port, group: group)
            try await raw.handshake(with: node.nodeID)
            let rawID = raw.key.publicKey
            try await waitUntil("the node to register the raw peer") { node.transport.peers().count == 1 }
            try await raw.channel.setOption(.autoRead, value: false).get()

            // Offer 16 KiB messages until the queue stays full: first the kernel's socket
            // buffers fill (a few MiB on loopback), then our queue.
            let message = customMessage(0, padding: 16 << 10)
            let frameSize = message.count + 18 + 16
            var accepted = 0
            var stuck = false
            while !stuck {
                let writable = node.events.writableEvents(for: rawID)
                switch try node.transport.send([message], to: rawID) {
                case let .written(bytes):
                    accepted += bytes
                case .queueFull:
                    do {
                        try await waitUntil("the queue to drain", timeout: .milliseconds(300)) {
                            node.events.writableEvents(for: rawID) > writable
                        }
                    } catch is TimedOut {
                        stuck = true
                    }
                }
                #expect(accepted < 256 << 20, "the kernel cannot absorb this much")
                if accepted >= 256 << 20 { return }
            }
            #expect(try #require(node.transport.queuedBytes(for: rawID)) <= limit + frameSize)

            let before = try #require(residentBytes())
            var refused = 0
            for _ in 0..<40_000 {
                if try node.transport.send([message], to: rawID) == .queueFull { refused += 1 }
            }
            let after = try #require(residentBytes())
            // The kernel may still take a few frames as it settles; our queue takes none.
            #expect(refused > 40_000 - 64)
            // The refused sends offered 640 MiB; an unbounded queue would hold it all. The
            // bound is loose because other tests share this process's memory.
            #expect(after - before < 128 << 20, "resident memory grew by \((after - before) >> 20) MiB")
            #expect(try #require(node.transport.queuedBytes(for: rawID)) <= limit + frameSize)

            // Reading again drains the queue, and the node says so.
            let writable = node.events.writableEvents(for: rawID)
            try await raw.channel.setOption(.autoRead, value: true).get()
            raw.channel.read()
            try await waitUntil("the .writable event") { node.events.writableEvents(for: rawID) > writable }
            #expect(try node.transport.send([message], to: rawID) != .queueFull)

            await raw.close()
            await node.transport.shutdown()
        }
    }
}

extension RawPeer {
    /// Sends one frame, optionally with its last byte (inside the body's tag) flipped.
    func send(_ message: [UInt8], corruptingLastByte: Bool) async throws {
        guard corruptingLastByte else { return try await send(message) }
        var frame = try encryptFrame(message)
        frame[frame.count - 1] ^= 0x01
        try await write(frame)
    }
}
