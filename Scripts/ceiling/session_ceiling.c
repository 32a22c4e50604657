/* The C ceiling for `Scripts/bench session`: the same BOLT-8 work as lnp-bench, written
 * directly against libsecp256k1, libsodium and OpenSSL with no framework around it, so
 * the Swift figures can be compared with it in the same run on the same machine.
 * Prints JSON lines {"name": "c.session....", "value": N, "unit": "..."}. */
#include <openssl/evp.h>
#include <secp256k1.h>
#include <secp256k1_ecdh.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static secp256k1_context *ctx;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void nonce12(unsigned char out[12], unsigned long long n) {
    memset(out, 0, 4);
    for (int i = 0; i < 8; i++) out[4 + i] = (unsigned char)(n >> (8 * i));
}

/* Short messages: libsodium; large ones: OpenSSL (the faster of the two at each size). */
static EVP_CIPHER_CTX *evp;
static void seal(const unsigned char *k, unsigned long long n, const unsigned char *ad, size_t adlen,
                 unsigned char *buf, size_t len) {
    unsigned char npub[12];
    nonce12(npub, n);
    if (len < 2048) {
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf, buf + len, NULL, buf, len, ad, adlen, NULL, npub, k);
    } else {
        int w;
        EVP_EncryptInit_ex(evp, EVP_chacha20_poly1305(), NULL, k, npub);
        if (adlen) EVP_EncryptUpdate(evp, NULL, &w, ad, (int)adlen);
        EVP_EncryptUpdate(evp, buf, &w, buf, (int)len);
        EVP_EncryptFinal_ex(evp, buf + len, &w);
        EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_GET_TAG, 16, buf + len);
    }
}
static int open_(const unsigned char *k, unsigned long long n, const unsigned char *ad, size_t adlen,
                 unsigned char *buf, size_t len) {
    unsigned char npub[12];
    nonce12(npub, n);
    if (len < 2048)
        return crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, len, buf + len, ad, adlen, npub, k);
    int w;
    EVP_DecryptInit_ex(evp, EVP_chacha20_poly1305(), NULL, k, npub);
    EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_SET_TAG, 16, buf + len);
    if (adlen) EVP_DecryptUpdate(evp, NULL, &w, ad, (int)adlen);
    EVP_DecryptUpdate(evp, buf, &w, buf, (int)len);
    return EVP_DecryptFinal_ex(evp, buf + len, &w) > 0 ? 0 : -1;
}

static void sha256_2(unsigned char out[32], const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
    crypto_hash_sha256_state s;
    crypto_hash_sha256_init(&s);
    crypto_hash_sha256_update(&s, a, alen);
    crypto_hash_sha256_update(&s, b, blen);
    crypto_hash_sha256_final(&s, out);
}

/* HKDF-SHA256, zero-length info, 64 bytes out. */
static void hkdf(unsigned char ck[32], unsigned char k[32], const unsigned char *ikm, size_t ikmlen) {
    unsigned char prk[32], t[33];
    crypto_auth_hmacsha256_state h;
    crypto_auth_hmacsha256_init(&h, ck, 32);
    crypto_auth_hmacsha256_update(&h, ikm, ikmlen);
    crypto_auth_hmacsha256_final(&h, prk);
    unsigned char one = 1, two = 2;
    crypto_auth_hmacsha256_init(&h, prk, 32);
    crypto_auth_hmacsha256_update(&h, &one, 1);
    crypto_auth_hmacsha256_final(&h, t);
    memcpy(ck, t, 32);
    crypto_auth_hmacsha256_init(&h, prk, 32);
    crypto_auth_hmacsha256_update(&h, t, 32);
    crypto_auth_hmacsha256_update(&h, &two, 1);
    crypto_auth_hmacsha256_final(&h, k);
}

typedef struct { unsigned char h[32], ck[32], k[32]; } sym;

static void sym_init(sym *s, const unsigned char rs[33]) {
    static const char name[] = "Noise_XK_secp256k1_ChaChaPoly_SHA256";
    crypto_hash_sha256(s->ck, (const unsigned char *)name, strlen(name));
    sha256_2(s->h, s->ck, 32, (const unsigned char *)"lightning", 9);
    sha256_2(s->h, s->h, 32, rs, 33);
}

static void new_key(unsigned char priv[32], secp256k1_pubkey *pub, unsigned char ser[33]) {
    do randombytes_buf(priv, 32); while (!secp256k1_ec_seckey_verify(ctx, priv));
    secp256k1_ec_pubkey_create(ctx, pub, priv);
    size_t l = 33;
    secp256k1_ec_pubkey_serialize(ctx, ser, &l, pub, SECP256K1_EC_COMPRESSED);
}

