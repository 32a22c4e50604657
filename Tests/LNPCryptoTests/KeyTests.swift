import LNPCrypto
import Testing

private func hex(_ string: String) -> [UInt8] { Hex.decode(string)! }

@Suite struct KeyTests {
    @Test func publicKeyFromKnownPrivateKey() throws {
        // BOLT-8 Appendix A: the initiator's static key.
        let key = try PrivateKey(hex("1111111111111111111111111111111111111111111111111111111111111111"))
        #expect(key.publicKey.hex == "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa")
    }

    @Test func rejectsInvalidPrivateKeys() {
        #expect(throws: CryptoError.invalidPrivateKey) { try PrivateKey([UInt8](repeating: 0, count: 32)) }
        // The curve order n and anything above it.
        #expect(throws: CryptoError.invalidPrivateKey) {
            try PrivateKey(hex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"))
        }
        #expect(throws: CryptoError.invalidLength(what: "private key", expected: 32, actual: 31)) {
            try PrivateKey([UInt8](repeating: 1, count: 31))
        }
    }

    @Test func publicKeyParsingRoundTripsAndRejectsGarbage() throws {
        let key = PrivateKey.generate().publicKey
        #expect(try PublicKey(key.compressed) == key)
        #expect(try PublicKey(key.uncompressed) == key)
        #expect(try PublicKey(hex: key.hex) == key)
        var bad = key.compressed
        bad[0] = 0x04
        #expect(throws: CryptoError.invalidPublicKey) { try PublicKey(bad) }
        #expect(throws: CryptoError.invalidPublicKey) { try PublicKey(hex: "zz") }
        #expect(throws: (any Error).self) { try PublicKey([UInt8](repeating: 2, count: 32)) }
        // x = 5 is not on the curve (x^3 + 7 = 132 is a non-residue mod p).
        #expect(throws: CryptoError.invalidPublicKey) {
            try PublicKey(hex("020000000000000000000000000000000000000000000000000000000000000005"))
        }
    }

    @Test func ecdhIsSymmetricAndMatchesBolt8() throws {
        // BOLT-8 act one: es = ECDH(e, rs) with the spec's keys.
        let ephemeral = try PrivateKey(hex("1212121212121212121212121212121212121212121212121212121212121212"))
        let responderStatic = try PublicKey(hex: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7")
        #expect(Hex.encode(ephemeral.sharedSecret(with: responderStatic)) == "1e2fb3c8fe8fb9f262f649f64d26ecf0f2c0a805a767cf02dc2d77a6ef1fdcc3")
        let a = PrivateKey.generate(), b = PrivateKey.generate()
        #expect(a.sharedSecret(with: b.publicKey) == b.sharedSecret(with: a.publicKey))
    }

    @Test func ecdsaSignVerifyCompactAndDER() throws {
        let key = PrivateKey.generate()
        let digest = Hashing.sha256(Array("lnp".utf8))
        let signature = try key.sign(digest: digest)
        #expect(key.publicKey.verify(signature, digest: digest))
        #expect(!key.publicKey.verify(signature, digest: Hashing.sha256(Array("other".utf8))))
        #expect(!PrivateKey.generate().publicKey.verify(signature, digest: digest))
        #expect(try ECDSASignature(compact: signature.compact) == signature)
        #expect(try ECDSASignature(der: signature.der) == signature)
        #expect(signature.normalized == signature)
        #expect(throws: CryptoError.invalidSignature) { try ECDSASignature(der: [0x30, 0x01, 0x00]) }
        #expect(throws: (any Error).self) { try ECDSASignature(compact: [1, 2, 3]) }
    }

    @Test func ecdsaIsDeterministic() throws {
        // RFC 6979: the same key and digest give the same signature.
        let key = try PrivateKey(hex("0000000000000000000000000000000000000000000000000000000000000001"))
        let digest = [UInt8](repeating: 0xab, count: 32)
        #expect(try key.sign(digest: digest) == key.sign(digest: digest))
    }

    @Test func highSSignatureIsRejectedUntilNormalized() throws {
        let key = PrivateKey.generate()
        let digest = Hashing.sha256([1, 2, 3])
        let low = try key.sign(digest: digest).compact
        // s' = n - s turns a low-S signature into its high-S twin.
        let order = hex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        var high = Array(low[0..<32])
        var borrow = 0
        var s = [UInt8](repeating: 0, count: 32)
        for i in stride(from: 31, through: 0, by: -1) {
            var value = Int(order[i]) - Int(low[32 + i]) - borrow
            borrow = value < 0 ? 1 : 0
            if value < 0 { value += 256 }
            s[i] = UInt8(value)
        }
        high += s
        let highSignature = try ECDSASignature(compact: high)
        #expect(!key.publicKey.verify(highSignature, digest: digest))
        #expect(key.publicKey.verify(highSignature.normalized, digest: digest))
    }

    @Test func bip340Vectors() throws {
        // BIP-340 test vectors 0 and 1.
        let cases: [(secret: String, publicKey: String, aux: String, message: String, signature: String)] = [
            ("0000000000000000000000000000000000000000000000000000000000000003",
             "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9",
             "0000000000000000000000000000000000000000000000000000000000000000",
             "0000000000000000000000000000000000000000000000000000000000000000",
             "e907831f80848d1069a5371b402410364bdf1c5f8307b0084c55f1ce2dca821525f66a4a85ea8b71e482a74f382d2ce5ebeee8fdb2172f477df4900d310536c0"),
            ("b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef",
             "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
             "0000000000000000000000000000000000000000000000000000000000000001",
             "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
             "6896bd60eeae296db48a229ff71dfe071bde413e6d43f917dc8dcf8c78de33418906d11ac976abccb20b091292bff4ea897efcb639ea871cfa95f6de339e4b0a"),
        ]
        for vector in cases {
            let key = try PrivateKey(hex(vector.secret))
            let (xOnly, _) = key.publicKey.xOnly
            #expect(Hex.encode(xOnly.bytes) == vector.publicKey)
            let signature = try key.signSchnorr(message: hex(vector.message), auxRandom: hex(vector.aux))
            #expect(Hex.encode(signature) == vector.signature)
            #expect(xOnly.verifySchnorr(signature, message: hex(vector.message)))
            var tampered = signature
            tampered[63] ^= 1
            #expect(!xOnly.verifySchnorr(tampered, message: hex(vector.message)))
        }
    }

    @Test func tweaksAgreeBetweenPrivateAndPublicKeys() throws {
        let key = PrivateKey.generate()
        let tweak = Hashing.sha256([42])
        #expect(try key.tweakedAdd(tweak).publicKey == key.publicKey.tweakedAdd(tweak))
        #expect(try key.tweakedMultiply(tweak).publicKey == key.publicKey.tweakedMultiply(tweak))
        let other = PrivateKey.generate()
        let sum = try PublicKey.combine([key.publicKey, other.publicKey])
        #expect(try sum == key.tweakedAdd(other.secret.exportBytes()).publicKey)
        // k + (-k) is the point at infinity.
        #expect(throws: CryptoError.invalidPublicKey) { try PublicKey.combine([key.publicKey, key.negated().publicKey]) }
        #expect(throws: CryptoError.tweakOutOfRange) {
            try key.tweakedAdd(hex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"))
        }
    }
}
