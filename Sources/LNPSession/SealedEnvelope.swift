import LNPCrypto

/// A sealed envelope: one message encrypted to a node key, with no round trip, for links
/// that have none (spool files carried by hand or satellite, one-way frame links).
///
/// It is the one message of Noise_X (`<- s ... -> e, es, s, ss`) over secp256k1 with
/// BOLT-8's ECDH, ChaCha20-Poly1305 and SHA-256: a fresh ephemeral key per envelope, the
/// sender's node key encrypted and authenticated inside, the recipient's node key never in
/// clear. Both node keys are `StaticKeyAgreement`s, so the keys can stay in keyd.
/// SEALED-ENVELOPE.md (next to this file) is the format's specification.
///
/// Layout (version 1):
///
///     version        1   0x01
///     payload length 4   u32 big-endian, the plaintext's length
///     ephemeral key 33   compressed secp256k1 point, in clear
///     sender key    49   33-byte compressed key + 16-byte tag
///     payload        n   plaintext length + 16-byte tag
public enum SealedEnvelope {
    public static let version: UInt8 = 1
    /// Distinct from BOLT-8's `Noise_XK_...`: an envelope's keys can never match a handshake's.
    public static let protocolName = Array("Noise_X_secp256k1_ChaChaPoly_SHA256".utf8)
    /// The prologue is this label followed by the 5 clear header bytes, which is how the
    /// version and the declared length are authenticated.
    public static let prologueLabel = Array("lnp-node sealed envelope".utf8)

    public static let headerLength = 5
    static let ephemeralOffset = headerLength
    static let senderOffset = ephemeralOffset + PublicKey.compressedLength
    static let encryptedSenderLength = PublicKey.compressedLength + ChaCha20Poly1305.tagLength
    static let payloadOffset = senderOffset + encryptedSenderLength
    /// Bytes an envelope adds to its payload: 5 + 33 + 49 + 16 = 103.
    public static let overhead = payloadOffset + ChaCha20Poly1305.tagLength
    /// The largest envelope the format allows (16 MiB); a reader may set a lower limit.
    public static let maximumLength = 16 << 20
    public static let maximumPayloadLength = maximumLength - overhead

    /// The intermediate values of one envelope's Noise steps, in order. Only for test
    /// vectors and audits: it holds the envelope's secrets.
    public struct KeySchedule: Sendable, Equatable {
        /// h = ck after InitializeSymmetric.
        public var initialHash: [UInt8]
        /// h after MixHash(prologue).
        public var hashAfterPrologue: [UInt8]
        /// h after the pre-message MixHash(recipient key).
        public var hashAfterRecipient: [UInt8]
        /// h after MixHash(ephemeral key).
        public var hashAfterEphemeral: [UInt8]
        /// ECDH(ephemeral, recipient).
        public var ephemeralStaticSecret: [UInt8]
        public var chainingKeyAfterEphemeralStatic: [UInt8]
        /// The key that encrypts the sender key (nonce 0).
        public var senderKeyKey: [UInt8]
        /// h after EncryptAndHash(sender key): the payload's associated data.
        public var hashAfterSender: [UInt8]
        /// ECDH(sender, recipient).
        public var staticStaticSecret: [UInt8]
        public var chainingKeyAfterStaticStatic: [UInt8]
        /// The key that encrypts the payload (nonce 0).
        public var payloadKey: [UInt8]
    }

    /// What opening yields: who sealed it (authenticated) and the payload.
    public struct Opened: Sendable, Equatable {
        public let sender: PublicKey
        public let payload: [UInt8]
    }

    /// Seals `payload` to `recipient`'s node key as `sender`. `ephemeral` is only for
    /// reproducing test vectors; production passes nothing (reusing one breaks secrecy).
    public static func seal(
        payload: [UInt8], to recipient: PublicKey, from sender: any StaticKeyAgreement,
        ephemeral: PrivateKey = .generate()
    ) throws(SealedEnvelopeError) -> [UInt8] {
        try sealRevealingKeySchedule(payload: payload, to: recipient, from: sender, ephemeral: ephemeral).envelope
    }

    /// Opens an envelope sealed to `local`. Sizes are checked before any cryptography;
    /// `maximumLength` may lower, never raise, the format's limit.
    public static func open(
        _ envelope: [UInt8], with local: any StaticKeyAgreement, maximumLength: Int = SealedEnvelope.maximumLength
    ) throws(SealedEnvelopeError) -> Opened {
        try openRevealingKeySchedule(envelope, with: local, maximumLength: maximumLength).opened
    }

