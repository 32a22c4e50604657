import Crypto

/// Tor v3 onion service names (rend-spec-v3, "Encoding onion addresses"):
/// `base32(PUBKEY || CHECKSUM || VERSION) + ".onion"`, where PUBKEY is the service's
/// 32-byte ed25519 key, VERSION is 3 and
/// `CHECKSUM = SHA3-256(".onion checksum" || PUBKEY || VERSION)[:2]`.
public enum OnionServiceAddress {
    public static let version: UInt8 = 3
    public static let publicKeyLength = 32
    /// PUBKEY, CHECKSUM and VERSION.
    public static let decodedLength = 35
    public static let encodedLength = 56
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    /// Checks a lowercase `NAME.onion` and returns NAME.
    static func validate(_ host: String) throws(AddressError) -> String {
        let name = String(host.dropLast(".onion".count))
        guard !name.contains(".") else {
            throw .invalidOnion(host, reason: "sub-domains of onion services are not supported")
        }
        if name.utf8.count == 16 { throw .onionV2NotSupported(host) }
        guard name.utf8.count == encodedLength else {
            throw .invalidOnion(host, reason: "the name must be \(encodedLength) base32 characters, got \(name.utf8.count)")
        }
        guard let decoded = base32Decode(name) else {
            throw .invalidOnion(host, reason: "only the letters a–z and digits 2–7 may appear before .onion")
        }
        guard decoded[34] == version else {
            throw .invalidOnion(host, reason: "version byte is \(decoded[34]), expected \(version)")
        }
        guard Array(decoded[32..<34]) == checksum(publicKey: Array(decoded[0..<32]), version: decoded[34]) else {
            throw .onionChecksumMismatch(host)
        }
        return name
    }

    /// The 35 bytes behind a validated onion name (the form BOLT-7 carries).
    static func decode(_ name: String) -> [UInt8]? {
        guard name.utf8.count == encodedLength else { return nil }
        return base32Decode(name)
    }

    /// The onion name (without ".onion") of the service with this ed25519 public key.
    public static func name(forPublicKey publicKey: [UInt8]) -> String {
        precondition(publicKey.count == publicKeyLength, "an onion service key is \(publicKeyLength) bytes")
        return base32Encode(publicKey + checksum(publicKey: publicKey, version: version) + [version])
    }

    static func checksum(publicKey: [UInt8], version: UInt8) -> [UInt8] {
        Array(sha3_256(Array(".onion checksum".utf8) + publicKey + [version]).prefix(2))
    }

    static func sha3_256(_ bytes: [UInt8]) -> [UInt8] {
        var hash = SHA3_256()
        bytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
        return hash.finalize().withUnsafeBytes { Array($0) }
    }

    /// RFC 4648 base32 without padding, lowercase only; nil on any other character or
    /// on non-zero leftover bits.
    static func base32Decode(_ text: String) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        for character in text.utf8 {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            buffer = buffer << 5 | UInt32(value)
            bits += 5
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
                buffer &= (1 << UInt32(bits)) - 1
            }
        }
        guard buffer == 0 else { return nil }
        return output
    }

    static func base32Encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                output.append(alphabet[Int(buffer >> UInt32(bits) & 31)])
            }
            buffer &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 { output.append(alphabet[Int(buffer << UInt32(5 - bits) & 31)]) }
        return String(decoding: output, as: UTF8.self)
    }
}
