import CSodium

/// Fixed-size secret storage that is wiped when the last reference goes away.
///
/// A class, not an array, so the bytes live in exactly one place that we own and can
/// zero: Swift arrays may be copied or reallocated behind our back.
public final class SecretBytes: @unchecked Sendable {
    // Immutable after init; @unchecked because the pointer is only read after construction.
    let pointer: UnsafeMutableRawBufferPointer

    public var count: Int { pointer.count }

    /// Stable for the lifetime of this object; for hot paths that cannot afford a closure.
    /// The caller keeps a reference to the `SecretBytes` while using the pointer.
    public var unsafeBaseAddress: UnsafeRawPointer { UnsafeRawPointer(pointer.baseAddress!) }

    init(count: Int) {
        pointer = .allocate(byteCount: count, alignment: 16)
        pointer.initializeMemory(as: UInt8.self, repeating: 0)
    }

    public convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        self.init(count: bytes.count)
        _ = pointer.initializeMemory(as: UInt8.self, from: bytes)
    }

    /// Fills a new buffer with `count` bytes from the operating system's CSPRNG (libsodium).
    public static func random(count: Int) -> SecretBytes {
        let secret = SecretBytes(count: count)
        randombytes_buf(secret.pointer.baseAddress!, count)
        return secret
    }

    deinit {
        sodium_memzero(pointer.baseAddress!, pointer.count)
        pointer.deallocate()
    }

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(pointer))
    }

    /// An explicit copy out of protected storage, for serialising a key to disk.
    public func exportBytes() -> [UInt8] { Array(pointer) }

    /// Constant-time comparison.
    public func isEqual(to other: SecretBytes) -> Bool {
        count == other.count && sodium_memcmp(pointer.baseAddress!, other.pointer.baseAddress!, count) == 0
    }
}

public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return out
    }

    public static func uint64() -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { randombytes_buf($0.baseAddress!, 8) }
        return value
    }
}

/// libsodium must be initialised once before use; every entry point that needs it goes
/// through `Sodium.ready`, which Swift evaluates exactly once and thread-safely.
enum Sodium {
    static let ready: Bool = {
        sodium_init() >= 0
    }()
}
