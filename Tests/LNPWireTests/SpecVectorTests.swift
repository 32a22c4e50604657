import Foundation
import Testing

@testable import LNPWire

// MARK: - Fixture shapes

struct BigSizeFixture: Decodable {
    struct Vector: Decodable {
        let name: String
        let valueString: String
        let bytes: String
        let expectedError: String?

        enum CodingKeys: String, CodingKey {
            case name, bytes
            case valueString = "value_str"
            case expectedError = "exp_error"
        }
    }

    let decoding: [Vector]
    let encoding: [Vector]
}

struct TLVFixture: Decodable {
    struct Field: Decodable {
        let type: String
        let name: String
    }

    struct RecordType: Decodable {
        let type: UInt64
        let name: String
        let fields: [Field]
    }

    struct Vector: Decodable {
        let namespace: String
        let stream: String
        let streamParts: [String]
        let reason: String?
        let explanation: String?
        let values: [String: [String: FixtureScalar]]?

        enum CodingKeys: String, CodingKey {
            case namespace, stream, reason, explanation, values
            case streamParts = "stream_parts"
        }
    }

    let namespaces: [String: [RecordType]]
    let decodingFailures: [Vector]
    let decodingSuccesses: [Vector]
    let streamDecodingFailures: [Vector]
    let streamRules: [String]

    enum CodingKeys: String, CodingKey {
        case namespaces
        case decodingFailures = "decoding_failures"
        case decodingSuccesses = "decoding_successes"
        case streamDecodingFailures = "stream_decoding_failures"
        case streamRules = "stream_rules"
    }
}

struct InitFixture: Decodable {
    struct Vector: Decodable {
        let msg: String
        let description: String
    }

    let baseInit: String
    let valid: [Vector]
    let invalid: [Vector]

    enum CodingKeys: String, CodingKey {
        case valid, invalid
        case baseInit = "base_init"
    }
}

// MARK: - BOLT-1 Appendix A: BigSize

@Suite("BOLT-1 Appendix A: BigSize vectors")
struct BigSizeVectorTests {
    let fixture: BigSizeFixture

    init() throws {
        fixture = try Fixtures.load("bolt01-bigsize", as: BigSizeFixture.self)
    }

    @Test func decodingVectors() throws {
        try #require(!fixture.decoding.isEmpty, "bolt01-bigsize.json has no decoding vectors")
        try #require(fixture.decoding.contains { $0.expectedError != nil }, "no failing decoding vectors")
        try #require(fixture.decoding.contains { $0.expectedError == nil }, "no succeeding decoding vectors")
        for vector in fixture.decoding {
            var reader = WireReader(try [UInt8](hex: vector.bytes))
            let result = Result { () throws(WireError) -> UInt64 in try BigSize.decode(&reader) }
            if let expectedError = vector.expectedError {
                guard case let .failure(error) = result else {
                    Issue.record("\(vector.name): decoded \(result) but expected \(expectedError)")
                    continue
                }
                // The Go reference distinguishes non-canonical values from short reads.
                if expectedError.contains("canonical") {
                    #expect(error.kind == .nonCanonicalBigSize, "\(vector.name): \(error)")
                } else {
                    guard case .truncated = error.kind else {
                        Issue.record("\(vector.name): expected a truncation, got \(error)")
                        continue
                    }
                }
            } else {
                let expected = try #require(UInt64(vector.valueString))
                #expect(try result.get() == expected, "\(vector.name)")
                #expect(reader.isAtEnd, "\(vector.name): not all bytes consumed")
            }
        }
    }

    @Test func encodingVectors() throws {
        try #require(!fixture.encoding.isEmpty, "bolt01-bigsize.json has no encoding vectors")
        for vector in fixture.encoding {
            let value = try #require(UInt64(vector.valueString))
            let expected = try [UInt8](hex: vector.bytes)
            #expect(BigSize.encode(value) == expected, "\(vector.name)")
            #expect(BigSize.encodedLength(value) == expected.count, "\(vector.name)")
            var writer = WireWriter()
            writer.writeBigSize(value)
            #expect(writer.bytes == expected, "\(vector.name)")
        }
    }
}

// MARK: - BOLT-1 Appendix B: TLV streams

@Suite("BOLT-1 Appendix B: TLV vectors")
struct TLVVectorTests {
    let fixture: TLVFixture

    init() throws {
        fixture = try Fixtures.load("bolt01-tlv", as: TLVFixture.self)
    }

