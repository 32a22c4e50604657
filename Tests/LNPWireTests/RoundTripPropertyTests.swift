import Testing

@testable import LNPWire

/// encode → decode → equal, over thousands of seeded random instances per type.
@Suite("Round-trip properties")
struct RoundTripPropertyTests {
    static let iterations = 2_000

    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case `init`, error, warning, ping, pong, unknownOdd
        var testDescription: String { rawValue }
    }

    @Test(arguments: Kind.allCases)
    func messageRoundTrip(kind: Kind) throws {
        var (random, seed) = SeededGenerator.forTest("messageRoundTrip.\(kind)")
        for iteration in 0..<Self.iterations {
            let kindIndex = try #require(Kind.allCases.firstIndex(of: kind))
            let message = random.message(kind: kindIndex)
            #expect(Self.matches(message, kind))
            let bytes = message.encode()
            let context = "seed \(seed), iteration \(iteration): \(kind)"
            #expect(bytes.count == message.encodedLength, "\(context)")
            #expect(throws: Never.self, "\(context)") { try message.checkEncodable() }
            let decoded = try #require(try? Message.decode(bytes), "\(context) does not decode: \(bytes.hex)")
            #expect(decoded == message, "\(context)")
            #expect(decoded.encode() == bytes, "\(context)")
        }
    }

    private static func matches(_ message: Message, _ kind: Kind) -> Bool {
        switch (message, kind) {
        case (.`init`, .`init`), (.error, .error), (.warning, .warning), (.ping, .ping), (.pong, .pong),
            (.unknownOdd, .unknownOdd):
            return true
        default:
            return false
        }
    }

    @Test func tlvStreamRoundTrip() throws {
        var (random, seed) = SeededGenerator.forTest("tlvStreamRoundTrip")
        for iteration in 0..<Self.iterations {
            let stream = random.tlvStream(maxCount: 8, oddOnly: false)
            let bytes = stream.encode()
            #expect(bytes.count == stream.encodedLength)
            let knownEven = Set(stream.records.map(\.type).filter { $0 & 1 == 0 })
            let decoded = try #require(
                try? TLVStream.decode(bytes, knownTypes: knownEven),
                "seed \(seed), iteration \(iteration): \(bytes.hex)")
            #expect(decoded == stream, "seed \(seed), iteration \(iteration)")
            for record in stream.records {
                #expect(decoded[record.type] == record.value)
            }
            // Without the even types known, any even record must make the stream fail.
            if !knownEven.isEmpty {
                #expect(throws: WireError.self, "seed \(seed), iteration \(iteration)") {
                    try TLVStream.decode(bytes, knownTypes: [])
                }
            }
        }
    }

    @Test func featureVectorRoundTrip() throws {
        var (random, seed) = SeededGenerator.forTest("featureVectorRoundTrip")
        for iteration in 0..<Self.iterations {
            let context = "seed \(seed), iteration \(iteration)"
            let bits = (0..<Int.random(in: 0...10, using: &random)).map { _ in Int.random(in: 0..<600, using: &random) }
            let vector = FeatureVector(bits: bits)
            #expect(vector.setBits == Array(Set(bits)).sorted(), "\(context)")
            #expect(vector.bytes.first != 0, "\(context): not minimal")
            let padded = [UInt8](repeating: 0, count: Int.random(in: 0...3, using: &random)) + vector.bytes
            #expect(FeatureVector(bytes: padded) == vector, "\(context)")
            let wrongBits = (0..<(vector.bytes.count * 8 + 8)).filter { vector.isSet($0) != bits.contains($0) }
            #expect(wrongBits.isEmpty, "\(context)")
            let other = random.featureVector()
            #expect(vector.union(other).setBits == Array(Set(vector.setBits + other.setBits)).sorted(), "\(context)")
            #expect(vector.intersection(other).setBits == vector.setBits.filter(other.isSet), "\(context)")
            // Through an init message, as the wire carries them.
            let message = Message.`init`(InitMessage(globalFeatures: other, features: vector))
            #expect(try Message.decode(message.encode()) == message, "\(context)")
        }
    }

    @Test func bigSizeRoundTripAndNonMinimalRejection() throws {
        var (random, seed) = SeededGenerator.forTest("bigSizeRoundTrip")
        for iteration in 0..<(Self.iterations * 5) {
            let value = random.interestingUInt64()
            let context = "seed \(seed), iteration \(iteration): \(value)"
            let bytes = BigSize.encode(value)
            #expect(bytes.count == BigSize.encodedLength(value), "\(context)")
            var reader = WireReader(bytes)
            #expect(try BigSize.decode(&reader) == value, "\(context)")
            #expect(reader.isAtEnd, "\(context)")
            // Every wider encoding of the same value is non-canonical.
            for (prefix, width) in [(UInt8(0xfd), 2), (0xfe, 4), (0xff, 8)] where width + 1 > bytes.count {
                guard width == 8 || value < UInt64(1) << UInt64(width * 8) else { continue }
                let wide = [prefix] + (0..<width).reversed().map { UInt8(truncatingIfNeeded: value >> UInt64($0 * 8)) }
                var wideReader = WireReader(wide)
                #expect(throws: WireError(.nonCanonicalBigSize, offset: 0, context: "bigsize"), "\(context)") {
                    try BigSize.decode(&wideReader)
                }
            }
            // Truncated integers of every width.
            var writer = WireWriter()
            writer.writeTruncatedU64(value)
            var truncatedReader = WireReader(writer.bytes)
            #expect(try truncatedReader.readTruncatedU64(length: writer.bytes.count) == value, "\(context)")
            if let narrow = UInt32(exactly: value) {
                var narrowWriter = WireWriter()
                narrowWriter.writeTruncatedU32(narrow)
                var narrowReader = WireReader(narrowWriter.bytes)
                #expect(try narrowReader.readTruncatedU32(length: narrowWriter.bytes.count) == narrow, "\(context)")
            }
        }
    }

    @Test func networkAddressRoundTrip() throws {
        var (random, seed) = SeededGenerator.forTest("networkAddressRoundTrip")
        for iteration in 0..<Self.iterations {
            let address = random.networkAddress()
            let bytes = address.encode()
            #expect(bytes.count == address.encodedLength)
            #expect(throws: Never.self) { try address.checkEncodable() }
            #expect(try NetworkAddress.decode(bytes) == address, "seed \(seed), iteration \(iteration): \(bytes.hex)")
        }
    }
}
