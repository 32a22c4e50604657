import LNPCrypto
import LNPSession
import Testing

@Suite struct LineFramingTests {
    static func randomBytes(_ count: Int, using random: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    /// Feeds `stream` to `decoder` in random pieces of 1 to `maximumChunk` bytes.
    static func feed(_ stream: [UInt8], to decoder: inout LineFrameDecoder, maximumChunk: Int, using random: inout SplitMix64) -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        var offset = 0
        while offset < stream.count {
            let end = min(stream.count, offset + Int.random(in: 1...maximumChunk, using: &random))
            datagrams += decoder.append(stream[offset..<end])
            offset = end
        }
        return datagrams
    }

    @Test func crc32MatchesTheStandardCheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }

    @Test func framesSurviveAnyChunking() {
        var random = SplitMix64(state: 21)
        // Edge cases of COBS: zeros everywhere, none at all, runs of exactly 254 and 255 non-zero bytes.
        var datagrams: [[UInt8]] = [[0], [0, 0, 0], [1], [UInt8](repeating: 0xFF, count: 254), [UInt8](repeating: 7, count: 255),
                                    [UInt8](repeating: 9, count: 508), [UInt8](repeating: 0, count: 1_200)]
        for _ in 0..<500 { datagrams.append(Self.randomBytes(Int.random(in: 1...1_200, using: &random), using: &random)) }
        var stream: [UInt8] = []
        for datagram in datagrams {
            let before = stream.count
            LineFraming.encode(datagram, appendingTo: &stream)
            let frame = stream[before...]
            #expect(frame.last == 0 && !frame.dropLast().contains(0), "a frame holds a 0x00 before its end")
            #expect(frame.count <= LineFraming.maximumEncodedSize(forDatagramLength: datagram.count))
            if datagram.count <= 249 { #expect(frame.count == datagram.count + 6) }
        }
        for maximumChunk in [1, 7, 300, 100_000] {
            var decoder = LineFrameDecoder(maximumDatagramSize: 1_200)
            #expect(Self.feed(stream, to: &decoder, maximumChunk: maximumChunk, using: &random) == datagrams)
            #expect(decoder.framesDropped == 0 && decoder.bufferedByteCount == 0)
        }
    }

    @Test func noiseYieldsOnlyRejectedFramesInBoundedMemory() {
        var random = SplitMix64(state: 22)
        var decoder = LineFrameDecoder(maximumDatagramSize: 256)
        let noise = Self.randomBytes(1 << 20, using: &random)
        var offset = 0
        var decoded = 0
        while offset < noise.count {
            let end = min(noise.count, offset + Int.random(in: 1...512, using: &random))
            decoded += decoder.append(noise[offset..<end]).count
            #expect(decoder.bufferedByteCount <= decoder.maximumEncodedFrameLength)
            offset = end
        }
        #expect(decoded == 0)
        #expect(decoder.framesDropped > 3_000)
        #expect(decoder.dropped(.checksumMismatch) > 0 && decoder.dropped(.badStuffing) > 0)

        // A line that never sends a delimiter: memory stays at one frame, then the next frame decodes.
        var stuck = LineFrameDecoder(maximumDatagramSize: 256)
        #expect(stuck.append([UInt8](repeating: 0x41, count: 100_000)).isEmpty)
        #expect(stuck.bufferedByteCount == 0 && stuck.dropped(.oversized) == 1)
        let datagram = Self.randomBytes(200, using: &random)
        #expect(stuck.append([0] + LineFraming.encode(datagram)) == [datagram])
    }

    @Test func cleanFramesAreRecoveredBetweenNoiseBurstsAndDamagedOnesNeverPass() {
        var random = SplitMix64(state: 23)
        var stream: [UInt8] = []
        var expected: [[UInt8]] = []
        var damaged = 0
        for _ in 0..<3_000 {
            let datagram = Self.randomBytes(Int.random(in: 1...300, using: &random), using: &random)
            var frame = LineFraming.encode(datagram)
            switch Int.random(in: 0..<10, using: &random) {
            case 0:
                // A burst of noise where the frame should begin: it runs into the frame, which is lost.
                stream += Self.randomBytes(Int.random(in: 1...40, using: &random), using: &random).map { $0 == 0 ? 1 : $0 }
                damaged += 1
            case 1:
                // A flipped bit inside the frame (not its delimiter).
                let bit = Int.random(in: 0..<((frame.count - 1) * 8), using: &random)
                frame[bit / 8] ^= 1 << (bit % 8)
                damaged += 1
            case 2:
                // Noise that contains a delimiter of its own before the frame: the frame survives.
                stream += Self.randomBytes(Int.random(in: 1...40, using: &random), using: &random) + [0]
                expected.append(datagram)
            default:
                expected.append(datagram)
            }
            stream += frame
        }
        var decoder = LineFrameDecoder(maximumDatagramSize: 300)
        let decoded = Self.feed(stream, to: &decoder, maximumChunk: 64, using: &random)
        #expect(decoded == expected)
        #expect(decoder.framesDropped >= damaged)
    }

    @Test func theSameDatagramSessionRunsOverANoisySerialLine() throws {
        var harness = try DatagramHarness(policy: .serial(), seed: 0xD47A_600D)
        var random = SplitMix64(state: 24)
        var decoders: [LinkSide: LineFrameDecoder] = [.initiator: .init(maximumDatagramSize: 512), .responder: .init(maximumDatagramSize: 512)]
        var line: [LinkSide: [UInt8]] = [.initiator: [], .responder: []]
        var delivered: [LinkSide: [[UInt8]]] = [.initiator: [], .responder: []]
        var established: Set<LinkSide> = []

        func handle(_ actions: [DatagramSession.Action], from side: LinkSide) {
            for action in actions {
                switch action {
                case let .send(datagram):
                    var frame = LineFraming.encode(datagram)
                    // One frame in twenty gets a flipped bit on the way.
                    if Int.random(in: 0..<20, using: &random) == 0 {
                        let bit = Int.random(in: 0..<(frame.count * 8), using: &random)
                        frame[bit / 8] ^= 1 << (bit % 8)
                    }
                    line[side.other, default: []] += frame
                case let .deliver(message): delivered[side, default: []].append(message)
                case .established: established.insert(side)
                default: break
                }
            }
        }
        func step() {
            harness.clock.advance(by: .milliseconds(10))
            for side in [LinkSide.initiator, .responder] {
                // About 115,200 baud: 1,152 bytes per 10 ms, in random pieces, with a noise burst now and then.
                var bytes = Array(line[side, default: []].prefix(1_152))
                line[side, default: []].removeFirst(bytes.count)
                if Int.random(in: 0..<50, using: &random) == 0 { bytes += Self.randomBytes(Int.random(in: 1...64, using: &random), using: &random) }
                for datagram in Self.feed(bytes, to: &decoders[side]!, maximumChunk: 100, using: &random) {
                    handle(harness[side].receive(datagram, now: harness.clock.now), from: side)
                }
                if let deadline = harness[side].nextDeadline, deadline <= harness.clock.now {
                    handle(harness[side].timerFired(now: harness.clock.now), from: side)
                }
            }
        }

        handle(harness.initiator.start(now: harness.clock.now), from: .initiator)
        var steps = 0
        while established.count < 2, steps < 6_000 { step(); steps += 1 }
        #expect(established.count == 2, "no handshake over the serial line")

        var index: UInt32 = 0
        while index < 300 {
            let side: LinkSide = index % 3 == 2 ? .responder : .initiator
            let message = NumberedMessage.make(index, length: Int.random(in: 8...2_000, using: &random))
            if let datagrams = try? harness[side].send(message, now: harness.clock.now) {
                handle(datagrams.map(DatagramSession.Action.send), from: side)
                index += 1
            }
            step()
        }
        for _ in 0..<3_000 { step() }

        var seen: Set<UInt32> = []
        for side in [LinkSide.initiator, .responder] {
            for message in delivered[side, default: []] {
                let verified = NumberedMessage.verify(message)
                #expect(verified != nil, "a damaged message got through")
                if let verified { #expect(seen.insert(verified).inserted) }
            }
        }
        #expect(seen.count > 200, "only \(seen.count) of 300 messages crossed the line")
        #expect(decoders.values.contains { $0.framesDropped > 0 })
    }
}