    /// Guards against the test helper drifting from the fixture's namespace description.
    @Test func namespaceHelpersMatchFixture() throws {
        for namespace in TLVTestNamespace.allCases {
            let declared = try #require(fixture.namespaces[namespace.rawValue], "fixture lacks namespace \(namespace)")
            try #require(!declared.isEmpty)
            #expect(Set(declared.map(\.type)) == namespace.knownTypes, "\(namespace) types")
            for record in declared {
                let helper = try #require(namespace.recordNames[record.type])
                #expect(helper.name == record.name, "\(namespace) type \(record.type)")
                #expect(helper.fields == record.fields.map(\.name), "\(namespace) \(record.name) fields")
            }
        }
    }

    /// The n1 `point` check is real curve arithmetic, not just a prefix test.
    @Test func pointCheckHelper() throws {
        let generatorX = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        #expect(Secp256k1PointCheck.isValidCompressedPoint(try [UInt8](hex: "02" + generatorX)))
        #expect(Secp256k1PointCheck.isValidCompressedPoint(try [UInt8](hex: "03" + generatorX)))
        #expect(!Secp256k1PointCheck.isValidCompressedPoint(try [UInt8](hex: "04" + generatorX)))
        // x = 0 and x = 5: x³ + 7 is not a square mod p, so no such point exists.
        #expect(!Secp256k1PointCheck.isValidCompressedPoint(try [UInt8](hex: "02" + String(repeating: "00", count: 32))))
        #expect(!Secp256k1PointCheck.isValidCompressedPoint(try [UInt8](hex: "02" + String(repeating: "00", count: 31) + "05")))
        #expect(Secp256k1PointCheck.isValidCompressedPoint(try [UInt8](hex: "02" + String(repeating: "00", count: 31) + "01")))
        // x ≥ p
        #expect(!Secp256k1PointCheck.isValidCompressedPoint(try [UInt8](hex: "02" + String(repeating: "ff", count: 32))))
    }

    @Test func decodingFailures() throws {
        try #require(!fixture.decodingFailures.isEmpty, "bolt01-tlv.json has no decoding_failures")
        try expectFailures(fixture.decodingFailures)
    }

    @Test func streamDecodingFailures() throws {
        try #require(!fixture.streamDecodingFailures.isEmpty, "bolt01-tlv.json has no stream_decoding_failures")
        try expectFailures(fixture.streamDecodingFailures)
    }

    private func expectFailures(_ vectors: [TLVFixture.Vector]) throws {
        for vector in vectors {
            let bytes = try [UInt8](hex: vector.stream)
            #expect(vector.streamParts.joined() == vector.stream, "stream_parts of \(vector.stream)")
            let reason = try #require(vector.reason, "failure vector \(vector.stream) has no reason")
            let namespaces = try #require(TLVTestNamespace.applicable(to: vector.namespace), "namespace \(vector.namespace)")
            for namespace in namespaces {
                do throws(WireError) {
                    let values = try namespace.decode(bytes)
                    Issue.record("\(namespace) accepted \(vector.stream) (\(reason)) as \(values)")
                } catch {
                    guard let accepted = TLVFailureReason.accepts(reason: reason, kind: error.kind) else {
                        Issue.record("no expected error kind known for reason '\(reason)'")
                        continue
                    }
                    #expect(accepted, "\(namespace) \(vector.stream): '\(reason)' but got \(error)")
                    #expect(!error.description.isEmpty)
                }
            }
            // "any" means the stream is broken at the generic TLV level.
            if vector.namespace == "any" {
                #expect(throws: WireError.self, "generic \(vector.stream)") {
                    try TLVStream.decode(bytes, knownTypes: [])
                }
            }
        }
    }

    @Test func decodingSuccesses() throws {
        try #require(!fixture.decodingSuccesses.isEmpty, "bolt01-tlv.json has no decoding_successes")
        for vector in fixture.decodingSuccesses {
            let bytes = try [UInt8](hex: vector.stream)
            #expect(vector.streamParts.joined() == vector.stream, "stream_parts of \(vector.stream)")
            let namespaces = try #require(TLVTestNamespace.applicable(to: vector.namespace), "namespace \(vector.namespace)")
            for namespace in namespaces {
                let values = try namespace.decode(bytes)
                #expect(values == (vector.values ?? [:]), "\(namespace) \(vector.stream)")
                // Decoding keeps every record, so re-encoding is byte-identical.
                let stream = try TLVStream.decode(bytes, knownTypes: namespace.knownTypes)
                #expect(stream.encode() == bytes, "\(namespace) \(vector.stream) re-encoding")
                #expect(stream.encodedLength == bytes.count)
            }
        }
    }

    /// `stream_rules`: valid ‖ invalid must fail; a valid stream followed by a valid
    /// stream of strictly higher types must succeed (with both streams' values).
    @Test func streamConcatenationRules() throws {
        try #require(fixture.streamRules.count == 2, "bolt01-tlv.json stream_rules changed: \(fixture.streamRules)")
        let invalid = fixture.decodingFailures + fixture.streamDecodingFailures
        try #require(!invalid.isEmpty && !fixture.decodingSuccesses.isEmpty)
        var checkedFailures = 0
        var checkedSuccesses = 0
        for namespace in TLVTestNamespace.allCases {
            let validStreams = try fixture.decodingSuccesses
                .filter { TLVTestNamespace.applicable(to: $0.namespace)?.contains(namespace) == true }
                .map { try [UInt8](hex: $0.stream) }
            let invalidStreams = try invalid
                .filter { TLVTestNamespace.applicable(to: $0.namespace)?.contains(namespace) == true }
                .map { try [UInt8](hex: $0.stream) }
            for prefix in validStreams {
                for suffix in invalidStreams {
                    #expect(throws: WireError.self, "\(namespace): \(prefix.hex) ‖ \(suffix.hex)") {
                        try namespace.decode(prefix + suffix)
                    }
                    checkedFailures += 1
                }
                for suffix in validStreams {
                    let lower = try TLVStream.decode(prefix, knownTypes: namespace.knownTypes)
                    let higher = try TLVStream.decode(suffix, knownTypes: namespace.knownTypes)
                    guard let last = lower.records.last?.type, let first = higher.records.first?.type else {
                        continue
                    }
                    guard last < first else { continue }
                    let combined = try namespace.decode(prefix + suffix)
                    let expected = try namespace.decode(prefix).merging(try namespace.decode(suffix)) { a, _ in a }
                    #expect(combined == expected, "\(namespace): \(prefix.hex) ‖ \(suffix.hex)")
                    checkedSuccesses += 1
                }
            }
        }
        #expect(checkedFailures > 100)
        #expect(checkedSuccesses > 10)
    }
}

