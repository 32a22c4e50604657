#if canImport(Glibc)
import Glibc
#endif
import CSodium
import Foundation
import LNPCrypto
import LNPTransport

public enum OnionServiceKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(reason: String)
    case unreadable(path: String, reason: String)
    case tooOpen(path: String, mode: UInt32)
    case damaged(path: String, reason: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .malformed(reason): "the onion service key is malformed: \(reason)"
        case let .unreadable(path, reason): "cannot read the onion service key \(path): \(reason)"
        case let .tooOpen(path, mode):
            "the onion service key \(path) is readable by other users (mode \(String(mode & 0o777, radix: 8))); run: chmod 600 \(path)"
        case let .damaged(path, reason): "the onion service key \(path) is damaged: \(reason)"
        case let .cannotWrite(path, reason): "cannot write the onion service key \(path): \(reason)"
        }
    }
}

/// The secret key of the node's v3 onion service, in the form tor's ADD_ONION uses:
/// `ED25519-V3:` + base64 of the 64-byte expanded ed25519 secret key (the clamped scalar
/// `a`, then the 32-byte nonce prefix). Whoever holds it can run the node's .onion, so it
/// lives in `SecretBytes`, prints redacted and is stored with mode 0600.
public struct OnionServiceKey: Sendable, CustomStringConvertible {
    public static let fileName = "onion_v3.key"
    public static let keyType = "ED25519-V3"
    static let expandedKeyLength = 64
    /// A stored key file is one line of about 100 bytes; anything much larger is not ours.
    static let maxFileSize = 1_024

    let expandedSecretKey: SecretBytes
    /// The service's ed25519 public key `A = a·B`.
    public let publicKey: [UInt8]

    /// Parses tor's key blob, with or without the `ED25519-V3:` prefix.
    public init(torKeyBlob: String) throws(OnionServiceKeyError) {
        var base64 = Substring(torKeyBlob)
        if let colon = base64.firstIndex(of: ":") {
            let type = base64[..<colon]
            guard type == Self.keyType else {
                throw .malformed(reason: "key type '\(type.prefix(20))' is not \(Self.keyType) (only v3 onion services are supported)")
            }
            base64 = base64[base64.index(after: colon)...]
        }
        guard base64.utf8.count <= 128 else { throw .malformed(reason: "\(base64.utf8.count) characters is too long for a \(Self.keyType) key") }
        // Tor pads its base64; accept a blob whose padding was stripped too.
        let padded = String(base64) + String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        guard let decoded = Data(base64Encoded: padded) else { throw .malformed(reason: "not base64") }
        try self.init(expandedSecretKey: Array(decoded))
    }

    init(expandedSecretKey bytes: [UInt8]) throws(OnionServiceKeyError) {
        guard bytes.count == Self.expandedKeyLength else {
            throw .malformed(reason: "an expanded ed25519 key is \(Self.expandedKeyLength) bytes, got \(bytes.count)")
        }
        // Tor only produces clamped scalars; anything else is a corrupted or foreign key.
        guard bytes[0] & 7 == 0, bytes[31] & 0x80 == 0, bytes[31] & 0x40 != 0 else {
            throw .malformed(reason: "the secret scalar is not clamped as ed25519 requires")
        }
        guard Self.sodiumReady else { throw .malformed(reason: "libsodium could not be initialised") }
        var publicKey = [UInt8](repeating: 0, count: 32)
        let derived = bytes.withUnsafeBufferPointer { scalar in
            crypto_scalarmult_ed25519_base_noclamp(&publicKey, scalar.baseAddress!)
        }
        guard derived == 0 else { throw .malformed(reason: "the secret scalar gives no valid public key") }
        self.expandedSecretKey = SecretBytes(copying: bytes)
        self.publicKey = publicKey
    }

    private static let sodiumReady: Bool = sodium_init() >= 0

    /// `ED25519-V3:<base64>`, as ADD_ONION takes it.
    public var torKeyBlob: String {
        Self.keyType + ":" + expandedSecretKey.withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// The onion name (ServiceID) without ".onion".
    public var serviceID: String { OnionServiceAddress.name(forPublicKey: publicKey) }

    public var description: String { "OnionServiceKey(\(serviceID).onion, secret redacted)" }

    /// The key stored in `directory`, or nil when there is none yet (first start).
    public static func load(fromDirectory directory: String) throws(OnionServiceKeyError) -> OnionServiceKey? {
        let path = directory + "/" + fileName
        guard access(path, F_OK) == 0 else { return nil }
        return try load(path: path)
    }

    public static func load(path: String) throws(OnionServiceKeyError) -> OnionServiceKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard status.st_mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: UInt32(status.st_mode)) }
        var contents: [UInt8]
        do {
            contents = try readAtMost(maxFileSize + 1, from: fd)
        } catch {
            throw .unreadable(path: path, reason: error.reason)
        }
        defer { contents.withUnsafeMutableBytes { if let base = $0.baseAddress { memset(base, 0, $0.count) } } }
        guard contents.count <= maxFileSize else { throw .damaged(path: path, reason: "larger than \(maxFileSize) bytes") }
        var text = String(decoding: contents, as: UTF8.self)
        while text.last?.isWhitespace == true { text.removeLast() }
        do {
            return try OnionServiceKey(torKeyBlob: text)
        } catch {
            throw .damaged(path: path, reason: error.description)
        }
    }

    /// Stores the key as `directory/onion_v3.key`: written to a temporary file created with
    /// mode 0600, fsynced, renamed over the final name and the directory fsynced, so a
    /// crash leaves either no key or the whole key — never a torn one that would change
    /// the node's .onion.
    public func save(toDirectory directory: String) throws(OnionServiceKeyError) {
        let path = directory + "/" + Self.fileName
        let temporary = path + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        var text = Array((torKeyBlob + "\n").utf8)
        defer { text.withUnsafeMutableBytes { _ = memset($0.baseAddress!, 0, $0.count) } }
        var written = 0
        while written < text.count {
            let count = text.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw .cannotWrite(path: path, reason: reason)
            }
            written += count
        }
        guard fsync(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw .cannotWrite(path: path, reason: "cannot sync: \(reason)")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .cannotWrite(path: path, reason: reason)
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}
