import LNPCrypto

/// Fixed sizes of the three BOLT-8 acts.
public enum ActSize {
    public static let one = 50
    public static let two = 50
    public static let three = 66
}

/// What a completed handshake yields: the two transport cipher states and who the
/// peer is (the responder learns the initiator's static key in act three).
public struct HandshakeResult: Sendable {
    public let remoteStatic: PublicKey
    public let sendingCipher: CipherState
    public let receivingCipher: CipherState
}

/// The initiator side of Noise_XK: act one out, act two in, act three out.
/// Each state carries exactly what the next step needs; calling a step in the wrong
/// state throws rather than silently reusing keys.
public struct HandshakeInitiator: Sendable {
    private enum State {
        case ready(ephemeral: PrivateKey)
        case awaitingActTwo(ephemeral: PrivateKey, symmetric: SymmetricState)
        case complete
        case failed
    }

    private let localStatic: any StaticKeyAgreement
    public let remoteStatic: PublicKey
    private var state: State
    private var symmetricSeed: SymmetricState

    /// `ephemeral` is only for reproducing test vectors; production passes nothing.
    public init(localStatic: any StaticKeyAgreement, remoteStatic: PublicKey, ephemeral: PrivateKey? = nil) {
        self.localStatic = localStatic
        self.remoteStatic = remoteStatic
        self.state = .ready(ephemeral: ephemeral ?? .generate())
        self.symmetricSeed = SymmetricState(responderStatic: remoteStatic)
    }

    public mutating func makeActOne() throws(HandshakeError) -> [UInt8] {
        guard case let .ready(ephemeral) = state else { throw .invalidState("act one was already sent") }
        var symmetric = symmetricSeed
        let ephemeralPublic = ephemeral.publicKey.compressed
        symmetric.mixHash(ephemeralPublic)
        symmetric.mixKey(ephemeral.sharedSecret(with: remoteStatic))
        let tag = symmetric.encryptAndHash(nonce: 0, [])
        state = .awaitingActTwo(ephemeral: ephemeral, symmetric: symmetric)
        var act = [UInt8]()
        act.reserveCapacity(ActSize.one)
        act.append(0)
        act += ephemeralPublic
        act += tag
        return act
    }

    /// Consumes act two and returns act three together with the transport ciphers.
    public mutating func receiveActTwo(_ act: [UInt8]) throws(HandshakeError) -> (actThree: [UInt8], result: HandshakeResult) {
        guard case .awaitingActTwo(let ephemeral, var symmetric) = state else {
            throw .invalidState("act two arrived before act one was sent, or twice")
        }
        state = .failed
        guard act.count == ActSize.two else { throw .readFailed(act: .two, expected: ActSize.two, received: act.count) }
        guard act[0] == 0 else { throw .badVersion(act: .two, version: act[0]) }
        guard let remoteEphemeral = try? PublicKey(act[1..<34]) else { throw .badPublicKey(act: .two) }
        symmetric.mixHash(remoteEphemeral.compressed)
        symmetric.mixKey(ephemeral.sharedSecret(with: remoteEphemeral))
        guard symmetric.decryptAndHash(nonce: 0, Array(act[34..<50])) != nil else { throw .badTag(act: .two) }

        let encryptedStatic = symmetric.encryptAndHash(nonce: 1, localStatic.publicKey.compressed)
        symmetric.mixKey(try staticSharedSecret(localStatic, remoteEphemeral))
        let tag = symmetric.encryptAndHash(nonce: 0, [])
        let (sendKey, receiveKey) = symmetric.split()
        state = .complete

        var actThree = [UInt8]()
        actThree.reserveCapacity(ActSize.three)
        actThree.append(0)
        actThree += encryptedStatic
        actThree += tag
        let result = HandshakeResult(
            remoteStatic: remoteStatic,
            sendingCipher: CipherState(key: sendKey, chainingKey: symmetric.chainingKey),
            receivingCipher: CipherState(key: receiveKey, chainingKey: symmetric.chainingKey)
        )
        return (actThree, result)
    }
}

