import LNPCrypto
import LNPSession

/// The BOLT-8 "transport" test vectors (Appendix A): both static keys, both ephemeral
/// keys fixed, so the spec's acts are valid inputs and make good seeds.
enum Bolt8Vector {
    static let initiatorStatic = privateKey("1111111111111111111111111111111111111111111111111111111111111111")
    static let initiatorEphemeral = privateKey("1212121212121212121212121212121212121212121212121212121212121212")
    static let responderStatic = privateKey("2121212121212121212121212121212121212121212121212121212121212121")
    static let responderEphemeral = privateKey("2222222222222222222222222222222222222222222222222222222222222222")

    static let actOne = bytes(hex: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a")
    static let actTwo = bytes(hex: "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae")
    static let actThree = bytes(hex: "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba")
    /// The initiator's sending key (= the responder's receiving key) and its receiving key.
    static let initiatorSendingKey = bytes(hex: "969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9")
    static let initiatorReceivingKey = bytes(hex: "bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442")
    /// The chaining key after the handshake (the message test's `ck`).
    static let chainingKey = bytes(hex: "919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01")

    static func privateKey(_ hex: String) -> PrivateKey {
        guard let key = try? PrivateKey(bytes(hex: hex)) else { fatalError("bad vector key \(hex)") }
        return key
    }

    static func cipher(_ key: [UInt8]) -> CipherState {
        CipherState(testKey: key, chainingKey: chainingKey)
    }
}

/// `handshake`: the first byte picks one act, the rest of the input is that act.
/// - 0: a fresh responder's `receiveActOne`;
/// - 1: `receiveActTwo` of an initiator that has sent the vector's act one;
/// - 2: `receiveActThree` of a responder that has received the vector's act one.
///
/// Properties checked: every failure is the HandshakeError of the first check that fails,
/// in the order BOLT-8 gives (length, version, public key, tag); acceptance implies the
/// input is the spec's own act (nothing else can carry valid tags for these keys) and
/// yields the spec's outputs and keys; a used handshake refuses to run a step again.
public enum HandshakeTarget {
    /// Handshakes in the state each mode starts from, built once (the states are values,
    /// so every execution works on a copy and the ECDH of the earlier acts is not redone).
    static let freshResponder = fixture {
        HandshakeResponder(localStatic: Bolt8Vector.responderStatic, ephemeral: Bolt8Vector.responderEphemeral)
    }

    static let initiatorAfterActOne: HandshakeInitiator = fixture {
        var initiator = HandshakeInitiator(
            localStatic: Bolt8Vector.initiatorStatic, remoteStatic: Bolt8Vector.responderStatic.publicKey,
            ephemeral: Bolt8Vector.initiatorEphemeral)
        guard let act = try? initiator.makeActOne(), act == Bolt8Vector.actOne else {
            fatalError("the initiator does not reproduce the BOLT-8 vector's act one")
        }
        return initiator
    }

    static let responderAfterActOne: HandshakeResponder = fixture {
        var responder = freshResponder
        guard let act = try? responder.receiveActOne(Bolt8Vector.actOne), act == Bolt8Vector.actTwo else {
            fatalError("the responder does not reproduce the BOLT-8 vector's act two")
        }
        return responder
    }

    public static func prepare() {
        _ = (freshResponder, initiatorAfterActOne, responderAfterActOne)
    }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        let mode = input.byte() % 3
        let act = input.rest()
        switch mode {
        case 0: actOne(act)
        case 1: actTwo(act)
        default: actThree(act)
        }
    }

    /// The error BOLT-8's checks give for an act one or two before its tag is looked at,
    /// or nil when only the tag decides.
    static func expectedEarlyError(_ act: [UInt8], _ which: HandshakeAct, size: Int) -> HandshakeError? {
        guard act.count == size else { return .readFailed(act: which, expected: size, received: act.count) }
        guard act[0] == 0 else { return .badVersion(act: which, version: act[0]) }
        guard (try? PublicKey(act[1..<34])) != nil else { return .badPublicKey(act: which) }
        return nil
    }

    static func actOne(_ act: [UInt8]) {
        var responder = freshResponder
        let expected = expectedEarlyError(act, .one, size: ActSize.one)
        do {
            let actTwo = try responder.receiveActOne(act)
            fuzzCheck(expected == nil, "act one \(act.hex) accepted, expected \(String(describing: expected))")
            fuzzCheck(act == Bolt8Vector.actOne, "forged act one \(act.hex) accepted")
            fuzzCheck(actTwo == Bolt8Vector.actTwo, "act two \(actTwo.hex) differs from the vector")
        } catch {
            checkFailure(error, expected: expected ?? .badTag(act: .one), act: act)
        }
        expectInvalidState { () throws(HandshakeError) in _ = try responder.receiveActOne(Bolt8Vector.actOne) }
    }

