/// Every way a cryptographic operation can fail, as a value the caller can report.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidPrivateKey
    case invalidPublicKey
    case invalidSignature
    case invalidLength(what: String, expected: Int, actual: Int)
    case tweakOutOfRange
    case authenticationFailed
    case randomSourceFailed

    public var description: String {
        switch self {
        case .invalidPrivateKey: "the private key is zero or not below the curve order"
        case .invalidPublicKey: "the bytes are not a valid secp256k1 public key"
        case .invalidSignature: "the bytes are not a valid signature encoding"
        case let .invalidLength(what, expected, actual): "\(what) must be \(expected) bytes, got \(actual)"
        case .tweakOutOfRange: "the tweak is out of range or produced an invalid key"
        case .authenticationFailed: "the ciphertext failed authentication (wrong key, nonce or tampered data)"
        case .randomSourceFailed: "the system random source failed"
        }
    }
}

@inline(__always)
func requireLength(_ what: String, _ count: Int, _ expected: Int) throws(CryptoError) {
    if count != expected { throw .invalidLength(what: what, expected: expected, actual: count) }
}