/* One complete handshake, both sides, as lnp-bench does it. Returns 0 on success. */
static int handshake(const unsigned char is[32], const unsigned char is_pub[33],
                     const unsigned char rs[32], const unsigned char rs_pub[33]) {
    sym I, R;
    unsigned char ie[32], ie_pub[33], re[32], re_pub[33], ss[32], act1[50], act2[50], act3[66], tmp[49];
    secp256k1_pubkey iep, rep, p;
    /* initiator: act one */
    sym_init(&I, rs_pub);
    new_key(ie, &iep, ie_pub);
    sha256_2(I.h, I.h, 32, ie_pub, 33);
    secp256k1_ec_pubkey_parse(ctx, &p, rs_pub, 33);
    secp256k1_ecdh(ctx, ss, &p, ie, NULL, NULL);
    hkdf(I.ck, I.k, ss, 32);
    act1[0] = 0;
    memcpy(act1 + 1, ie_pub, 33);
    seal(I.k, 0, I.h, 32, act1 + 34, 0);
    sha256_2(I.h, I.h, 32, act1 + 34, 16);
    /* responder: act one in, act two out */
    sym_init(&R, rs_pub);
    if (act1[0] != 0 || !secp256k1_ec_pubkey_parse(ctx, &p, act1 + 1, 33)) return -1;
    sha256_2(R.h, R.h, 32, act1 + 1, 33);
    secp256k1_ecdh(ctx, ss, &p, rs, NULL, NULL);
    hkdf(R.ck, R.k, ss, 32);
    memcpy(tmp, act1 + 34, 16);
    if (open_(R.k, 0, R.h, 32, tmp, 0)) return -1;
    sha256_2(R.h, R.h, 32, act1 + 34, 16);
    secp256k1_pubkey rie = p;
    new_key(re, &rep, re_pub);
    sha256_2(R.h, R.h, 32, re_pub, 33);
    secp256k1_ecdh(ctx, ss, &rie, re, NULL, NULL);
    hkdf(R.ck, R.k, ss, 32);
    act2[0] = 0;
    memcpy(act2 + 1, re_pub, 33);
    seal(R.k, 0, R.h, 32, act2 + 34, 0);
    sha256_2(R.h, R.h, 32, act2 + 34, 16);
    /* initiator: act two in, act three out */
    if (act2[0] != 0 || !secp256k1_ec_pubkey_parse(ctx, &p, act2 + 1, 33)) return -1;
    sha256_2(I.h, I.h, 32, act2 + 1, 33);
    secp256k1_ecdh(ctx, ss, &p, ie, NULL, NULL);
    hkdf(I.ck, I.k, ss, 32);
    memcpy(tmp, act2 + 34, 16);
    if (open_(I.k, 0, I.h, 32, tmp, 0)) return -1;
    sha256_2(I.h, I.h, 32, act2 + 34, 16);
    act3[0] = 0;
    memcpy(act3 + 1, is_pub, 33);
    seal(I.k, 1, I.h, 32, act3 + 1, 33);
    sha256_2(I.h, I.h, 32, act3 + 1, 49);
    secp256k1_ecdh(ctx, ss, &p, is, NULL, NULL);
    hkdf(I.ck, I.k, ss, 32);
    seal(I.k, 0, I.h, 32, act3 + 50, 0);
    unsigned char sk[32], rk[32];
    memcpy(sk, I.ck, 32);
    hkdf(sk, rk, NULL, 0);
    /* responder: act three in */
    memcpy(tmp, act3 + 1, 49);
    if (act3[0] != 0 || open_(R.k, 1, R.h, 32, tmp, 33)) return -1;
    if (!secp256k1_ec_pubkey_parse(ctx, &p, tmp, 33)) return -1;
    sha256_2(R.h, R.h, 32, act3 + 1, 49);
    secp256k1_ecdh(ctx, ss, &p, re, NULL, NULL);
    hkdf(R.ck, R.k, ss, 32);
    memcpy(tmp, act3 + 50, 16);
    if (open_(R.k, 0, R.h, 32, tmp, 0)) return -1;
    unsigned char rsk[32], rrk[32];
    memcpy(rrk, R.ck, 32);
    hkdf(rrk, rsk, NULL, 0);
    return memcmp(sk, rrk, 32) == 0 ? 0 : -1;
}

