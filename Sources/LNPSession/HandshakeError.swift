/// The act of the BOLT-8 handshake in which something went wrong.
public enum HandshakeAct: Int, Sendable, CustomStringConvertible {
    case one = 1, two = 2, three = 3
    public var description: String { "act \(rawValue)" }
}

/// Every way the BOLT-8 handshake can fail. Each case names its act, matching the spec's
/// test-vector codes (ACT1_BAD_VERSION, ACT2_BAD_TAG, ACT3_BAD_CIPHERTEXT, ...).
public enum HandshakeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the act's fixed size arrived before the peer closed or timed out.
    case readFailed(act: HandshakeAct, expected: Int, received: Int)
    case badVersion(act: HandshakeAct, version: UInt8)
    case badPublicKey(act: HandshakeAct)
    /// The act's authentication tag did not verify.
    case badTag(act: HandshakeAct)
    /// Act three: the encrypted static key did not decrypt.
    case badCiphertext
    /// A method was called in a state where it is not allowed (e.g. act two twice).
    case invalidState(String)
    /// ECDH with our own node key failed (the key service did not answer).
    case keyAgreementFailed(String)

    /// The symbolic code used by the BOLT-8 test vectors.
    public var specCode: String {
        switch self {
        case let .readFailed(act, _, _): "ACT\(act.rawValue)_READ_FAILED"
        case let .badVersion(act, _): "ACT\(act.rawValue)_BAD_VERSION"
        case let .badPublicKey(act): "ACT\(act.rawValue)_BAD_PUBKEY"
        case let .badTag(act): "ACT\(act.rawValue)_BAD_TAG"
        case .badCiphertext: "ACT3_BAD_CIPHERTEXT"
        case .invalidState: "INVALID_STATE"
        case .keyAgreementFailed: "KEY_AGREEMENT_FAILED"
        }
    }

    public var description: String {
        switch self {
        case let .readFailed(act, expected, received):
            "handshake \(act) was cut short: expected \(expected) bytes, got \(received)"
        case let .badVersion(act, version):
            "handshake \(act) has unknown version \(version) (only 0 is defined)"
        case let .badPublicKey(act):
            "handshake \(act) carries a malformed public key"
        case let .badTag(act):
            "handshake \(act) failed authentication (the peer does not hold the expected key, or the bytes were altered)"
        case .badCiphertext:
            "handshake act 3: the peer's encrypted static key failed authentication"
        case let .invalidState(detail):
            "handshake used out of order: \(detail)"
        case let .keyAgreementFailed(detail):
            "ECDH with our node key failed: \(detail)"
        }
    }
}

/// Failures after the handshake, on the encrypted message stream.
public enum SessionError: Error, Equatable, Sendable, CustomStringConvertible {
    case handshake(HandshakeError)
    case badLengthTag(messageIndex: UInt64)
    case badBodyTag(messageIndex: UInt64)
    case messageTooLarge(length: Int, limit: Int)
    case firstMessageNotInit(type: UInt16?)
    case malformedInit(String)
    case notReady(String)

    public var description: String {
        switch self {
        case let .handshake(error): error.description
        case let .badLengthTag(index): "message \(index): the encrypted length failed authentication"
        case let .badBodyTag(index): "message \(index): the encrypted body failed authentication"
        case let .messageTooLarge(length, limit): "a \(length)-byte message exceeds the limit of \(limit) bytes"
        case let .firstMessageNotInit(type):
            "the peer's first message must be init (type 16), got \(type.map { "type \($0)" } ?? "a message shorter than its type")"
        case let .malformedInit(detail): "the peer's init message is malformed: \(detail)"
        case let .notReady(detail): "the session is not ready: \(detail)"
        }
    }
}
