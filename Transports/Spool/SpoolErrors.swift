import LNPCrypto
import LNPSession

/// Why a bundle file as a whole was refused. Nothing from a refused bundle is used.
public enum SpoolBundleError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLarge(length: Int, limit: Int)
    /// The file does not start with the bundle magic: not a spool bundle at all.
    case notABundle
    case unknownVersion(UInt8)
    /// Shorter than a header and a checksum.
    case truncated(length: Int, minimum: Int)
    /// The header declares more envelopes than the file holds: an interrupted write or copy.
    case envelopesCutShort(declared: Int, complete: Int)
    /// The checksum does not match: the file was damaged or altered.
    case checksumMismatch
    case noEnvelopes
    case tooManyEnvelopes(count: Int, limit: Int)
    /// An envelope's clear header is unreadable (unknown version, declared length over the limit).
    case badEnvelopeHeader(index: Int, SealedEnvelopeError)
    /// Bytes left between the declared envelopes and the checksum.
    case bytesAfterEnvelopes(count: Int)
    case badBundleID(length: Int)

    public var description: String {
        switch self {
        case let .tooLarge(length, limit): "the bundle is \(length) bytes, more than the limit of \(limit)"
        case .notABundle: "the file is not a spool bundle (no LNPSPOOL magic)"
        case let .unknownVersion(version): "the bundle has unknown format version \(version) (only \(SpoolBundle.version) is known)"
        case let .truncated(length, minimum): "the bundle is cut short: \(length) bytes, fewer than the \(minimum) of an empty bundle"
        case let .envelopesCutShort(declared, complete):
            "the bundle is cut short: its header declares \(declared) envelopes but only \(complete) are complete"
        case .checksumMismatch: "the bundle's checksum does not match: the file is damaged or was altered"
        case .noEnvelopes: "the bundle declares no envelopes"
        case let .tooManyEnvelopes(count, limit): "the bundle declares \(count) envelopes, more than the limit of \(limit)"
        case let .badEnvelopeHeader(index, error): "envelope \(index) of the bundle has an unreadable header: \(error)"
        case let .bytesAfterEnvelopes(count): "the bundle has \(count) bytes after its declared envelopes"
        case let .badBundleID(length): "a bundle id must be \(SpoolBundleID.length) bytes, not \(length)"
        }
    }
}

/// A file-system operation on a spool directory, a bundle or the ledger failed.
public enum SpoolFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotRead(path: String, reason: String)
    case cannotWrite(path: String, reason: String)
    case cannotList(path: String, reason: String)
    case tooLarge(path: String, size: Int, limit: Int)

    public var description: String {
        switch self {
        case let .cannotRead(path, reason): "cannot read \(path): \(reason)"
        case let .cannotWrite(path, reason): "cannot write \(path): \(reason)"
        case let .cannotList(path, reason): "cannot list the spool directory \(path): \(reason)"
        case let .tooLarge(path, size, limit): "\(path) is \(size) bytes, more than the limit of \(limit)"
        }
    }
}

/// Why one envelope of an otherwise sound bundle was not taken in. The rest of the bundle is.
public enum SpoolEnvelopeProblem: Error, Equatable, Sendable, CustomStringConvertible {
    case envelope(SealedEnvelopeError)
    case record(EnvelopeRecordError)
    case expired(messageID: [UInt8], expiry: UInt64, now: UInt64)
    /// The same sender and message id came earlier in this import: a replay or a resend.
    case duplicate(messageID: [UInt8])
    /// The caller's store already holds this message from this sender: a replay of an
    /// earlier import.
    case alreadyReceived(messageID: [UInt8])
    /// Sealed by a node other than the peer this spool directory is the link with.
    case unexpectedSender(PublicKey)

    public var description: String {
        switch self {
        case let .envelope(error): "it cannot be opened: \(error)"
        case let .record(error): "its record is invalid: \(error)"
        case let .expired(id, expiry, now): "message \(Hex.encode(id)) expired at \(expiry), before now (\(now))"
        case let .duplicate(id): "message \(Hex.encode(id)) from the same sender came earlier in this import (replayed or resent)"
        case let .alreadyReceived(id): "message \(Hex.encode(id)) from the same sender was received before (replayed or resent)"
        case let .unexpectedSender(sender): "it was sealed by \(sender.hex), not by the peer this spool directory links to"
        }
    }
}

/// An export could not be completed; bundles written before the failure are complete.
public enum SpoolExportError: Error, Equatable, Sendable, CustomStringConvertible {
    case seal(index: Int, SealedEnvelopeError)
    case file(SpoolFileError)
    case badLimit(String)

    public var description: String {
        switch self {
        case let .seal(index, error): "cannot seal record \(index): \(error)"
        case let .file(error): error.description
        case let .badLimit(reason): reason
        }
    }
}

/// An import stopped before it went through the directory; bundles delivered before it
/// stay delivered and recorded.
public enum SpoolImportError: Error, Sendable, CustomStringConvertible {
    case file(SpoolFileError)
    /// The caller's delivery failed; the bundle is not recorded as imported and is tried again next time.
    case deliveryFailed(bundle: SpoolBundleID, reason: String)
    /// ECDH with our node key failed (keyd did not answer); the bundle is tried again next time.
    case keyAgreementFailed(bundle: SpoolBundleID, reason: String)

    public var description: String {
        switch self {
        case let .keyAgreementFailed(bundle, reason):
            "opening bundle \(bundle) needs our node key, and ECDH with it failed: \(reason); the bundle is kept for the next import"
        case let .file(error): error.description
        case let .deliveryFailed(bundle, reason): "storing the contents of bundle \(bundle) failed: \(reason)"
        }
    }
}
