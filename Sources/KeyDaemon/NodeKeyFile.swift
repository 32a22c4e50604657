#if canImport(Glibc)
import Glibc
#endif
import LNPCrypto

/// The node's identity key on disk: `node.key` in the data directory, mode 0600, read by
/// keyd and nobody else.
///
/// Format: the magic `LNPK`, a format byte, then either the 32 raw key bytes (format 0) or
/// a `PassphraseEncryption` blob (format 1: Argon2id + XChaCha20-Poly1305).
public enum NodeKeyFile {
    public static let fileName = "node.key"
    static let magic: [UInt8] = Array("LNPK".utf8)

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case tooOpen(path: String, mode: UInt32)
        case malformed(path: String, reason: String)
        case passphraseRequired(path: String)
        case wrongPassphrase(path: String)
        case cannotCreate(path: String, reason: String)

        public var description: String {
            switch self {
            case let .unreadable(path, reason): "cannot read the node key \(path): \(reason)"
            case let .tooOpen(path, mode):
                "the node key \(path) is readable by other users (mode \(String(mode & 0o777, radix: 8))); run: chmod 600 \(path)"
            case let .malformed(path, reason): "the node key \(path) is damaged: \(reason)"
            case let .passphraseRequired(path): "the node key \(path) is encrypted: give its passphrase with --key-passphrase-file or LNP_KEY_PASSPHRASE"
            case let .wrongPassphrase(path): "the passphrase for the node key \(path) is wrong"
            case let .cannotCreate(path, reason): "cannot create the node key \(path): \(reason)"
            }
        }
    }

    /// Loads the key, or creates it on first start (encrypted when a passphrase is given).
    public static func loadOrCreate(directory: String, passphrase: String?,
                                    strength: PassphraseEncryption.Strength = .moderate) throws(Failure) -> PrivateKey {
        let path = directory + "/" + fileName
        if access(path, F_OK) == 0 { return try load(path: path, passphrase: passphrase) }
        let key = PrivateKey.generate()
        var contents = magic
        if let passphrase {
            contents.append(1)
            do {
                contents += try PassphraseEncryption.seal(key.secret.exportBytes(), passphrase: passphrase, strength: strength)
            } catch {
                throw .cannotCreate(path: path, reason: error.description)
            }
        } else {
            contents.append(0)
            contents += key.secret.exportBytes()
        }
        try writeExclusive(path: path, contents: contents)
        return key
    }

    public static func load(path: String, passphrase: String?) throws(Failure) -> PrivateKey {
        var status = stat()
        guard stat(path, &status) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard status.st_mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: UInt32(status.st_mode)) }
        guard status.st_size <= 4_096 else { throw .malformed(path: path, reason: "\(status.st_size) bytes is too large") }
        let contents = try readAll(path: path)
        guard contents.count > 5, Array(contents.prefix(4)) == magic else {
            throw .malformed(path: path, reason: "not an LNP node key file")
        }
        let body = Array(contents.dropFirst(5))
        switch contents[4] {
        case 0:
            guard body.count == 32, let key = try? PrivateKey(body) else {
                throw .malformed(path: path, reason: "the key is not a valid secp256k1 secret")
            }
            return key
        case 1:
            guard let passphrase else { throw .passphraseRequired(path: path) }
            let secret: SecretBytes
            do {
                secret = try PassphraseEncryption.open(body, passphrase: passphrase)
            } catch .wrongPassphrase {
                throw .wrongPassphrase(path: path)
            } catch {
                throw .malformed(path: path, reason: error.description)
            }
            guard let key = try? PrivateKey(UnsafeRawBufferPointer(start: secret.unsafeBaseAddress, count: secret.count)) else {
                throw .malformed(path: path, reason: "the decrypted key is not a valid secp256k1 secret")
            }
            return key
        case let format:
            throw .malformed(path: path, reason: "unknown format \(format)")
        }
    }

    private static func readAll(path: String) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var contents = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4_096)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
            if count == 0 { break }
            contents += chunk[0..<count]
            if contents.count > 4_096 { throw .malformed(path: path, reason: "too large") }
        }
        return contents
    }

    /// Creates the file with mode 0600 (never briefly wider), fsyncs it and its directory.
    private static func writeExclusive(path: String, contents: [UInt8]) throws(Failure) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotCreate(path: path, reason: String(cString: strerror(errno))) }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == contents.count, synced == 0 else {
            unlink(path)
            throw .cannotCreate(path: path, reason: "short write")
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        let dirfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
    }
}
