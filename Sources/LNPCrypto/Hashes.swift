import Crypto

/// SHA-256, HMAC-SHA256 and HKDF through swift-crypto (BoringSSL on Linux).
public enum Hashing {
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { sha256(buffer: $0) }
    }

    public static func sha256(buffer: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bufferPointer: buffer)
        return Array(hasher.finalize())
    }

    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    /// HKDF-SHA256 with a zero-length info, split into two 32-byte halves: the
    /// `HKDF(salt, ikm)` of BOLT-8, used for the chaining key and key rotation.
    public static func hkdfTwoKeys(salt: [UInt8], inputKeyMaterial: [UInt8]) -> ([UInt8], [UInt8]) {
        let okm = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: inputKeyMaterial),
            salt: salt,
            info: [UInt8](),
            outputByteCount: 64
        )
        return okm.withUnsafeBytes { raw in
            (Array(raw[0..<32]), Array(raw[32..<64]))
        }
    }
}
