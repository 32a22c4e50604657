import LNPCrypto
import Testing

private func hex(_ string: String) -> [UInt8] { Hex.decode(string)! }

@Suite struct SymmetricTests {
    @Test func sha256AndHmac() {
        #expect(Hex.encode(Hashing.sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Hex.encode(Hashing.hmacSHA256(key: Array("key".utf8), data: Array("The quick brown fox jumps over the lazy dog".utf8)))
            == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    }

    @Test func hkdfMatchesBolt8KeyRotation() {
        // BOLT-8 Appendix A: the first key rotation, ck', k' = HKDF(ck, k).
        let (chainingKey, key) = Hashing.hkdfTwoKeys(
            salt: hex("919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01"),
            inputKeyMaterial: hex("969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9"))
        #expect(Hex.encode(chainingKey) == "cc2c6e467efc8067720c2d09c139d1f77731893aad1defa14f9bf3c48d3f1d31")
        #expect(Hex.encode(key) == "3fbdc101abd1132ca3a0ae34a669d8d9ba69a587e0bb4ddd59524541cf4813d8")
    }

    @Test func aeadMatchesBolt8EncryptSteps() throws {
        // BOLT-8 Appendix A, message 0: the length then the body of "hello".
        let key = hex("969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9")
        for backend in ChaCha20Poly1305.Backend.allCases {
            #expect(Hex.encode(try ChaCha20Poly1305.seal(key: key, nonce: 0, plaintext: [0, 5], backend: backend))
                == "cf2b30ddf0cf3f80e7c35a6e6730b59fe802")
            #expect(Hex.encode(try ChaCha20Poly1305.seal(key: key, nonce: 1, plaintext: Array("hello".utf8), backend: backend))
                == "473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95")
        }
    }

    @Test func backendsAgreeAcrossSizes() throws {
        var rng = SystemRandomNumberGenerator()
        let sizes = [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1000, 2047, 2048, 4096, 65_535, 65_536, 100_003]
        for size in sizes {
            let key = SecureRandom.bytes(32)
            let plaintext = SecureRandom.bytes(size)
            let ad = SecureRandom.bytes(Int.random(in: 0...40, using: &rng))
            let nonce = UInt64.random(in: 0...UInt64.max, using: &rng)
            let sodium = try ChaCha20Poly1305.seal(key: key, nonce: nonce, associatedData: ad, plaintext: plaintext, backend: .libsodium)
            let openssl = try ChaCha20Poly1305.seal(key: key, nonce: nonce, associatedData: ad, plaintext: plaintext, backend: .openssl)
            #expect(sodium == openssl, "size \(size)")
            #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, associatedData: ad, ciphertext: sodium, backend: .openssl) == plaintext)
            #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, associatedData: ad, ciphertext: openssl, backend: .libsodium) == plaintext)
            for backend in ChaCha20Poly1305.Backend.allCases {
                var tampered = sodium
                tampered[Int.random(in: 0..<tampered.count, using: &rng)] ^= 0x80
                #expect(throws: CryptoError.authenticationFailed) {
                    try ChaCha20Poly1305.open(key: key, nonce: nonce, associatedData: ad, ciphertext: tampered, backend: backend)
                }
                #expect(throws: CryptoError.authenticationFailed) {
                    try ChaCha20Poly1305.open(key: key, nonce: nonce &+ 1, associatedData: ad, ciphertext: sodium, backend: backend)
                }
            }
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try ChaCha20Poly1305.open(key: SecureRandom.bytes(32), nonce: 0, ciphertext: [1, 2, 3])
        }
    }

    @Test func chacha20StreamMatchesRFC8439() throws {
        // RFC 8439 section 2.4.2.
        let plaintext = Array("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".utf8)
        let ciphertext = try ChaCha20.xor(key: Array(0..<32), nonce: hex("000000000000004a00000000"), counter: 1, data: plaintext)
        #expect(Hex.encode(ciphertext) == "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab77937365af90bbf74a35be6b40b8eedf2785e42874d")
        #expect(try ChaCha20.xor(key: Array(0..<32), nonce: hex("000000000000004a00000000"), counter: 1, data: ciphertext) == plaintext)
    }

    @Test func hexRoundTripAndRejects() {
        let bytes = SecureRandom.bytes(100)
        #expect(Hex.decode(Hex.encode(bytes)) == bytes)
        #expect(Hex.decode("ABcd") == [0xab, 0xcd])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }

    @Test func secretBytesCompareInConstantTimeAndExport() {
        let a = SecretBytes(copying: [1, 2, 3])
        #expect(a.isEqual(to: SecretBytes(copying: [1, 2, 3])))
        #expect(!a.isEqual(to: SecretBytes(copying: [1, 2, 4])))
        #expect(a.exportBytes() == [1, 2, 3])
    }
}

@Suite struct PassphraseEncryptionTests {
    @Test func sealsAndOpensAndRejectsWrongPassphrase() throws {
        let secret = SecureRandom.bytes(32)
        let sealed = try PassphraseEncryption.seal(secret, passphrase: "correct horse", strength: .interactive)
        #expect(try PassphraseEncryption.open(sealed, passphrase: "correct horse").exportBytes() == secret)
        #expect(throws: PassphraseEncryption.Failure.wrongPassphrase) { try PassphraseEncryption.open(sealed, passphrase: "wrong") }
        var tampered = sealed
        tampered[tampered.count - 1] ^= 1
        #expect(throws: PassphraseEncryption.Failure.wrongPassphrase) { try PassphraseEncryption.open(tampered, passphrase: "correct horse") }
        var costly = sealed
        costly[9] = 0xff
        #expect(throws: PassphraseEncryption.Failure.malformed("implausible cost parameters")) { try PassphraseEncryption.open(costly, passphrase: "correct horse") }
        #expect(throws: PassphraseEncryption.Failure.self) { try PassphraseEncryption.open([1, 2, 3], passphrase: "x") }
    }
}
