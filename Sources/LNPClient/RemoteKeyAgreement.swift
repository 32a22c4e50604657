import Dispatch
import LNPBus
import LNPCrypto
import LNPRPC

/// The node key as the services see it (peerd for handshakes, msgd for sealed envelopes):
/// ECDH happens in keyd, over the bus.
///
/// The handshake state machine is synchronous, so this blocks the calling thread until
/// keyd answers or the timeout passes, which fails that handshake and nothing else. TCP
/// and Tor links run handshake acts on a queue of their own, never on the event loop; a
/// serial line on its own thread; spool work on msgd's. The UDP endpoint still calls it on
/// its event loop: one round trip (tens of microseconds inproc) stalls that loop.
public final class RemoteKeyAgreement: StaticKeyAgreement {
    public let publicKey: PublicKey
    private let client: BusClient
    private let timeout: Duration

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Asks keyd for the node id once; `timeout` bounds that and every later ECDH.
    public init(client: BusClient, timeout: Duration = .seconds(5)) async throws {
        self.client = client
        self.timeout = timeout
        let reply = try await client.request(BusMessage(method: KeyMethod.nodeID.rawValue, payload: []), timeout: timeout)
        publicKey = try NodeIDRequest.decode(reply).nodeID
    }

    public func sharedSecret(with point: PublicKey) throws -> [UInt8] {
        let result = ResultBox()
        let semaphore = DispatchSemaphore(value: 0)
        let request = BusMessage(method: KeyMethod.ecdh.rawValue, payload: ECDHRequest(point: point).encoded())
        let client = self.client, timeout = self.timeout
        Task.detached {
            do {
                result.set(.success(try await client.request(request, timeout: timeout)))
            } catch {
                result.set(.failure(error))
            }
            semaphore.signal()
        }
        semaphore.wait()
        switch result.get() {
        case let .success(bytes)?: return try Bytes32.decode(bytes).bytes
        case let .failure(error)?: throw Failure(description: "keyd: \(error)")
        case nil: throw Failure(description: "keyd gave no answer")
        }
    }
}

/// A result handed from a task to a waiting thread; the semaphore orders the accesses.
private final class ResultBox: @unchecked Sendable {
    private var value: Result<[UInt8], any Error>?
    func set(_ value: Result<[UInt8], any Error>) { self.value = value }
    func get() -> Result<[UInt8], any Error>? { value }
}