    /// The whole length of the envelope whose first bytes are `prefix`, from its clear
    /// header, so that a reader of a stream knows how much to read. Throws for an unknown
    /// version, for a length over the limit, and for fewer than `headerLength` bytes.
    public static func envelopeLength(
        header prefix: some Collection<UInt8>, maximumLength: Int = SealedEnvelope.maximumLength
    ) throws(SealedEnvelopeError) -> Int {
        let limit = min(maximumLength, Self.maximumLength)
        let bytes = Array(prefix.prefix(headerLength))
        // The version comes first so that a future layout is reported as such, not as truncated.
        guard let version = bytes.first else { throw .truncated(expected: headerLength, received: 0) }
        guard version == Self.version else { throw .unknownVersion(version) }
        guard bytes.count == headerLength else { throw .truncated(expected: headerLength, received: bytes.count) }
        let payloadLength = bytes[1...4].reduce(0) { $0 << 8 | Int($1) }
        let total = overhead + payloadLength
        guard total <= limit else { throw .tooLarge(length: total, limit: limit) }
        return total
    }

    /// `seal` that also returns the key schedule: for test vectors and audits only.
    public static func sealRevealingKeySchedule(
        payload: [UInt8], to recipient: PublicKey, from sender: any StaticKeyAgreement, ephemeral: PrivateKey
    ) throws(SealedEnvelopeError) -> (envelope: [UInt8], schedule: KeySchedule) {
        let total = overhead + payload.count
        guard total <= maximumLength else { throw .tooLarge(length: total, limit: maximumLength) }
        var envelope = [UInt8]()
        envelope.reserveCapacity(total)
        envelope.append(version)
        withUnsafeBytes(of: UInt32(payload.count).bigEndian) { envelope.append(contentsOf: $0) }

        var trace = Trace()
        var symmetric = SymmetricState(protocolName: protocolName, prologue: prologueLabel + envelope)
        trace.begin(symmetric)
        symmetric.mixHash(recipient.compressed)
        trace.schedule.hashAfterRecipient = symmetric.handshakeHash

        // -> e
        let ephemeralPublic = ephemeral.publicKey.compressed
        symmetric.mixHash(ephemeralPublic)
        envelope += ephemeralPublic
        trace.schedule.hashAfterEphemeral = symmetric.handshakeHash
        // es
        let ephemeralStatic = ephemeral.sharedSecret(with: recipient)
        symmetric.mixKey(ephemeralStatic)
        trace.afterEphemeralStatic(ephemeralStatic, symmetric)
        // s
        envelope += symmetric.encryptAndHash(nonce: 0, sender.publicKey.compressed)
        trace.schedule.hashAfterSender = symmetric.handshakeHash
        // ss
        let staticStatic = try staticSharedSecret(sender, recipient)
        symmetric.mixKey(staticStatic)
        trace.afterStaticStatic(staticStatic, symmetric)

        // The payload, encrypted in place with h as associated data. Its MixHash is left
        // out: nothing follows the payload, so the final h would never be used.
        envelope += payload
        envelope += [UInt8](repeating: 0, count: ChaCha20Poly1305.tagLength)
        symmetric.temporaryKey.withUnsafeBytes { key in
            symmetric.handshakeHash.withUnsafeBytes { associatedData in
                envelope.withUnsafeMutableBytes { buffer in
                    ChaCha20Poly1305.sealInPlace(key: key.baseAddress!, nonce: 0, associatedData: associatedData,
                                                 buffer: buffer.baseAddress! + payloadOffset, length: payload.count)
                }
            }
        }
        return (envelope, trace.schedule)
    }

