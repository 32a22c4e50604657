/// Whoever holds a node's static key: ECDH with it, without handing the key over.
///
/// The BOLT-8 handshake needs ECDH with the node key twice. In the node, keyd is the only
/// holder of the key, and peerd reaches it over the bus through its own conformance; tests
/// and single-process embedders use a `PrivateKey` directly.
public protocol StaticKeyAgreement: Sendable {
    var publicKey: PublicKey { get }
    /// BOLT-8 ECDH: SHA-256 of the compressed shared point.
    func sharedSecret(with publicKey: PublicKey) throws -> [UInt8]
}

extension PrivateKey: StaticKeyAgreement {}
