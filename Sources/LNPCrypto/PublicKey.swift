import CSecp256k1

/// A secp256k1 public key. It keeps libsecp256k1's parsed form, so ECDH and verification
/// never re-parse (parsing a compressed key costs a square root), and its 33-byte
/// compressed serialisation, which is what the wire carries and what identity compares.
public struct PublicKey: Sendable, Hashable, CustomStringConvertible {
    public static let compressedLength = 33

    let parsed: secp256k1_pubkey
    public let compressed: [UInt8]

    /// Parses a compressed (33-byte) or uncompressed (65-byte) encoding.
    public init<C: Collection>(_ bytes: C) throws(CryptoError) where C.Element == UInt8 {
        let input = Array(bytes)
        guard input.count == 33 || input.count == 65 else {
            throw .invalidLength(what: "public key", expected: 33, actual: input.count)
        }
        var key = secp256k1_pubkey()
        guard secp256k1_ec_pubkey_parse(Secp256k1.context, &key, input, input.count) == 1 else {
            throw .invalidPublicKey
        }
        self.init(parsed: key)
    }

    /// Parses lowercase or uppercase hex, as node ids are written.
    public init(hex: String) throws(CryptoError) {
        guard let bytes = Hex.decode(hex) else { throw .invalidPublicKey }
        try self.init(bytes)
    }

    init(parsed: secp256k1_pubkey) {
        self.parsed = parsed
        var out = [UInt8](repeating: 0, count: 33)
        var length = 33
        var key = parsed
        _ = secp256k1_ec_pubkey_serialize(Secp256k1.context, &out, &length, &key, UInt32(SECP256K1_EC_COMPRESSED))
        self.compressed = out
    }

    public var uncompressed: [UInt8] {
        var out = [UInt8](repeating: 0, count: 65)
        var length = 65
        var key = parsed
        _ = secp256k1_ec_pubkey_serialize(Secp256k1.context, &out, &length, &key, UInt32(SECP256K1_EC_UNCOMPRESSED))
        return out
    }

    public var hex: String { Hex.encode(compressed) }
    public var description: String { hex }

    public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool { lhs.compressed == rhs.compressed }
    /// The bytes in one call: hashing the array would feed the hasher byte by byte, and
    /// peerd and msgd look a key up in a dictionary for every message.
    public func hash(into hasher: inout Hasher) { compressed.withUnsafeBytes { hasher.combine(bytes: $0) } }

    /// The x-only form used by BIP-340 and whether y was odd.
    public var xOnly: (key: XOnlyPublicKey, parity: Bool) {
        var xonly = secp256k1_xonly_pubkey()
        var parity: Int32 = 0
        var key = parsed
        _ = secp256k1_xonly_pubkey_from_pubkey(Secp256k1.context, &xonly, &parity, &key)
        return (XOnlyPublicKey(parsed: xonly), parity == 1)
    }

    /// self + tweak·G
    public func tweakedAdd(_ tweak: [UInt8]) throws(CryptoError) -> PublicKey {
        try requireLength("tweak", tweak.count, 32)
        var key = parsed
        guard secp256k1_ec_pubkey_tweak_add(Secp256k1.context, &key, tweak) == 1 else { throw .tweakOutOfRange }
        return PublicKey(parsed: key)
    }

    /// tweak·self
    public func tweakedMultiply(_ tweak: [UInt8]) throws(CryptoError) -> PublicKey {
        try requireLength("tweak", tweak.count, 32)
        var key = parsed
        guard secp256k1_ec_pubkey_tweak_mul(Secp256k1.context, &key, tweak) == 1 else { throw .tweakOutOfRange }
        return PublicKey(parsed: key)
    }

    /// The point sum of several keys (fails if it is the point at infinity).
    public static func combine(_ keys: [PublicKey]) throws(CryptoError) -> PublicKey {
        guard !keys.isEmpty else { throw .invalidPublicKey }
        var parsedKeys = keys.map(\.parsed)
        var out = secp256k1_pubkey()
        let ok = parsedKeys.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var pointers: [UnsafePointer<secp256k1_pubkey>?] = (0..<buffer.count).map { UnsafePointer(buffer.baseAddress! + $0) }
            return secp256k1_ec_pubkey_combine(Secp256k1.context, &out, &pointers, pointers.count)
        }
        guard ok == 1 else { throw .invalidPublicKey }
        return PublicKey(parsed: out)
    }

    /// Verifies a low-S ECDSA signature over a 32-byte digest.
    public func verify(_ signature: ECDSASignature, digest: [UInt8]) -> Bool {
        guard digest.count == 32 else { return false }
        var key = parsed
        var sig = signature.parsed
        return secp256k1_ecdsa_verify(Secp256k1.context, &sig, digest, &key) == 1
    }
}

extension secp256k1_pubkey: @retroactive @unchecked Sendable {}
extension secp256k1_xonly_pubkey: @retroactive @unchecked Sendable {}
extension secp256k1_ecdsa_signature: @retroactive @unchecked Sendable {}

/// A BIP-340 x-only public key.
public struct XOnlyPublicKey: Sendable, Hashable {
    let parsed: secp256k1_xonly_pubkey
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) throws(CryptoError) {
        try requireLength("x-only public key", bytes.count, 32)
        var key = secp256k1_xonly_pubkey()
        guard secp256k1_xonly_pubkey_parse(Secp256k1.context, &key, bytes) == 1 else { throw .invalidPublicKey }
        self.init(parsed: key)
    }

    init(parsed: secp256k1_xonly_pubkey) {
        self.parsed = parsed
        var out = [UInt8](repeating: 0, count: 32)
        var key = parsed
        _ = secp256k1_xonly_pubkey_serialize(Secp256k1.context, &out, &key)
        self.bytes = out
    }

    public static func == (lhs: XOnlyPublicKey, rhs: XOnlyPublicKey) -> Bool { lhs.bytes == rhs.bytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(bytes) }

    /// Verifies a 64-byte BIP-340 signature over a message of any length.
    public func verifySchnorr(_ signature: [UInt8], message: [UInt8]) -> Bool {
        guard signature.count == 64 else { return false }
        var key = parsed
        return secp256k1_schnorrsig_verify(Secp256k1.context, signature, message, message.count, &key) == 1
    }
}
