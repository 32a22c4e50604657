import LNPCrypto

/// The Noise symmetric state of a handshake: handshake hash `h`, chaining key `ck`
/// and the current temporary key. Values only; the BOLT-8 acts and sealed envelopes drive it.
struct SymmetricState {
    static let protocolName = Array("Noise_XK_secp256k1_ChaChaPoly_SHA256".utf8)
    static let prologue = Array("lightning".utf8)

    private(set) var handshakeHash: [UInt8]
    private(set) var chainingKey: [UInt8]
    /// Readable so that sealed envelopes can report their key schedule for test vectors.
    private(set) var temporaryKey: [UInt8] = []

    /// BOLT-8: initialises `h` and `ck` and mixes in the responder's static key, which both
    /// sides know before act one.
    init(responderStatic: PublicKey) {
        self.init(protocolName: Self.protocolName, prologue: Self.prologue)
        mixHash(responderStatic.compressed)
    }

    /// Noise's InitializeSymmetric followed by MixHash(prologue): a name of at most 32 bytes
    /// is zero-padded to become `h`, a longer one is hashed; `ck` starts equal to `h`.
    init(protocolName: [UInt8], prologue: [UInt8]) {
        let initial = protocolName.count <= 32
            ? protocolName + [UInt8](repeating: 0, count: 32 - protocolName.count)
            : Hashing.sha256(protocolName)
        chainingKey = initial
        handshakeHash = initial
        mixHash(prologue)
    }

    mutating func mixHash(_ data: [UInt8]) {
        handshakeHash = Hashing.sha256(handshakeHash + data)
    }

    mutating func mixKey(_ sharedSecret: [UInt8]) {
        (chainingKey, temporaryKey) = Hashing.hkdfTwoKeys(salt: chainingKey, inputKeyMaterial: sharedSecret)
    }

    /// encryptWithAD(temp_k, nonce, h, plaintext), then h = SHA256(h || c).
    mutating func encryptAndHash(nonce: UInt64, _ plaintext: [UInt8]) -> [UInt8] {
        // The key is always 32 bytes here, so sealing cannot fail.
        let ciphertext = (try? ChaCha20Poly1305.seal(key: temporaryKey, nonce: nonce, associatedData: handshakeHash, plaintext: plaintext)) ?? []
        mixHash(ciphertext)
        return ciphertext
    }

    /// decryptWithAD(temp_k, nonce, h, c), then h = SHA256(h || c).
    mutating func decryptAndHash(nonce: UInt64, _ ciphertext: [UInt8]) -> [UInt8]? {
        guard let plaintext = try? ChaCha20Poly1305.open(key: temporaryKey, nonce: nonce, associatedData: handshakeHash, ciphertext: ciphertext) else {
            return nil
        }
        mixHash(ciphertext)
        return plaintext
    }

    /// The final split: two transport keys from HKDF(ck, zero-length).
    func split() -> (first: [UInt8], second: [UInt8]) {
        Hashing.hkdfTwoKeys(salt: chainingKey, inputKeyMaterial: [])
    }
}
