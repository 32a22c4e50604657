#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CZeroMQ
import LNPCrypto

/// A CURVE25519 key pair for the bus's tcp transport.
public struct CurveKeyPair: Sendable {
    public static let keySize = 32

    public let publicKey: [UInt8]
    public let secretKey: SecretBytes

    /// Takes a secret key and derives its public key (so a pair is always consistent).
    public init(secretKey: SecretBytes) throws(BusError) {
        guard secretKey.count == CurveKeyPair.keySize else {
            throw BusError(.invalidConfiguration("a CURVE secret key has \(CurveKeyPair.keySize) bytes, not \(secretKey.count)"))
        }
        var secretText = [CChar](repeating: 0, count: 41)
        var publicText = [CChar](repeating: 0, count: 41)
        defer { wipe(&secretText) }
        let encoded = secretKey.withUnsafeBytes { bytes in
            zmq_z85_encode(&secretText, bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count) != nil
        }
        guard encoded, zmq_curve_public(&publicText, secretText) == 0 else {
            throw BusError.lastZMQ("cannot derive a CURVE public key (is libzmq built with CURVE?)")
        }
        var publicKey = [UInt8](repeating: 0, count: CurveKeyPair.keySize)
        guard zmq_z85_decode(&publicKey, publicText) != nil else {
            throw BusError(.invalidConfiguration("libzmq returned an undecodable CURVE public key"))
        }
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh key pair from libzmq (`zmq_curve_keypair`).
    public static func generate() throws(BusError) -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        defer { wipe(&secretText) }
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else {
            throw BusError.lastZMQ("cannot generate a CURVE key pair (is libzmq built with CURVE?)")
        }
        var secret = [UInt8](repeating: 0, count: keySize)
        defer { wipe(&secret) }
        guard zmq_z85_decode(&secret, secretText) != nil else {
            throw BusError(.invalidConfiguration("libzmq returned an undecodable CURVE secret key"))
        }
        return try CurveKeyPair(secretKey: SecretBytes(copying: secret))
    }

    public var publicKeyHex: String { Hex.encode(publicKey) }

    // MARK: Key file

    /// The key file's name inside the node's data directory.
    public static let fileName = "bus-curve.key"

    /// The node's bus key pair: `loadOrCreate(path:)` on `<dataDirectory>/bus-curve.key`.
    public static func loadOrCreate(dataDirectory: String) throws(BusError) -> CurveKeyPair {
        let base = dataDirectory.hasSuffix("/") ? String(dataDirectory.dropLast()) : dataDirectory
        return try loadOrCreate(path: base + "/" + fileName)
    }

    /// Loads the key pair stored at `path`, or creates one there (mode 0600) if the
    /// file does not exist. A file readable by group or others is refused.
    public static func loadOrCreate(path: String) throws(BusError) -> CurveKeyPair {
        if let existing = try loadIfPresent(path: path) { return existing }
        let pair = try generate()
        if try pair.writeIfAbsent(to: path) { return pair }
        // Another process created the file between our two steps: use theirs.
        return try load(path: path)
    }

    /// Reads a key file written by `write(to:)` / `loadOrCreate`.
    public static func load(path: String) throws(BusError) -> CurveKeyPair {
        guard let pair = try loadIfPresent(path: path) else {
            throw BusError(.keyFile(path: path, "does not exist"))
        }
        return pair
    }

    /// Creates `path` with mode 0600 (refusing to overwrite an existing file) and writes the pair.
    public func write(to path: String) throws(BusError) {
        guard try writeIfAbsent(to: path) else {
            throw BusError(.keyFile(path: path, "already exists"))
        }
    }