// MARK: - BOLT-1 Appendix C: message extension

@Suite("BOLT-1 Appendix C: init extension vectors")
struct InitVectorTests {
    let fixture: InitFixture

    init() throws {
        fixture = try Fixtures.load("bolt01-init", as: InitFixture.self)
    }

    @Test func baseInitDecodes() throws {
        let message = try Message.decode(try [UInt8](hex: fixture.baseInit))
        #expect(message == .`init`(InitMessage(features: FeatureVector())))
    }

    @Test func validMessages() throws {
        try #require(!fixture.valid.isEmpty, "bolt01-init.json has no valid vectors")
        for vector in fixture.valid {
            let bytes = try [UInt8](hex: vector.msg)
            let message = try Message.decode(bytes)
            guard case let .`init`(initMessage) = message else {
                Issue.record("\(vector.description): decoded as \(message)")
                continue
            }
            #expect(initMessage.features.isEmpty && initMessage.globalFeatures.isEmpty, "\(vector.description)")
            #expect(initMessage.extraTLVs.allSatisfy { $0.isOdd }, "\(vector.description)")
            // Unknown odd records must survive so signatures over re-encoded messages still verify.
            #expect(message.encode() == bytes, "\(vector.description): re-encoding")
            #expect(throws: Never.self) { try message.checkEncodable() }
        }
        let twoOdd = try Message.decode(try [UInt8](hex: "001000000000c9012acb0104"))
        #expect(twoOdd == .`init`(InitMessage(
            features: FeatureVector(),
            extraTLVs: [TLVRecord(type: 0xc9, value: [0x2a]), TLVRecord(type: 0xcb, value: [0x04])])))
    }

    @Test func invalidMessages() throws {
        try #require(!fixture.invalid.isEmpty, "bolt01-init.json has no invalid vectors")
        for vector in fixture.invalid {
            let bytes = try [UInt8](hex: vector.msg)
            do throws(WireError) {
                let message = try Message.decode(bytes)
                Issue.record("\(vector.description): accepted as \(message)")
            } catch {
                #expect(error.context.hasPrefix("init.init_tlvs"), "\(vector.description): \(error)")
                switch error.kind {
                case .truncated, .unknownEvenTLVType, .tlvTypesNotIncreasing: break
                default: Issue.record("\(vector.description): unexpected \(error)")
                }
            }
        }
    }
}
