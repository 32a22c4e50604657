/// Every way sealing or opening a sealed envelope can fail. `specCode` names the case as
/// the test vectors (Tests/LNPSessionTests/Fixtures/sealed-envelope.json) do.
public enum SealedEnvelopeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The envelope (given, declared by its header, or that sealing would produce) is
    /// longer than the limit; found before any cryptography is done.
    case tooLarge(length: Int, limit: Int)
    /// Fewer bytes than the header or the header's declared length.
    case truncated(expected: Int, received: Int)
    /// More bytes than the header's declared length.
    case trailingBytes(expected: Int, received: Int)
    case unknownVersion(UInt8)
    /// The clear ephemeral key is not a point on secp256k1.
    case badEphemeralKey
    /// The encrypted sender key failed authentication: the envelope was sealed to another
    /// node key, or its header, ephemeral key or encrypted sender key was altered.
    case notForThisNode
    /// The sender key decrypted and authenticated but is not a valid public key (only a
    /// deliberately malformed envelope can do this).
    case badSenderKey
    /// The payload failed authentication: it was altered, or the sender does not hold the
    /// private key of the sender key it names.
    case badPayloadTag
    /// ECDH with our own node key failed (the key service did not answer).
    case keyAgreementFailed(String)

    public var specCode: String {
        switch self {
        case .tooLarge: "TOO_LARGE"
        case .truncated: "TRUNCATED"
        case .trailingBytes: "TRAILING_BYTES"
        case .unknownVersion: "UNKNOWN_VERSION"
        case .badEphemeralKey: "BAD_EPHEMERAL_KEY"
        case .notForThisNode: "NOT_FOR_THIS_NODE"
        case .badSenderKey: "BAD_SENDER_KEY"
        case .badPayloadTag: "BAD_PAYLOAD_TAG"
        case .keyAgreementFailed: "KEY_AGREEMENT_FAILED"
        }
    }

    public var description: String {
        switch self {
        case let .tooLarge(length, limit):
            "a sealed envelope of \(length) bytes exceeds the limit of \(limit) bytes"
        case let .truncated(expected, received):
            "the sealed envelope is cut short: expected \(expected) bytes, got \(received)"
        case let .trailingBytes(expected, received):
            "the sealed envelope has \(received - expected) bytes after its declared end (\(expected) bytes)"
        case let .unknownVersion(version):
            "the sealed envelope has unknown version \(version) (only \(SealedEnvelope.version) is defined)"
        case .badEphemeralKey:
            "the sealed envelope's ephemeral key is not a valid secp256k1 public key"
        case .notForThisNode:
            "the sealed envelope is not for this node, or its header was altered (the sender key failed authentication)"
        case .badSenderKey:
            "the sealed envelope names a sender key that is not a valid secp256k1 public key"
        case .badPayloadTag:
            "the sealed envelope's payload failed authentication (altered, or not sealed by the sender it names)"
        case let .keyAgreementFailed(detail):
            "ECDH with our node key failed: \(detail)"
        }
    }
}