    /// `open` that also returns the key schedule: for test vectors and audits only.
    public static func openRevealingKeySchedule(
        _ envelope: [UInt8], with local: any StaticKeyAgreement, maximumLength: Int = SealedEnvelope.maximumLength
    ) throws(SealedEnvelopeError) -> (opened: Opened, schedule: KeySchedule) {
        let limit = min(maximumLength, Self.maximumLength)
        // Refuse an oversized input before even reading its header.
        guard envelope.count <= limit else { throw .tooLarge(length: envelope.count, limit: limit) }
        let expected = try envelopeLength(header: envelope, maximumLength: limit)
        guard envelope.count >= expected else { throw .truncated(expected: expected, received: envelope.count) }
        guard envelope.count == expected else { throw .trailingBytes(expected: expected, received: envelope.count) }

        var trace = Trace()
        var symmetric = SymmetricState(protocolName: protocolName, prologue: prologueLabel + envelope[0..<headerLength])
        trace.begin(symmetric)
        symmetric.mixHash(local.publicKey.compressed)
        trace.schedule.hashAfterRecipient = symmetric.handshakeHash

        // -> e
        let ephemeralBytes = Array(envelope[ephemeralOffset..<senderOffset])
        // Only the compressed form is allowed: PublicKey would also parse 65 bytes, but the
        // field is fixed at 33, so a first byte other than 2 or 3 must fail here.
        guard ephemeralBytes[0] == 2 || ephemeralBytes[0] == 3,
              let ephemeral = try? PublicKey(ephemeralBytes) else { throw .badEphemeralKey }
        symmetric.mixHash(ephemeralBytes)
        trace.schedule.hashAfterEphemeral = symmetric.handshakeHash
        // es
        let ephemeralStatic = try staticSharedSecret(local, ephemeral)
        symmetric.mixKey(ephemeralStatic)
        trace.afterEphemeralStatic(ephemeralStatic, symmetric)
        // s
        guard let senderBytes = symmetric.decryptAndHash(nonce: 0, Array(envelope[senderOffset..<payloadOffset])) else {
            throw .notForThisNode
        }
        trace.schedule.hashAfterSender = symmetric.handshakeHash
        guard senderBytes[0] == 2 || senderBytes[0] == 3, let sender = try? PublicKey(senderBytes) else {
            throw .badSenderKey
        }
        // ss
        let staticStatic = try staticSharedSecret(local, sender)
        symmetric.mixKey(staticStatic)
        trace.afterStaticStatic(staticStatic, symmetric)

        var payload = Array(envelope[payloadOffset...])
        let payloadLength = payload.count - ChaCha20Poly1305.tagLength
        let authentic = symmetric.temporaryKey.withUnsafeBytes { key in
            symmetric.handshakeHash.withUnsafeBytes { associatedData in
                payload.withUnsafeMutableBytes { buffer in
                    (try? ChaCha20Poly1305.openInPlace(key: key.baseAddress!, nonce: 0, associatedData: associatedData,
                                                       buffer: buffer.baseAddress!, length: payloadLength)) != nil
                }
            }
        }
        guard authentic else { throw .badPayloadTag }
        payload.removeLast(ChaCha20Poly1305.tagLength)
        return (Opened(sender: sender, payload: payload), trace.schedule)
    }

    /// Collects the key schedule as both sides walk the same steps.
    private struct Trace {
        var schedule = KeySchedule(
            initialHash: [], hashAfterPrologue: [], hashAfterRecipient: [], hashAfterEphemeral: [],
            ephemeralStaticSecret: [], chainingKeyAfterEphemeralStatic: [], senderKeyKey: [], hashAfterSender: [],
            staticStaticSecret: [], chainingKeyAfterStaticStatic: [], payloadKey: [])

        mutating func begin(_ symmetric: SymmetricState) {
            // After InitializeSymmetric ck still equals the initial h.
            schedule.initialHash = symmetric.chainingKey
            schedule.hashAfterPrologue = symmetric.handshakeHash
        }

        mutating func afterEphemeralStatic(_ secret: [UInt8], _ symmetric: SymmetricState) {
            schedule.ephemeralStaticSecret = secret
            schedule.chainingKeyAfterEphemeralStatic = symmetric.chainingKey
            schedule.senderKeyKey = symmetric.temporaryKey
        }

        mutating func afterStaticStatic(_ secret: [UInt8], _ symmetric: SymmetricState) {
            schedule.staticStaticSecret = secret
            schedule.chainingKeyAfterStaticStatic = symmetric.chainingKey
            schedule.payloadKey = symmetric.temporaryKey
        }
    }
}

/// ECDH with a node key, which may live in another service (keyd).
private func staticSharedSecret(_ key: any StaticKeyAgreement, _ point: PublicKey) throws(SealedEnvelopeError) -> [UInt8] {
    do {
        return try key.sharedSecret(with: point)
    } catch {
        throw .keyAgreementFailed(String(describing: error))
    }
}
