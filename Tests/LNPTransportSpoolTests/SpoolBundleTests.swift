import LNPCrypto
import LNPSession
@testable import LNPTransportSpool
import Testing

/// The bundle format alone: encoding, and every way a file can be refused before use.
@Suite struct SpoolBundleTests {
    let recipient = PrivateKey.generate()
    let sender = PrivateKey.generate()

    func envelopes(_ count: Int, body: Int = 20) throws -> [[UInt8]] {
        try (0..<count).map { _ in try SealedEnvelope.seal(payload: SecureRandom.bytes(body), to: recipient.publicKey, from: sender) }
    }

    @Test func roundTripFindsEveryEnvelope() throws {
        let sealed = try envelopes(5)
        let id = SpoolBundleID.random()
        let bytes = SpoolBundle.encode(id: id, envelopes: sealed)
        #expect(bytes.count == SpoolBundle.headerLength + sealed.reduce(0) { $0 + $1.count } + SpoolBundle.checksumLength)
        let parsed = try SpoolBundle.parse(bytes)
        #expect(parsed.id == id)
        #expect(parsed.envelopeRanges.map { Array(bytes[$0]) } == sealed)
    }

    @Test func everyTruncationIsRefused() throws {
        let bytes = SpoolBundle.encode(id: .random(), envelopes: try envelopes(3))
        for length in 0..<bytes.count {
            #expect(throws: SpoolBundleError.self, "length \(length)") { try SpoolBundle.parse(Array(bytes.prefix(length))) }
        }
        // Cut inside the last envelope: said to be cut short, not merely damaged.
        #expect(throws: SpoolBundleError.envelopesCutShort(declared: 3, complete: 2)) {
            try SpoolBundle.parse(Array(bytes.prefix(bytes.count - 40)))
        }
    }

    @Test func everyByteAlterationIsRefused() throws {
        let bytes = SpoolBundle.encode(id: .random(), envelopes: try envelopes(2))
        for index in bytes.indices {
            var altered = bytes
            altered[index] ^= 0x20
            #expect(throws: SpoolBundleError.self, "byte \(index)") { try SpoolBundle.parse(altered) }
        }
        var checksum = bytes
        checksum[checksum.count - 1] ^= 1
        #expect(throws: SpoolBundleError.checksumMismatch) { try SpoolBundle.parse(checksum) }
    }

    @Test func headerFieldsAreChecked() throws {
        let bytes = SpoolBundle.encode(id: .random(), envelopes: try envelopes(1))
        #expect(throws: SpoolBundleError.notABundle) { try SpoolBundle.parse(Array("hello, world".utf8)) }
        var version = bytes
        version[8] = 2
        #expect(throws: SpoolBundleError.unknownVersion(2)) { try SpoolBundle.parse(version) }
        // A count no file within the size limit can hold, refused from the header alone.
        var count = Array(bytes.prefix(SpoolBundle.headerLength))
        count[25...28] = [0xff, 0xff, 0xff, 0xff]
        #expect(throws: SpoolBundleError.tooManyEnvelopes(count: 0xffff_ffff, limit: SpoolBundle.maximumEnvelopeCount)) {
            try SpoolBundle.header(count[...])
        }
        #expect(throws: SpoolBundleError.noEnvelopes) { try SpoolBundle.parse(SpoolBundle.encode(id: .random(), envelopes: [])) }
    }

    @Test func structureIsCheckedEvenWithAValidChecksum() throws {
        // A writer that lies about the count, or pads, is refused though its checksum matches.
        let sealed = try envelopes(2)
        var lying = SpoolBundle.encode(id: .random(), envelopes: sealed)
        lying.removeLast(SpoolBundle.checksumLength)
        lying[28] = 1
        lying += Hashing.sha256(lying)
        #expect(throws: SpoolBundleError.bytesAfterEnvelopes(count: sealed[1].count)) { try SpoolBundle.parse(lying) }

        var overlong = SpoolBundle.encode(id: .random(), envelopes: sealed)
        overlong.removeLast(SpoolBundle.checksumLength)
        overlong[28] = 3
        overlong += Hashing.sha256(overlong)
        #expect(throws: SpoolBundleError.envelopesCutShort(declared: 3, complete: 2)) { try SpoolBundle.parse(overlong) }

        // An envelope header declaring more than the reader's envelope limit.
        var big = Array(SpoolBundle.encode(id: .random(), envelopes: sealed).dropLast(SpoolBundle.checksumLength))
        big[SpoolBundle.headerLength + 1...SpoolBundle.headerLength + 4] = [0x7f, 0xff, 0xff, 0xff]
        big += Hashing.sha256(big)
        do {
            _ = try SpoolBundle.parse(big)
            Issue.record("an envelope over the limit was accepted")
        } catch {
            guard case .badEnvelopeHeader(index: 0, .tooLarge) = error else {
                Issue.record("an envelope over the limit gave \(error)")
                return
            }
        }
    }

    @Test func sizeLimitIsCheckedFirst() throws {
        let bytes = SpoolBundle.encode(id: .random(), envelopes: try envelopes(4, body: 200))
        #expect(throws: SpoolBundleError.tooLarge(length: bytes.count, limit: 500)) { try SpoolBundle.parse(bytes, maximumLength: 500) }
    }

    @Test func everyErrorHasASentence() {
        let errors: [SpoolBundleError] = [.tooLarge(length: 2, limit: 1), .notABundle, .unknownVersion(9), .truncated(length: 1, minimum: 61),
                                          .envelopesCutShort(declared: 2, complete: 1), .checksumMismatch, .noEnvelopes,
                                          .tooManyEnvelopes(count: 9, limit: 1), .badEnvelopeHeader(index: 0, .unknownVersion(3)),
                                          .bytesAfterEnvelopes(count: 3), .badBundleID(length: 2)]
        #expect(Set(errors.map(\.description)).count == errors.count)
        #expect(errors.allSatisfy { !$0.description.isEmpty && !$0.description.contains("\n") })
    }
}
