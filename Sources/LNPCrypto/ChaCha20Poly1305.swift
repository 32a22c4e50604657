import COpenSSLCrypto
import CSodium

/// ChaCha20-Poly1305 (RFC 8439) with the nonce layout of BOLT-8: 32 zero bits followed by
/// a little-endian 64-bit counter.
///
/// Two C backends produce the same RFC 8439 output: libsodium is the fastest for the short
/// messages that dominate Lightning traffic (it has no per-call context set-up), OpenSSL's
/// AVX-512 code is more than twice as fast on large ones. Measured here: libsodium 1.42 M
/// 100-byte messages/s vs OpenSSL 0.72 M; at 64 KiB OpenSSL 3.3 GB/s vs libsodium 1.5 GB/s.
/// The tests seal with one backend and open with the other.
public enum ChaCha20Poly1305 {
    public static let keyLength = 32
    public static let tagLength = 16
    /// Messages at least this long go to OpenSSL (the crossover measured by `lnp-bench`).
    public static let largeMessageThreshold = 2048

    public enum Backend: Sendable, CaseIterable { case libsodium, openssl }

    /// 12 bytes: 4 zero bytes, then the counter little-endian.
    @inline(__always)
    static func nonceBytes(_ counter: UInt64) -> (UInt64, UInt32) {
        var nonce: (UInt64, UInt32) = (0, 0)
        withUnsafeMutableBytes(of: &nonce) { $0.storeBytes(of: counter.littleEndian, toByteOffset: 4, as: UInt64.self) }
        return nonce
    }

    /// Encrypts `length` bytes at `buffer` in place and writes the 16-byte tag right after them.
    @inlinable
    public static func sealInPlace(
        key: UnsafeRawPointer, nonce: UInt64,
        associatedData: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        buffer: UnsafeMutableRawPointer, length: Int
    ) {
        sealInPlace(key: key, nonce: nonce, associatedData: associatedData, buffer: buffer, length: length,
                    backend: length >= largeMessageThreshold ? .openssl : .libsodium)
    }

