#if canImport(Glibc)
import Glibc
#endif
import LNPCrypto
import NIOConcurrencyHelpers

/// The node key behind a slow keyd: each ECDH first blocks its thread for `delay`, as
/// `RemoteKeyAgreement` does while keyd is busy or far away. The ECDH itself is real.
public final class SlowKeyAgreement: StaticKeyAgreement {
    public let key: PrivateKey
    private let state = NIOLockedValueBox((delay: Duration.zero, waiting: 0))

    public init(key: PrivateKey) { self.key = key }

    public var publicKey: PublicKey { key.publicKey }
    /// How many calls are inside `sharedSecret` now.
    public var waiting: Int { state.withLockedValue { $0.waiting } }
    public func setDelay(_ delay: Duration) { state.withLockedValue { $0.delay = delay } }

    public func sharedSecret(with point: PublicKey) throws -> [UInt8] {
        let delay = state.withLockedValue { state in
            state.waiting += 1
            return state.delay
        }
        defer { state.withLockedValue { $0.waiting -= 1 } }
        let start = ContinuousClock.now
        // Short steps, so that lowering the delay releases a waiting call.
        while ContinuousClock.now - start < delay, state.withLockedValue({ $0.delay }) != .zero {
            usleep(10_000)
        }
        return key.sharedSecret(with: point)
    }
}
