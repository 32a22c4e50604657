import CSecp256k1
import CSodium

/// A secp256k1 secret key, kept in wiped storage.
public struct PrivateKey: Sendable {
    public static let length = 32
    public let secret: SecretBytes
    /// Derived once: deriving it costs a point multiplication, and every handshake needs
    /// the static and the ephemeral public key.
    public let publicKey: PublicKey

    public init<C: Collection>(_ bytes: C) throws(CryptoError) where C.Element == UInt8 {
        try requireLength("private key", bytes.count, 32)
        let secret = SecretBytes(copying: bytes)
        guard secp256k1_ec_seckey_verify(Secp256k1.context, secret.pointer.baseAddress!) == 1 else {
            throw .invalidPrivateKey
        }
        self.init(verified: secret)
    }

    init(verified secret: SecretBytes) {
        self.secret = secret
        var key = secp256k1_pubkey()
        // Cannot fail: the secret was verified.
        _ = secp256k1_ec_pubkey_create(Secp256k1.context, &key, secret.pointer.baseAddress!.assumingMemoryBound(to: UInt8.self))
        self.publicKey = PublicKey(parsed: key)
    }

    /// A fresh key from the system CSPRNG; loops on the (2^-128 likely) invalid draw.
    public static func generate() -> PrivateKey {
        _ = Secp256k1.context
        while true {
            let secret = SecretBytes.random(count: 32)
            if secp256k1_ec_seckey_verify(Secp256k1.context, secret.pointer.baseAddress!) == 1 {
                return PrivateKey(verified: secret)
            }
        }
    }

    @inline(__always)
    var base: UnsafePointer<UInt8> { UnsafePointer(secret.pointer.baseAddress!.assumingMemoryBound(to: UInt8.self)) }

    /// ECDH as BOLT-8 defines it: SHA-256 of the compressed shared point. This is
    /// libsecp256k1's default ECDH hash function.
    public func sharedSecret(with publicKey: PublicKey) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var key = publicKey.parsed
        // Cannot fail for a valid key pair; the result is never the point at infinity.
        _ = secp256k1_ecdh(Secp256k1.context, &out, &key, base, nil, nil)
        return out
    }

    /// RFC 6979 deterministic ECDSA over a 32-byte digest; always low-S.
    public func sign(digest: [UInt8]) throws(CryptoError) -> ECDSASignature {
        try requireLength("digest", digest.count, 32)
        var sig = secp256k1_ecdsa_signature()
        guard secp256k1_ecdsa_sign(Secp256k1.context, &sig, digest, base, nil, nil) == 1 else {
            throw .invalidPrivateKey
        }
        return ECDSASignature(parsed: sig)
    }

    /// BIP-340 Schnorr signature over a 32-byte message; aux randomness is fresh unless given.
    public func signSchnorr(message: [UInt8], auxRandom: [UInt8]? = nil) throws(CryptoError) -> [UInt8] {
        try requireLength("message", message.count, 32)
        if let auxRandom { try requireLength("aux randomness", auxRandom.count, 32) }
        var keypair = secp256k1_keypair()
        defer { withUnsafeMutableBytes(of: &keypair) { sodium_memzero($0.baseAddress!, $0.count) } }
        guard secp256k1_keypair_create(Secp256k1.context, &keypair, base) == 1 else { throw .invalidPrivateKey }
        var signature = [UInt8](repeating: 0, count: 64)
        let aux = auxRandom ?? SecureRandom.bytes(32)
        guard secp256k1_schnorrsig_sign32(Secp256k1.context, &signature, message, &keypair, aux) == 1 else {
            throw .invalidPrivateKey
        }
        return signature
    }

    /// (self + tweak) mod n
    public func tweakedAdd(_ tweak: [UInt8]) throws(CryptoError) -> PrivateKey {
        try requireLength("tweak", tweak.count, 32)
        let out = SecretBytes(copying: UnsafeRawBufferPointer(secret.pointer))
        guard secp256k1_ec_seckey_tweak_add(Secp256k1.context, out.pointer.baseAddress!, tweak) == 1 else {
            throw .tweakOutOfRange
        }
        return PrivateKey(verified: out)
    }

    /// (self · tweak) mod n
    public func tweakedMultiply(_ tweak: [UInt8]) throws(CryptoError) -> PrivateKey {
        try requireLength("tweak", tweak.count, 32)
        let out = SecretBytes(copying: UnsafeRawBufferPointer(secret.pointer))
        guard secp256k1_ec_seckey_tweak_mul(Secp256k1.context, out.pointer.baseAddress!, tweak) == 1 else {
            throw .tweakOutOfRange
        }
        return PrivateKey(verified: out)
    }

    /// -self mod n
    public func negated() -> PrivateKey {
        let out = SecretBytes(copying: UnsafeRawBufferPointer(secret.pointer))
        _ = secp256k1_ec_seckey_negate(Secp256k1.context, out.pointer.baseAddress!)
        return PrivateKey(verified: out)
    }
}

/// An ECDSA signature, held in libsecp256k1's form; compact (64-byte) and DER encodings.
public struct ECDSASignature: Sendable, Hashable {
    let parsed: secp256k1_ecdsa_signature

    init(parsed: secp256k1_ecdsa_signature) { self.parsed = parsed }

    public init(compact bytes: [UInt8]) throws(CryptoError) {
        try requireLength("compact signature", bytes.count, 64)
        var sig = secp256k1_ecdsa_signature()
        guard secp256k1_ecdsa_signature_parse_compact(Secp256k1.context, &sig, bytes) == 1 else {
            throw .invalidSignature
        }
        parsed = sig
    }

    /// Strict DER (BIP-66) parsing.
    public init(der bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count <= 72, !bytes.isEmpty else { throw .invalidSignature }
        var sig = secp256k1_ecdsa_signature()
        guard secp256k1_ecdsa_signature_parse_der(Secp256k1.context, &sig, bytes, bytes.count) == 1 else {
            throw .invalidSignature
        }
        parsed = sig
    }

    public var compact: [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        var sig = parsed
        _ = secp256k1_ecdsa_signature_serialize_compact(Secp256k1.context, &out, &sig)
        return out
    }

    public var der: [UInt8] {
        var out = [UInt8](repeating: 0, count: 72)
        var length = 72
        var sig = parsed
        _ = secp256k1_ecdsa_signature_serialize_der(Secp256k1.context, &out, &length, &sig)
        return Array(out.prefix(length))
    }

    /// The low-S form; verification only accepts low-S, as Bitcoin and Lightning require.
    public var normalized: ECDSASignature {
        var out = secp256k1_ecdsa_signature()
        var sig = parsed
        _ = secp256k1_ecdsa_signature_normalize(Secp256k1.context, &out, &sig)
        return ECDSASignature(parsed: out)
    }

    public static func == (lhs: ECDSASignature, rhs: ECDSASignature) -> Bool { lhs.compact == rhs.compact }
    public func hash(into hasher: inout Hasher) { hasher.combine(compact) }
}
