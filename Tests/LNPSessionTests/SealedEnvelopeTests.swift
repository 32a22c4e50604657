import LNPCrypto
import LNPSession
import Synchronization
import Testing

/// Sealed envelopes with random keys and payloads: round trips, tampering, sizes, and the
/// node key reached only through `StaticKeyAgreement`.
@Suite struct SealedEnvelopeTests {
    @Test func randomRoundTrips() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            let sender = PrivateKey.generate(), recipient = PrivateKey.generate()
            // Mostly short, sometimes past the 2 KiB switch to OpenSSL's ChaCha20-Poly1305.
            let count = round % 10 == 0 ? Int.random(in: 2048...70_000, using: &generator) : Int.random(in: 0...300, using: &generator)
            let payload = SecureRandom.bytes(count)
            let envelope = try SealedEnvelope.seal(payload: payload, to: recipient.publicKey, from: sender)
            #expect(envelope.count == payload.count + SealedEnvelope.overhead)
            let opened = try SealedEnvelope.open(envelope, with: recipient)
            #expect(opened.sender == sender.publicKey)
            #expect(opened.payload == payload)
        }
    }

    @Test func everySingleBitFlipIsRejected() throws {
        let sender = PrivateKey.generate(), recipient = PrivateKey.generate()
        for payload in [[], SecureRandom.bytes(40)] {
            let envelope = try SealedEnvelope.seal(payload: payload, to: recipient.publicKey, from: sender)
            for bit in 0..<(envelope.count * 8) {
                var altered = envelope
                altered[bit / 8] ^= 1 << (bit % 8)
                #expect(throws: SealedEnvelopeError.self, "bit \(bit)") { try SealedEnvelope.open(altered, with: recipient) }
            }
        }
    }

    @Test func everyTruncationIsRejected() throws {
        let recipient = PrivateKey.generate()
        let envelope = try SealedEnvelope.seal(payload: SecureRandom.bytes(30), to: recipient.publicKey, from: PrivateKey.generate())
        for length in 0..<envelope.count {
            #expect(throws: SealedEnvelopeError.self, "length \(length)") {
                try SealedEnvelope.open(Array(envelope.prefix(length)), with: recipient)
            }
        }
    }

    @Test func theSameMessageSealsDifferentlyEachTime() throws {
        let sender = PrivateKey.generate(), recipient = PrivateKey.generate()
        let payload = Array("same bytes".utf8)
        let first = try SealedEnvelope.seal(payload: payload, to: recipient.publicKey, from: sender)
        let second = try SealedEnvelope.seal(payload: payload, to: recipient.publicKey, from: sender)
        // A fresh ephemeral key each time: nothing in clear links two envelopes.
        #expect(first[5..<38] != second[5..<38])
        #expect(first[38...] != second[38...])
    }

    @Test func onlyTheRecipientOpens() throws {
        let sender = PrivateKey.generate(), recipient = PrivateKey.generate()
        let envelope = try SealedEnvelope.seal(payload: [1, 2, 3], to: recipient.publicKey, from: sender)
        #expect(throws: SealedEnvelopeError.notForThisNode) { try SealedEnvelope.open(envelope, with: sender) }
        #expect(throws: SealedEnvelopeError.notForThisNode) { try SealedEnvelope.open(envelope, with: PrivateKey.generate()) }
    }

    /// A sender who names a key it does not hold cannot produce a payload that authenticates:
    /// ss needs the named key's private half.
    @Test func aForgedSenderIsRejected() throws {
        let victim = PrivateKey.generate(), forger = PrivateKey.generate(), recipient = PrivateKey.generate()
        let impostor = Impersonation(claimed: victim.publicKey, actual: forger)
        let envelope = try SealedEnvelope.seal(payload: [9, 9], to: recipient.publicKey, from: impostor)
        #expect(throws: SealedEnvelopeError.badPayloadTag) { try SealedEnvelope.open(envelope, with: recipient) }
    }

    @Test func sizesAreBoundedBeforeAnyCryptography() throws {
        let recipient = CountingNodeKey(PrivateKey.generate())
        let sender = PrivateKey.generate()
        // Sealing: the largest payload the format allows, and one byte more.
        let largest = [UInt8](repeating: 0x42, count: SealedEnvelope.maximumPayloadLength)
        let envelope = try SealedEnvelope.seal(payload: largest, to: recipient.publicKey, from: sender)
        #expect(envelope.count == SealedEnvelope.maximumLength)
        #expect(try SealedEnvelope.open(envelope, with: recipient).payload.count == SealedEnvelope.maximumPayloadLength)
        #expect(throws: SealedEnvelopeError.tooLarge(length: SealedEnvelope.maximumLength + 1, limit: SealedEnvelope.maximumLength)) {
            try SealedEnvelope.seal(payload: largest + [0], to: recipient.publicKey, from: sender)
        }
        // Opening: a reader limit below the envelope, an oversized input and an oversized
        // declaration all fail without a single ECDH.
        let before = recipient.agreements
        #expect(throws: SealedEnvelopeError.tooLarge(length: envelope.count, limit: 1000)) {
            try SealedEnvelope.open(envelope, with: recipient, maximumLength: 1000)
        }
        #expect(throws: SealedEnvelopeError.tooLarge(length: envelope.count + 1, limit: SealedEnvelope.maximumLength)) {
            try SealedEnvelope.open(envelope + [0], with: recipient)
        }
        #expect(throws: SealedEnvelopeError.tooLarge(length: 0xffff_ffff + SealedEnvelope.overhead, limit: SealedEnvelope.maximumLength)) {
            try SealedEnvelope.open([1, 0xff, 0xff, 0xff, 0xff], with: recipient)
        }
        #expect(recipient.agreements == before)
        // A reader cannot raise the format's limit.
        #expect(throws: SealedEnvelopeError.tooLarge(length: envelope.count + 1, limit: SealedEnvelope.maximumLength)) {
            try SealedEnvelope.open(envelope + [0], with: recipient, maximumLength: .max)
        }
    }

    /// A spool file may hold several envelopes back to back; the clear header says where
    /// each ends.
    @Test func envelopesSplitFromAStream() throws {
        let sender = PrivateKey.generate(), recipient = PrivateKey.generate()
        let payloads = [[], Array("first".utf8), SecureRandom.bytes(5000)]
        var stream = [UInt8]()
        for payload in payloads { stream += try SealedEnvelope.seal(payload: payload, to: recipient.publicKey, from: sender) }
        var opened: [[UInt8]] = []
        var offset = 0
        while offset < stream.count {
            let length = try SealedEnvelope.envelopeLength(header: stream[offset...])
            opened.append(try SealedEnvelope.open(Array(stream[offset..<(offset + length)]), with: recipient).payload)
            offset += length
        }
        #expect(opened == payloads)
        #expect(throws: SealedEnvelopeError.truncated(expected: 5, received: 3)) { try SealedEnvelope.envelopeLength(header: [1, 0, 0]) }
        #expect(throws: SealedEnvelopeError.unknownVersion(0)) { try SealedEnvelope.envelopeLength(header: [0, 0, 0, 0, 0]) }
    }

    /// Both sides reach their node key only through `StaticKeyAgreement`, as with keyd.
    @Test func nodeKeysStayBehindKeyAgreement() throws {
        let sender = CountingNodeKey(PrivateKey.generate()), recipient = CountingNodeKey(PrivateKey.generate())
        let envelope = try SealedEnvelope.seal(payload: [7], to: recipient.publicKey, from: sender)
        #expect(sender.agreements == 1)  // ss; es uses the ephemeral key
        let opened = try SealedEnvelope.open(envelope, with: recipient)
        #expect(recipient.agreements == 2)  // es and ss
        #expect(opened.sender == sender.publicKey)
        #expect(opened.payload == [7])
    }

    /// A key service that does not answer gives a typed error on both sides. (A fake: the
    /// real keyd cannot be made to fail on cue without a bus.)
    @Test func keyServiceFailureIsReported() throws {
        let key = PrivateKey.generate()
        let silent = SilentNodeKey(publicKey: key.publicKey)
        #expect(throws: SealedEnvelopeError.keyAgreementFailed("keyd did not answer")) {
            try SealedEnvelope.seal(payload: [1], to: PrivateKey.generate().publicKey, from: silent)
        }
        let envelope = try SealedEnvelope.seal(payload: [1], to: key.publicKey, from: PrivateKey.generate())
        #expect(throws: SealedEnvelopeError.keyAgreementFailed("keyd did not answer")) { try SealedEnvelope.open(envelope, with: silent) }
    }

    @Test func errorsSayWhatWentWrong() {
        let errors: [SealedEnvelopeError] = [
            .tooLarge(length: 20_000_000, limit: SealedEnvelope.maximumLength), .truncated(expected: 203, received: 202),
            .trailingBytes(expected: 203, received: 204), .unknownVersion(0), .badEphemeralKey, .notForThisNode,
            .badSenderKey, .badPayloadTag, .keyAgreementFailed("timeout"),
        ]
        let descriptions = Set(errors.map(\.description))
        #expect(descriptions.count == errors.count)
        #expect(Set(errors.map(\.specCode)).count == errors.count)
        #expect(SealedEnvelopeError.trailingBytes(expected: 203, received: 204).description.contains("1 bytes after"))
    }
}

/// A node key held elsewhere: ECDH through the protocol only, counted.
final class CountingNodeKey: StaticKeyAgreement {
    private let key: PrivateKey
    private let count = Mutex(0)
    init(_ key: PrivateKey) { self.key = key }
    var agreements: Int { count.withLock { $0 } }
    var publicKey: PublicKey { key.publicKey }
    func sharedSecret(with publicKey: PublicKey) throws -> [UInt8] {
        count.withLock { $0 += 1 }
        return key.sharedSecret(with: publicKey)
    }
}

struct SilentNodeKey: StaticKeyAgreement {
    struct NoAnswer: Error, CustomStringConvertible { var description: String { "keyd did not answer" } }
    let publicKey: PublicKey
    func sharedSecret(with publicKey: PublicKey) throws -> [UInt8] { throw NoAnswer() }
}

/// Names one key and computes ECDH with another: what a forger can do.
struct Impersonation: StaticKeyAgreement {
    let claimed: PublicKey
    let actual: PrivateKey
    var publicKey: PublicKey { claimed }
    func sharedSecret(with publicKey: PublicKey) throws -> [UInt8] { actual.sharedSecret(with: publicKey) }
}