/* BOLT frame: 2-byte (or 3-byte large) length + tag, body + tag; rotation every 1000 nonces. */
typedef struct { unsigned char k[32], ck[32]; unsigned long long n; } cs;
static void advance(cs *c) {
    if (++c->n == 1000) { hkdf(c->ck, c->k, c->k, 32); c->n = 0; }
}
static size_t frame_encrypt(cs *c, const unsigned char *m, size_t len, int lenbytes, unsigned char *out) {
    for (int i = 0; i < lenbytes; i++) out[i] = (unsigned char)(len >> (8 * (lenbytes - 1 - i)));
    seal(c->k, c->n, NULL, 0, out, lenbytes);
    advance(c);
    memcpy(out + lenbytes + 16, m, len);
    seal(c->k, c->n, NULL, 0, out + lenbytes + 16, len);
    advance(c);
    return lenbytes + 32 + len;
}
static size_t frame_decrypt(cs *c, unsigned char *in, int lenbytes) {
    if (open_(c->k, c->n, NULL, 0, in, lenbytes)) abort();
    advance(c);
    size_t len = 0;
    for (int i = 0; i < lenbytes; i++) len = len << 8 | in[i];
    if (open_(c->k, c->n, NULL, 0, in + lenbytes + 16, len)) abort();
    advance(c);
    return lenbytes + 32 + len;
}

static void print(const char *name, double value, const char *unit) {
    printf("{\"name\": \"%s\", \"value\": %.0f, \"unit\": \"%s\"}\n", name, value, unit);
}

/* Best rate of `rounds` runs of about `seconds` each. */
#define BEST(var, rounds, seconds, units, body)                                 \
    do {                                                                        \
        long iters = 1;                                                         \
        for (;;) { double t0 = now(); for (long it = 0; it < iters; it++) { body; } \
            double e = now() - t0; if (e > (seconds) / 4) { iters = (long)(iters * (seconds) / e) + 1; break; } iters *= 4; } \
        var = 0;                                                                \
        for (int r = 0; r < (rounds); r++) { double t0 = now();                 \
            for (long it = 0; it < iters; it++) { body; }                       \
            double r_ = iters * (double)(units) / (now() - t0); if (r_ > var) var = r_; } \
    } while (0)

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int rounds = quick ? 2 : 5;
    double seconds = quick ? 0.15 : 0.4;
    if (sodium_init() < 0) return 1;
    ctx = secp256k1_context_create(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY);
    unsigned char seed[32];
    randombytes_buf(seed, 32);
    if (!secp256k1_context_randomize(ctx, seed)) return 1;
    evp = EVP_CIPHER_CTX_new();

    unsigned char is[32], is_pub[33], rs[32], rs_pub[33];
    secp256k1_pubkey tmp;
    new_key(is, &tmp, is_pub);
    new_key(rs, &tmp, rs_pub);
    double rate;
    BEST(rate, rounds, seconds, 1, if (handshake(is, is_pub, rs, rs_pub)) abort());
    print("c.session.handshake", rate, "handshakes/s");

    static unsigned char msg[1048576], out[1048576 + 64];
    randombytes_buf(msg, sizeof msg);
    cs c;
    randombytes_buf(c.k, 32);
    randombytes_buf(c.ck, 32);
    c.n = 0;
    cs start = c;
    size_t sizes[2] = {100, 65535};
    for (int s = 0; s < 2; s++) {
        size_t size = sizes[s];
        char name[64];
        BEST(rate, rounds, seconds, 1, frame_encrypt(&c, msg, size, 2, out));
        snprintf(name, sizeof name, "c.session.encrypt.%zu", size);
        print(name, rate, "msgs/s");
        /* decrypt a ~1 MiB stream produced with the same keys, fresh state each pass */
        size_t frames = 1048576 / (size + 34);
        if (frames < 16) frames = 16;
        unsigned char *stream = malloc(frames * (size + 34)), *work = malloc(frames * (size + 34));
        cs e = start;
        size_t total = 0;
        for (size_t f = 0; f < frames; f++) total += frame_encrypt(&e, msg, size, 2, stream + total);
        BEST(rate, rounds, seconds, frames, {
            cs d = start;
            memcpy(work, stream, total); /* a socket read lands the bytes in a buffer too */
            size_t off = 0;
            while (off < total) off += frame_decrypt(&d, work + off, 2);
        });
        snprintf(name, sizeof name, "c.session.decrypt.%zu", size);
        print(name, rate, "msgs/s");
        free(stream);
        free(work);
    }
    BEST(rate, rounds, seconds, 1048576, frame_encrypt(&c, msg, 1048576, 3, out));
    print("c.session.encrypt.large.1048576", rate, "bytes/s");
    EVP_CIPHER_CTX_free(evp);
    secp256k1_context_destroy(ctx);
    return 0;
}