    private static func loadIfPresent(path: String) throws(BusError) -> CurveKeyPair? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { return nil }
            throw BusError(.keyFile(path: path, "cannot open: \(errnoDescription(code))"))
        }
        defer { _ = systemClose(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw BusError(.keyFile(path: path, "cannot stat: \(errnoDescription(errno))"))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw BusError(.keyFile(path: path, "is not a regular file"))
        }
        let permissions = info.st_mode & 0o777
        guard permissions & 0o077 == 0 else {
            throw BusError(.keyFile(path: path, "is accessible by group or others (mode \(String(permissions, radix: 8))); run chmod 600 on it"))
        }
        guard info.st_size <= 4096 else {
            throw BusError(.keyFile(path: path, "is \(info.st_size) bytes, too large for a key file"))
        }
        var contents = [UInt8](repeating: 0, count: Int(info.st_size))
        defer { wipe(&contents) }
        var filled = 0
        while filled < contents.count {
            let count = contents.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw BusError(.keyFile(path: path, "cannot read: \(errnoDescription(errno))"))
            }
            filled += count
        }
        return try parse(contents, path: path)
    }

    private static func parse(_ contents: [UInt8], path: String) throws(BusError) -> CurveKeyPair {
        var storedPublic: [UInt8]?
        var storedSecret: [UInt8]?
        defer { if storedSecret != nil { wipe(&storedSecret!) } }
        for line in contents.split(separator: UInt8(ascii: "\n")) {
            if line.first == UInt8(ascii: "#") { continue }
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
            guard fields.count == 2 else {
                throw BusError(.keyFile(path: path, "has a line that is not `public <hex>` or `secret <hex>`"))
            }
            let value = Hex.decode(String(decoding: fields[1], as: UTF8.self))
            guard let value, value.count == keySize else {
                throw BusError(.keyFile(path: path, "holds a key that is not \(keySize) bytes of hex"))
            }
            switch String(decoding: fields[0], as: UTF8.self) {
            case "public": storedPublic = value
            case "secret": storedSecret = value
            default: throw BusError(.keyFile(path: path, "has an unknown field"))
            }
        }
        guard let storedPublic, let secret = storedSecret else {
            throw BusError(.keyFile(path: path, "must hold both a `public` and a `secret` line"))
        }
        let pair = try CurveKeyPair(secretKey: SecretBytes(copying: secret))
        guard pair.publicKey == storedPublic else {
            throw BusError(.keyFile(path: path, "holds a public key that does not belong to its secret key"))
        }
        return pair
    }

    /// False when `path` already exists.
    private func writeIfAbsent(to path: String) throws(BusError) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            if code == EEXIST { return false }
            throw BusError(.keyFile(path: path, "cannot create: \(errnoDescription(code))"))
        }
        defer { _ = systemClose(fd) }
        guard fchmod(fd, 0o600) == 0 else {
            throw BusError(.keyFile(path: path, "cannot set mode 0600: \(errnoDescription(errno))"))
        }
        var text = Array("# LNP Node bus CURVE key pair; keep private (mode 0600)\npublic \(publicKeyHex)\nsecret ".utf8)
        text += secretKey.withUnsafeBytes { Array(Hex.encode($0).utf8) }
        text.append(UInt8(ascii: "\n"))
        defer { wipe(&text) }
        var written = 0
        while written < text.count {
            let count = text.withUnsafeBytes { systemWrite(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let reason = errnoDescription(errno)
                _ = unlink(path)
                throw BusError(.keyFile(path: path, "cannot write: \(reason)"))
            }
            written += count
        }
        guard fsync(fd) == 0 else {
            throw BusError(.keyFile(path: path, "cannot sync: \(errnoDescription(errno))"))
        }
        return true
    }
}

@inline(__always)
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

func wipe<T: FixedWidthInteger>(_ bytes: inout [T]) {
    bytes.withUnsafeMutableBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        zeroBytes(base, buffer.count)
    }
}

@inline(never)
private func zeroBytes(_ base: UnsafeMutableRawPointer, _ count: Int) {
    let bytes = base.bindMemory(to: UInt8.self, capacity: count)
    for index in 0..<count { bytes[index] = 0 }
}

/// The CURVE keys of one bus node, for the tcp transport.
///
/// One server key pair per node: every server of the node binds with it and every
/// client pins its public key. Clients authenticate with their own key pair, and a
/// server accepts only clients whose public key is in `authorizedClientKeys` or is
/// this process's own `client` key (checked through a ZAP handler), so knowing the
/// server's public key alone does not open the RPC.
public struct CurveKeys: Sendable {
    public var serverPublicKey: [UInt8]
    /// Present in processes that run servers.
    public var serverSecretKey: SecretBytes?
    public var client: CurveKeyPair
    public var authorizedClientKeys: [[UInt8]]

    /// For a process that runs servers. `client` defaults to the server pair, so the
    /// node's own processes that hold its key file can call each other.
    public init(server: CurveKeyPair, client: CurveKeyPair? = nil, authorizedClientKeys: [[UInt8]] = []) {
        serverPublicKey = server.publicKey
        serverSecretKey = server.secretKey
        self.client = client ?? server
        self.authorizedClientKeys = authorizedClientKeys
    }

    /// For a process that only connects to the node's servers.
    public init(serverPublicKey: [UInt8], client: CurveKeyPair) {
        self.serverPublicKey = serverPublicKey
        serverSecretKey = nil
        self.client = client
        authorizedClientKeys = []
    }

    var acceptedClientKeys: Set<[UInt8]> {
        Set(authorizedClientKeys).union([client.publicKey])
    }

    func validate() throws(BusError) {
        guard serverPublicKey.count == CurveKeyPair.keySize else {
            throw BusError(.insecureEndpoint("the CURVE server public key has \(serverPublicKey.count) bytes, not \(CurveKeyPair.keySize)"))
        }
        if let serverSecretKey, serverSecretKey.count != CurveKeyPair.keySize {
            throw BusError(.insecureEndpoint("the CURVE server secret key has \(serverSecretKey.count) bytes, not \(CurveKeyPair.keySize)"))
        }
        for key in authorizedClientKeys where key.count != CurveKeyPair.keySize {
            throw BusError(.insecureEndpoint("an authorised client key has \(key.count) bytes, not \(CurveKeyPair.keySize)"))
        }
    }
}