/// The responder side of Noise_XK: act one in, act two out, act three in.
public struct HandshakeResponder: Sendable {
    private enum State {
        case awaitingActOne(ephemeral: PrivateKey)
        case awaitingActThree(ephemeral: PrivateKey, remoteEphemeral: PublicKey, symmetric: SymmetricState)
        case complete
        case failed
    }

    private let localStatic: any StaticKeyAgreement
    private var state: State

    public init(localStatic: any StaticKeyAgreement, ephemeral: PrivateKey? = nil) {
        self.localStatic = localStatic
        self.state = .awaitingActOne(ephemeral: ephemeral ?? .generate())
    }

    /// Consumes act one and returns act two.
    public mutating func receiveActOne(_ act: [UInt8]) throws(HandshakeError) -> [UInt8] {
        guard case let .awaitingActOne(ephemeral) = state else { throw .invalidState("act one arrived twice") }
        state = .failed
        guard act.count == ActSize.one else { throw .readFailed(act: .one, expected: ActSize.one, received: act.count) }
        guard act[0] == 0 else { throw .badVersion(act: .one, version: act[0]) }
        guard let remoteEphemeral = try? PublicKey(act[1..<34]) else { throw .badPublicKey(act: .one) }
        var symmetric = SymmetricState(responderStatic: localStatic.publicKey)
        symmetric.mixHash(remoteEphemeral.compressed)
        symmetric.mixKey(try staticSharedSecret(localStatic, remoteEphemeral))
        guard symmetric.decryptAndHash(nonce: 0, Array(act[34..<50])) != nil else { throw .badTag(act: .one) }

        let ephemeralPublic = ephemeral.publicKey.compressed
        symmetric.mixHash(ephemeralPublic)
        symmetric.mixKey(ephemeral.sharedSecret(with: remoteEphemeral))
        let tag = symmetric.encryptAndHash(nonce: 0, [])
        state = .awaitingActThree(ephemeral: ephemeral, remoteEphemeral: remoteEphemeral, symmetric: symmetric)

        var actTwo = [UInt8]()
        actTwo.reserveCapacity(ActSize.two)
        actTwo.append(0)
        actTwo += ephemeralPublic
        actTwo += tag
        return actTwo
    }

    /// Consumes act three: authenticates the initiator and yields the transport ciphers.
    public mutating func receiveActThree(_ act: [UInt8]) throws(HandshakeError) -> HandshakeResult {
        guard case .awaitingActThree(let ephemeral, _, var symmetric) = state else {
            throw .invalidState("act three arrived before act two was sent, or twice")
        }
        state = .failed
        guard act.count == ActSize.three else { throw .readFailed(act: .three, expected: ActSize.three, received: act.count) }
        guard act[0] == 0 else { throw .badVersion(act: .three, version: act[0]) }
        guard let staticBytes = symmetric.decryptAndHash(nonce: 1, Array(act[1..<50])) else { throw .badCiphertext }
        guard let remoteStatic = try? PublicKey(staticBytes) else { throw .badPublicKey(act: .three) }
        symmetric.mixKey(ephemeral.sharedSecret(with: remoteStatic))
        guard symmetric.decryptAndHash(nonce: 0, Array(act[50..<66])) != nil else { throw .badTag(act: .three) }
        let (receiveKey, sendKey) = symmetric.split()
        state = .complete
        return HandshakeResult(
            remoteStatic: remoteStatic,
            sendingCipher: CipherState(key: sendKey, chainingKey: symmetric.chainingKey),
            receivingCipher: CipherState(key: receiveKey, chainingKey: symmetric.chainingKey)
        )
    }
}

/// ECDH with the node key, which may live in another service (keyd).
private func staticSharedSecret(_ key: any StaticKeyAgreement, _ point: PublicKey) throws(HandshakeError) -> [UInt8] {
    do {
        return try key.sharedSecret(with: point)
    } catch {
        throw .keyAgreementFailed(String(describing: error))
    }
}
