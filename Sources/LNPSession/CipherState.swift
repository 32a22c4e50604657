import LNPCrypto

/// One direction of the transport: a ChaCha20-Poly1305 key, its nonce counter and the
/// chaining key used to rotate it. BOLT-8 rotates after 1000 uses of a key (500 messages,
/// each a length and a body).
public struct CipherState: Sendable {
    public static let rotationInterval: UInt64 = 1000

    private(set) var key: SecretBytes
    public private(set) var nonce: UInt64 = 0
    private(set) var chainingKey: [UInt8]

    init(key: [UInt8], chainingKey: [UInt8]) {
        self.key = SecretBytes(copying: key)
        self.chainingKey = chainingKey
    }

    /// Only for reproducing the spec's message vectors and for tests.
    public init(testKey: [UInt8], chainingKey: [UInt8]) {
        self.init(key: testKey, chainingKey: chainingKey)
    }

    /// Constant-time comparison of the current keys; for tests.
    public func hasSameKey(as other: CipherState) -> Bool { key.isEqual(to: other.key) }

    @inline(__always)
    mutating func seal(_ buffer: UnsafeMutableRawPointer, length: Int) {
        ChaCha20Poly1305.sealInPlace(key: key.unsafeBaseAddress, nonce: nonce, buffer: buffer, length: length)
        advance()
    }

    @inline(__always)
    mutating func open(_ buffer: UnsafeMutableRawPointer, length: Int) throws(CryptoError) {
        try ChaCha20Poly1305.openInPlace(key: key.unsafeBaseAddress, nonce: nonce, buffer: buffer, length: length)
        advance()
    }

    @inline(__always)
    private mutating func advance() {
        nonce += 1
        if nonce == Self.rotationInterval { rotate() }
    }

    /// ck', k' = HKDF(ck, k); the nonce starts again at zero.
    private mutating func rotate() {
        let (newChainingKey, newKey) = key.withUnsafeBytes { raw in
            Hashing.hkdfTwoKeys(salt: chainingKey, inputKeyMaterial: Array(raw))
        }
        chainingKey = newChainingKey
        key = SecretBytes(copying: newKey)
        nonce = 0
    }
}
