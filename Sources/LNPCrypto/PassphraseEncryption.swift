import CSodium

/// Encrypts a small secret (the node key) under a passphrase: Argon2id (libsodium's
/// crypto_pwhash) stretches the passphrase, XChaCha20-Poly1305 seals the secret.
///
/// Format, version 1: `[1][u64 opslimit][u64 memlimit][16 salt][24 nonce][ciphertext+16 tag]`,
/// integers big-endian, so the cost parameters travel with the file and can be raised later.
public enum PassphraseEncryption {
    public static let version: UInt8 = 1

    public enum Strength: Sendable {
        /// libsodium's interactive limits (64 MiB, ~0.1 s): for tests.
        case interactive
        /// libsodium's moderate limits (256 MiB, ~0.7 s): what a node key deserves.
        case moderate

        var limits: (ops: UInt64, mem: UInt64) {
            switch self {
            case .interactive: (UInt64(crypto_pwhash_opslimit_interactive()), UInt64(crypto_pwhash_memlimit_interactive()))
            case .moderate: (UInt64(crypto_pwhash_opslimit_moderate()), UInt64(crypto_pwhash_memlimit_moderate()))
            }
        }
    }

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case wrongPassphrase
        case malformed(String)
        case outOfMemory

        public var description: String {
            switch self {
            case .wrongPassphrase: "the passphrase is wrong (or the key file was altered)"
            case let .malformed(detail): "the encrypted key file is malformed: \(detail)"
            case .outOfMemory: "the key derivation could not allocate its memory"
            }
        }
    }

    public static func seal(_ secret: [UInt8], passphrase: String, strength: Strength = .moderate) throws(Failure) -> [UInt8] {
        _ = Sodium.ready
        let (ops, mem) = strength.limits
        let salt = SecureRandom.bytes(Int(crypto_pwhash_saltbytes()))
        let nonce = SecureRandom.bytes(Int(crypto_aead_xchacha20poly1305_ietf_npubbytes()))
        let key = try derive(passphrase: passphrase, salt: salt, ops: ops, mem: mem)
        var ciphertext = [UInt8](repeating: 0, count: secret.count + Int(crypto_aead_xchacha20poly1305_ietf_abytes()))
        var header: [UInt8] = [version]
        header += bigEndian(ops) + bigEndian(mem) + salt + nonce
        key.withUnsafeBytes { k in
            _ = crypto_aead_xchacha20poly1305_ietf_encrypt(&ciphertext, nil, secret, UInt64(secret.count),
                                                           header, UInt64(header.count), nil, nonce,
                                                           k.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return header + ciphertext
    }

    public static func open(_ sealed: [UInt8], passphrase: String) throws(Failure) -> SecretBytes {
        _ = Sodium.ready
        let saltLength = Int(crypto_pwhash_saltbytes()), nonceLength = Int(crypto_aead_xchacha20poly1305_ietf_npubbytes())
        let headerLength = 1 + 8 + 8 + saltLength + nonceLength
        let tagLength = Int(crypto_aead_xchacha20poly1305_ietf_abytes())
        guard sealed.count > headerLength + tagLength else { throw .malformed("too short") }
        guard sealed[0] == version else { throw .malformed("unknown version \(sealed[0])") }
        let ops = sealed[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let mem = sealed[9..<17].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        // Refuse absurd costs: a tampered header must not make us allocate gigabytes.
        guard ops >= UInt64(crypto_pwhash_opslimit_min()), ops <= 16,
              mem >= UInt64(crypto_pwhash_memlimit_min()), mem <= 1 << 30 else { throw .malformed("implausible cost parameters") }
        let salt = Array(sealed[17..<(17 + saltLength)])
        let nonce = Array(sealed[(17 + saltLength)..<headerLength])
        let header = Array(sealed[0..<headerLength])
        let ciphertext = Array(sealed[headerLength...])
        let key = try derive(passphrase: passphrase, salt: salt, ops: ops, mem: mem)
        let plaintext = SecretBytes(count: ciphertext.count - tagLength)
        let status = key.withUnsafeBytes { k in
            crypto_aead_xchacha20poly1305_ietf_decrypt(plaintext.pointer.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, nil,
                                                       ciphertext, UInt64(ciphertext.count), header, UInt64(header.count),
                                                       nonce, k.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        guard status == 0 else { throw .wrongPassphrase }
        return plaintext
    }

    private static func derive(passphrase: String, salt: [UInt8], ops: UInt64, mem: UInt64) throws(Failure) -> SecretBytes {
        let key = SecretBytes(count: 32)
        let utf8 = Array(passphrase.utf8)
        let status = utf8.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(utf8.count, 1)) { chars in
                crypto_pwhash(key.pointer.baseAddress!.assumingMemoryBound(to: UInt8.self), 32, chars, UInt64(utf8.count),
                              salt, ops, Int(mem), crypto_pwhash_alg_argon2id13())
            }
        }
        guard status == 0 else { throw .outOfMemory }
        return key
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }
}