    public static func sealInPlace(
        key: UnsafeRawPointer, nonce: UInt64, associatedData: UnsafeRawBufferPointer,
        buffer: UnsafeMutableRawPointer, length: Int, backend: Backend
    ) {
        var nonceStorage = nonceBytes(nonce)
        withUnsafeBytes(of: &nonceStorage) { noncePointer in
            let npub = noncePointer.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let k = key.assumingMemoryBound(to: UInt8.self)
            let m = buffer.assumingMemoryBound(to: UInt8.self)
            let ad = associatedData.baseAddress?.assumingMemoryBound(to: UInt8.self)
            switch backend {
            case .libsodium:
                _ = Sodium.ready
                _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                    m, m + length, nil, m, UInt64(length), ad, UInt64(associatedData.count), nil, npub, k)
            case .openssl:
                let context = EVP_CIPHER_CTX_new()!
                defer { EVP_CIPHER_CTX_free(context) }
                var written: Int32 = 0
                _ = EVP_EncryptInit_ex(context, EVP_chacha20_poly1305(), nil, k, npub)
                if associatedData.count > 0 {
                    _ = EVP_EncryptUpdate(context, nil, &written, ad, Int32(associatedData.count))
                }
                opensslUpdate(context, m, length, encrypt: true)
                _ = EVP_EncryptFinal_ex(context, m + length, &written)
                _ = EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, 16, m + length)
            }
        }
    }

    /// Verifies the tag that follows `length` bytes of ciphertext at `buffer` and decrypts
    /// them in place. On failure the buffer holds no plaintext.
    @inlinable
    public static func openInPlace(
        key: UnsafeRawPointer, nonce: UInt64,
        associatedData: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        buffer: UnsafeMutableRawPointer, length: Int
    ) throws(CryptoError) {
        try openInPlace(key: key, nonce: nonce, associatedData: associatedData, buffer: buffer, length: length,
                        backend: length >= largeMessageThreshold ? .openssl : .libsodium)
    }

    public static func openInPlace(
        key: UnsafeRawPointer, nonce: UInt64, associatedData: UnsafeRawBufferPointer,
        buffer: UnsafeMutableRawPointer, length: Int, backend: Backend
    ) throws(CryptoError) {
        var nonceStorage = nonceBytes(nonce)
        let ok = withUnsafeBytes(of: &nonceStorage) { noncePointer -> Bool in
            let npub = noncePointer.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let k = key.assumingMemoryBound(to: UInt8.self)
            let c = buffer.assumingMemoryBound(to: UInt8.self)
            let ad = associatedData.baseAddress?.assumingMemoryBound(to: UInt8.self)
            switch backend {
            case .libsodium:
                _ = Sodium.ready
                // libsodium checks the tag before it decrypts anything.
                return crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                    c, nil, c, UInt64(length), c + length, ad, UInt64(associatedData.count), npub, k) == 0
            case .openssl:
                let context = EVP_CIPHER_CTX_new()!
                defer { EVP_CIPHER_CTX_free(context) }
                var written: Int32 = 0
                _ = EVP_DecryptInit_ex(context, EVP_chacha20_poly1305(), nil, k, npub)
                _ = EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, 16, c + length)
                if associatedData.count > 0 {
                    _ = EVP_DecryptUpdate(context, nil, &written, ad, Int32(associatedData.count))
                }
                opensslUpdate(context, c, length, encrypt: false)
                if EVP_DecryptFinal_ex(context, c + length, &written) > 0 { return true }
                // OpenSSL decrypts before it knows the tag is bad: leave no plaintext behind.
                sodium_memzero(c, length)
                return false
            }
        }
        if !ok { throw .authenticationFailed }
    }

    /// OpenSSL takes lengths as Int32; feed big buffers in 1 GiB steps.
    private static func opensslUpdate(_ context: OpaquePointer, _ data: UnsafeMutablePointer<UInt8>, _ length: Int, encrypt: Bool) {
        var offset = 0
        var written: Int32 = 0
        while offset < length {
            let step = min(length - offset, 1 << 30)
            if encrypt {
                _ = EVP_EncryptUpdate(context, data + offset, &written, data + offset, Int32(step))
            } else {
                _ = EVP_DecryptUpdate(context, data + offset, &written, data + offset, Int32(step))
            }
            offset += step
        }
    }

    // MARK: Array conveniences (handshake, tests, envelopes): not for the hot path.

    public static func seal(key: [UInt8], nonce: UInt64, associatedData: [UInt8] = [], plaintext: [UInt8],
                            backend: Backend? = nil) throws(CryptoError) -> [UInt8] {
        try requireLength("ChaCha20-Poly1305 key", key.count, keyLength)
        var out = plaintext + [UInt8](repeating: 0, count: tagLength)
        let chosen = backend ?? (plaintext.count >= largeMessageThreshold ? .openssl : .libsodium)
        key.withUnsafeBytes { k in
            associatedData.withUnsafeBytes { ad in
                out.withUnsafeMutableBytes { buffer in
                    sealInPlace(key: k.baseAddress!, nonce: nonce, associatedData: ad,
                                buffer: buffer.baseAddress!, length: plaintext.count, backend: chosen)
                }
            }
        }
        return out
    }

    public static func open(key: [UInt8], nonce: UInt64, associatedData: [UInt8] = [], ciphertext: [UInt8],
                            backend: Backend? = nil) throws(CryptoError) -> [UInt8] {
        try requireLength("ChaCha20-Poly1305 key", key.count, keyLength)
        guard ciphertext.count >= tagLength else { throw .authenticationFailed }
        let length = ciphertext.count - tagLength
        let chosen = backend ?? (length >= largeMessageThreshold ? .openssl : .libsodium)
        var buffer = ciphertext
        let result: Result<Void, CryptoError> = key.withUnsafeBytes { k in
            associatedData.withUnsafeBytes { ad in
                buffer.withUnsafeMutableBytes { raw in
                    do throws(CryptoError) {
                        try openInPlace(key: k.baseAddress!, nonce: nonce, associatedData: ad,
                                        buffer: raw.baseAddress!, length: length, backend: chosen)
                        return .success(())
                    } catch { return .failure(error) }
                }
            }
        }
        try result.get()
        return Array(buffer.prefix(length))
    }
}

/// The ChaCha20 stream cipher (RFC 8439, 96-bit nonce) from libsodium, for onion packets.
public enum ChaCha20 {
    /// XORs `data` with the keystream starting at block `counter`.
    public static func xor(key: [UInt8], nonce: [UInt8], counter: UInt32 = 0, data: [UInt8]) throws(CryptoError) -> [UInt8] {
        try requireLength("ChaCha20 key", key.count, 32)
        try requireLength("ChaCha20 nonce", nonce.count, 12)
        _ = Sodium.ready
        var out = data
        if data.isEmpty { return out }
        out.withUnsafeMutableBufferPointer { buffer in
            _ = crypto_stream_chacha20_ietf_xor_ic(buffer.baseAddress!, buffer.baseAddress!, UInt64(buffer.count), nonce, counter, key)
        }
        return out
    }

    /// `count` bytes of keystream (the XOR of zeros).
    public static func keystream(key: [UInt8], nonce: [UInt8], count: Int) throws(CryptoError) -> [UInt8] {
        try xor(key: key, nonce: nonce, data: [UInt8](repeating: 0, count: count))
    }
}
