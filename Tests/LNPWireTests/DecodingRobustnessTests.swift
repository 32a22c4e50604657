import Testing

@testable import LNPWire

/// Decoding arbitrary bytes must never trap: a trap here crashes the test
/// process, which fails the run. Beyond not crashing, every outcome must be
/// coherent: errors point inside the input and describe themselves, and
/// anything accepted re-encodes to something that decodes to the same value.
@Suite("Decoding robustness")
struct DecodingRobustnessTests {
    /// Inputs per test; the four tests together decode 100,000 inputs.
    static let inputsPerTest = 25_000

    @Test func randomBytes() {
        var (random, seed) = SeededGenerator.forTest("randomBytes")
        var failures = 0
        for iteration in 0..<Self.inputsPerTest {
            let input = random.byteString(maxLength: 200)
            failures += Self.checkDecoding(input, "seed \(seed), iteration \(iteration)")
        }
        print("[randomBytes] \(failures) of \(Self.inputsPerTest) inputs rejected")
    }

    /// Random payloads behind the known types, where the structured parsers run.
    @Test func randomPayloadsOfKnownTypes() {
        var (random, seed) = SeededGenerator.forTest("randomPayloadsOfKnownTypes")
        let types = Array(MessageType.known).sorted()
        for iteration in 0..<Self.inputsPerTest {
            let type = types[Int.random(in: 0..<types.count, using: &random)]
            var input: [UInt8] = [UInt8(type >> 8), UInt8(type & 0xff)]
            // Small length fields make it likely that parsing gets past them.
            switch Int.random(in: 0..<3, using: &random) {
            case 0: input += random.byteString(maxLength: 120)
            case 1: input += [0, UInt8.random(in: 0...8, using: &random), 0, UInt8.random(in: 0...8, using: &random)]
                + random.byteString(maxLength: 60)
            default: input += [UInt8](repeating: 0, count: 32) + [0, UInt8.random(in: 0...4, using: &random)]
                + random.byteString(maxLength: 40)
            }
            _ = Self.checkDecoding(input, "seed \(seed), iteration \(iteration)")
        }
    }

    /// Every cut of a valid encoding: a cut inside the fixed fields must be
    /// reported as truncation, a cut elsewhere must fail or decode coherently.
    @Test func truncationsOfValidEncodings() {
        var (random, seed) = SeededGenerator.forTest("truncationsOfValidEncodings")
        var checked = 0
        var iteration = 0
        while checked < Self.inputsPerTest {
            let message = random.message()
            let bytes = message.encode()
            let cuts = bytes.count <= 64 ? Array(0..<bytes.count) : (0..<64).map { _ in Int.random(in: 0..<bytes.count, using: &random) }
            for cut in cuts {
                let prefix = Array(bytes[..<cut])
                let context = "seed \(seed), iteration \(iteration), cut \(cut) of \(bytes.hex)"
                _ = Self.checkDecoding(prefix, context)
                if cut < Self.fixedFieldsLength(of: message) {
                    do throws(WireError) {
                        _ = try Message.decode(prefix)
                        Issue.record("\(context): decoded a message cut inside its fixed fields")
                    } catch {
                        switch error.kind {
                        case .truncated, .messageTooShort: break
                        default: Issue.record("\(context): \(error)")
                        }
                    }
                }
                checked += 1
            }
            iteration += 1
        }
    }

    /// Valid encodings with a few bytes overwritten.
    @Test func mutationsOfValidEncodings() {
        var (random, seed) = SeededGenerator.forTest("mutationsOfValidEncodings")
        for iteration in 0..<Self.inputsPerTest {
            var bytes = random.message().encode()
            for _ in 0..<Int.random(in: 1...3, using: &random) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            _ = Self.checkDecoding(bytes, "seed \(seed), iteration \(iteration)")
        }
    }

    /// Runs every decoder over `input`; returns 1 if `Message.decode` rejected it.
    private static func checkDecoding(_ input: [UInt8], _ context: String) -> Int {
        var rejected = 0
        do throws(WireError) {
            let message = try Message.decode(input)
            let reencoded = message.encode()
            #expect(reencoded.count == message.encodedLength, "\(context)")
            let again = try Message.decode(reencoded)
            #expect(again == message, "\(context): \(input.hex)")
        } catch {
            expectCoherent(error, in: input, context)
            rejected = 1
        }
        do throws(WireError) {
            let stream = try TLVStream.decode(input, knownTypes: [2, 4])
            #expect(stream.encode() == input, "\(context): TLV stream re-encoding")
        } catch {
            expectCoherent(error, in: input, context)
        }
        do throws(WireError) {
            let address = try NetworkAddress.decode(input)
            #expect(address.encode() == input, "\(context): address re-encoding")
        } catch {
            expectCoherent(error, in: input, context)
        }
        do throws(WireError) {
            try FeatureVector(bytes: input).validate(known: Feature.bits(of: Feature.all))
        } catch {
            #expect(error.offset >= 0 && error.offset < input.count, "\(context): \(error)")
        }
        return rejected
    }

    private static func expectCoherent(_ error: WireError, in input: [UInt8], _ context: String) {
        if !(0...input.count).contains(error.offset) || error.description.isEmpty || error.context.isEmpty {
            Issue.record("\(context): incoherent \(error) for \(input.count)-byte input \(input.hex)")
        }
    }

    /// Bytes before the first variable-length region whose end the decoder cannot
    /// know from a prefix alone (TLV extensions and opaque payloads).
    private static func fixedFieldsLength(of message: Message) -> Int {
        switch message {
        case let .`init`(body): return 2 + 4 + body.globalFeatures.bytes.count + body.features.bytes.count
        case let .error(body): return 2 + 34 + body.data.count
        case let .warning(body): return 2 + 34 + body.data.count
        case let .ping(body): return 2 + 4 + body.ignored.count
        case let .pong(body): return 2 + 2 + body.ignored.count
        case .unknownOdd: return 2
        }
    }
}
