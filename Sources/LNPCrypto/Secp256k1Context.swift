import CSecp256k1
import CSodium

/// The one libsecp256k1 context the process uses. Creating a context costs far more than
/// any single operation, and a randomised context is safe to share for every const call.
enum Secp256k1 {
    nonisolated(unsafe) static let context: OpaquePointer = {
        let flags = UInt32(SECP256K1_CONTEXT_SIGN) | UInt32(SECP256K1_CONTEXT_VERIFY)
        guard let context = secp256k1_context_create(flags) else {
            fatalError("libsecp256k1 could not create a context")
        }
        _ = Sodium.ready
        var seed = [UInt8](repeating: 0, count: 32)
        seed.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, 32) }
        // Randomisation blinds signing and key generation against side channels.
        _ = secp256k1_context_randomize(context, seed)
        sodium_memzero(&seed, 32)
        return context
    }()
}