    static func actTwo(_ act: [UInt8]) {
        var initiator = initiatorAfterActOne
        let expected = expectedEarlyError(act, .two, size: ActSize.two)
        do {
            let (actThree, result) = try initiator.receiveActTwo(act)
            fuzzCheck(expected == nil, "act two \(act.hex) accepted, expected \(String(describing: expected))")
            fuzzCheck(act == Bolt8Vector.actTwo, "forged act two \(act.hex) accepted")
            fuzzCheck(actThree == Bolt8Vector.actThree, "act three \(actThree.hex) differs from the vector")
            fuzzCheck(result.remoteStatic == Bolt8Vector.responderStatic.publicKey, "wrong remote static key")
            fuzzCheck(result.sendingCipher.hasSameKey(as: Bolt8Vector.cipher(Bolt8Vector.initiatorSendingKey)), "wrong sk")
            fuzzCheck(result.receivingCipher.hasSameKey(as: Bolt8Vector.cipher(Bolt8Vector.initiatorReceivingKey)), "wrong rk")
            fuzzCheck(result.sendingCipher.nonce == 0 && result.receivingCipher.nonce == 0, "transport nonces do not start at 0")
        } catch {
            checkFailure(error, expected: expected ?? .badTag(act: .two), act: act)
        }
        expectInvalidState { () throws(HandshakeError) in _ = try initiator.receiveActTwo(Bolt8Vector.actTwo) }
        expectInvalidState { () throws(HandshakeError) in _ = try initiator.makeActOne() }
    }

    static func actThree(_ act: [UInt8]) {
        var responder = responderAfterActOne
        var expected: HandshakeError?
        if act.count != ActSize.three {
            expected = .readFailed(act: .three, expected: ActSize.three, received: act.count)
        } else if act[0] != 0 {
            expected = .badVersion(act: .three, version: act[0])
        } else if act[1..<50] == Bolt8Vector.actThree[1..<50] {
            // The vector's encrypted static key decrypts to a valid key: only the tag is left.
            expected = act == Bolt8Vector.actThree ? nil : .badTag(act: .three)
        }
        do {
            let result = try responder.receiveActThree(act)
            fuzzCheck(act == Bolt8Vector.actThree, "act three \(act.hex) accepted, expected \(String(describing: expected))")
            fuzzCheck(result.remoteStatic == Bolt8Vector.initiatorStatic.publicKey, "wrong initiator static key")
            fuzzCheck(result.sendingCipher.hasSameKey(as: Bolt8Vector.cipher(Bolt8Vector.initiatorReceivingKey)), "wrong sk")
            fuzzCheck(result.receivingCipher.hasSameKey(as: Bolt8Vector.cipher(Bolt8Vector.initiatorSendingKey)), "wrong rk")
        } catch {
            if let expected {
                checkFailure(error, expected: expected, act: act)
            } else {
                // A changed encrypted key fails to decrypt (or, for the spec's "bad rs" vector,
                // decrypts to an invalid key); one that decrypts can then only fail its tag.
                switch error {
                case .badCiphertext, .badPublicKey(act: .three), .badTag(act: .three): break
                default: fuzzFailure("act three \(act.hex) failed with \(error)")
                }
                _ = error.specCode
            }
        }
        expectInvalidState { () throws(HandshakeError) in _ = try responder.receiveActThree(Bolt8Vector.actThree) }
        expectInvalidState { () throws(HandshakeError) in _ = try responder.receiveActOne(Bolt8Vector.actOne) }
    }

    static func checkFailure(_ error: HandshakeError, expected: HandshakeError, act: [UInt8]) {
        fuzzCheck(error == expected, "act \(act.hex) failed with \(error), expected \(expected)")
        fuzzCheck(!error.specCode.isEmpty && !error.description.isEmpty, "empty error text")
    }

    static func expectInvalidState(_ step: () throws(HandshakeError) -> Void) {
        do {
            try step()
            fuzzFailure("a finished handshake ran a step again")
        } catch {
            guard case .invalidState = error else { fuzzFailure("repeated step failed with \(error), not invalidState") }
        }
    }
}
