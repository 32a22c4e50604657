import LNPCrypto
@testable import LNPSession
import Testing

/// BOLT-8 Appendix A, every case, both sides.
@Suite struct TransportVectorTests {
    let vectors: [String: Any]

    init() throws { vectors = try Fixture.json("bolt08-transport") }

    @Test func initiatorSuccessfulHandshake() throws {
        let v = try vectors.object("initiator")
        var initiator = HandshakeInitiator(
            localStatic: try PrivateKey(v.bytes("ls_priv")),
            remoteStatic: try PublicKey(v.bytes("rs_pub")),
            ephemeral: try PrivateKey(v.bytes("e_priv")))
        #expect(try initiator.makeActOne() == v.bytes("act_one_output"))
        let (actThree, result) = try initiator.receiveActTwo(v.bytes("act_two_input"))
        #expect(actThree == (try v.bytes("act_three_output")))
        #expect(result.sendingCipher.hasSameKey(as: CipherState(testKey: try v.bytes("sk"), chainingKey: [])))
        #expect(result.receivingCipher.hasSameKey(as: CipherState(testKey: try v.bytes("rk"), chainingKey: [])))
        // A second act two is refused rather than reusing the keys.
        #expect(throws: HandshakeError.self) { _ = try initiator.receiveActTwo(v.bytes("act_two_input")) }
    }

    @Test func responderSuccessfulHandshake() throws {
        let v = try vectors.object("responder")
        var responder = HandshakeResponder(localStatic: try PrivateKey(v.bytes("ls_priv")), ephemeral: try PrivateKey(v.bytes("e_priv")))
        #expect(try responder.receiveActOne(v.bytes("act_one_input")) == v.bytes("act_two_output"))
        let result = try responder.receiveActThree(v.bytes("act_three_input"))
        #expect(result.remoteStatic.hex == "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa")
        #expect(result.sendingCipher.hasSameKey(as: CipherState(testKey: try v.bytes("sk"), chainingKey: [])))
        #expect(result.receivingCipher.hasSameKey(as: CipherState(testKey: try v.bytes("rk"), chainingKey: [])))
    }

    @Test func initiatorFailures() throws {
        let cases = try vectors.objects("initiator_failures")
        #expect(cases.count == 4)
        for v in cases {
            let expected = try v.object("expected_error").string("code")
            var initiator = HandshakeInitiator(
                localStatic: try PrivateKey(v.bytes("ls_priv")),
                remoteStatic: try PublicKey(v.bytes("rs_pub")),
                ephemeral: try PrivateKey(v.bytes("e_priv")))
            #expect(try initiator.makeActOne() == v.bytes("act_one_output"))
            let actTwo = try v.bytes("act_two_input")
            let name = try v.string("name")
            do throws(HandshakeError) {
                _ = try initiator.receiveActTwo(actTwo)
                Issue.record("\(name): expected \(expected)")
            } catch {
                #expect(error.specCode == expected, "\(name)")
            }
        }
    }

    @Test func responderFailures() throws {
        let cases = try vectors.objects("responder_failures")
        #expect(cases.count == 9)
        for v in cases {
            let name = try v.string("name")
            let expected = try v.object("expected_error").string("code")
            var responder = HandshakeResponder(localStatic: try PrivateKey(v.bytes("ls_priv")), ephemeral: try PrivateKey(v.bytes("e_priv")))
            let during = try v.object("expected_error").string("during_act")
            let actOne = try v.bytes("act_one_input")
            let expectedActTwo = v["act_two_output"] as? String
            let actThree = (v["act_three_input"] as? String).flatMap { Hex.decode($0) }
            do throws(HandshakeError) {
                let actTwo = try responder.receiveActOne(actOne)
                #expect(during == "three", "\(name): act one should have failed")
                #expect(Hex.encode(actTwo) == expectedActTwo, "\(name)")
                _ = try responder.receiveActThree(actThree ?? [])
                Issue.record("\(name): expected \(expected)")
            } catch {
                #expect(error.specCode == expected, "\(name)")
                #expect(expected.hasPrefix(during == "one" ? "ACT1" : "ACT3"), "\(name)")
            }
        }
    }

    @Test func messageEncryptionWithKeyRotation() throws {
        let v = try vectors.object("message_encryption")
        guard let outputs = v["outputs"] as? [String: String], outputs.count == 6 else {
            Issue.record("outputs missing")
            return
        }
        let cipher = CipherState(testKey: try v.bytes("sk"), chainingKey: try v.bytes("ck"))
        var encoder = FrameEncoder(cipher: cipher)
        var decoder = FrameDecoder(cipher: cipher)
        let plaintext = try v.bytes("plaintext")
        for index in 0...1001 {
            let frame = try encoder.encrypt(plaintext)
            if let expected = outputs[String(index)] {
                #expect(Hex.encode(frame) == expected, "message \(index)")
            }
            decoder.append(frame)
            #expect(try decoder.nextMessage() == plaintext)
        }
        #expect(try decoder.nextMessage() == nil)
    }

    @Test func rotationVectorsMatchCipherState() throws {
        let rotations = try vectors.object("message_encryption").objects("key_rotations")
        #expect(rotations.count == 2)
        for rotation in rotations {
            let (chainingKey, key) = Hashing.hkdfTwoKeys(salt: try rotation.bytes("salt_ck"), inputKeyMaterial: try rotation.bytes("ikm_k"))
            #expect(chainingKey == (try rotation.bytes("new_ck")))
            #expect(key == (try rotation.bytes("new_k")))
        }
    }
}
