/* The C ceiling for `Scripts/bench node`: the work two durable nodes cannot avoid, written
 * directly in C with no framework, run in the same bench run as the Swift figures.
 *
 * Two processes joined by TCP over loopback, like two lnpd:
 *   node A: a storer thread appends each batch of payloads to a log file and fdatasyncs it
 *           (a message is on disk before it is sent); a sender thread encrypts every message
 *           as a BOLT-8 frame (length AEAD + body AEAD, libsodium below 2 KiB, OpenSSL above,
 *           the backends LNPCrypto picks) and writes the frames to the socket.
 *   node B: a reader thread reads and decrypts the frames; a storer thread appends the
 *           payloads to its own log and fdatasyncs once per batch.
 * The figure counts from A's first store to B's last fdatasync. Left out, so the ceiling is
 * generous: the client and its API, the bus between services, indexes, acknowledgements,
 * key rotation. Batches are as large as lnp-bench's (2,000 messages or 4 MiB). Each node
 * stores a payload once (the node keeps small ones in SQLite, large ones in segment files).
 *
 *   node_ceiling DIR COUNT SIZE NAME UNIT [volatile]     (UNIT "msgs/s" or "MB/s")
 * prints {"name": NAME, "value": N, "unit": UNIT}. With "volatile" the logs are written but
 * never fdatasync'ed: the figure without the disk's flush, to show how much of the ceiling
 * is the disk. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_DEPTH 4
#define TAG 16

static long count, size, batch_count;
static int large_frames; /* 4-byte length prefix, as with LNP large frames; else BOLT's 2 */
static unsigned char key[32];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "node_ceiling: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void nonce12(unsigned char out[12], unsigned long long n) {
    memset(out, 0, 4);
    for (int i = 0; i < 8; i++) out[4 + i] = (unsigned char)(n >> (8 * i));
}

static void seal(EVP_CIPHER_CTX *evp, unsigned long long n, unsigned char *buf, size_t len) {
    unsigned char npub[12];
    nonce12(npub, n);
    if (len < 2048) {
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf, buf + len, NULL, buf, len, NULL, 0, NULL, npub, key);
    } else {
        int w;
        EVP_EncryptInit_ex(evp, EVP_chacha20_poly1305(), NULL, key, npub);
        EVP_EncryptUpdate(evp, buf, &w, buf, (int)len);
        EVP_EncryptFinal_ex(evp, buf + len, &w);
        EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_GET_TAG, TAG, buf + len);
    }
}

static int open_(EVP_CIPHER_CTX *evp, unsigned long long n, unsigned char *buf, size_t len) {
    unsigned char npub[12];
    nonce12(npub, n);
    if (len < 2048) {
        return crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, len, buf + len, NULL, 0, npub, key) == 0;
    }
    int w;
    EVP_DecryptInit_ex(evp, EVP_chacha20_poly1305(), NULL, key, npub);
    EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_SET_TAG, TAG, buf + len);
    EVP_DecryptUpdate(evp, buf, &w, buf, (int)len);
    return EVP_DecryptFinal_ex(evp, buf + len, &w) > 0;
}

/* A bounded queue of batches between a node's two threads. */
struct batch {
    unsigned char *data; /* messages back to back, each SIZE bytes */
    long messages;
};
struct queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct batch items[QUEUE_DEPTH];
    int head, length;
};
static void queue_init(struct queue *q) {
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->changed, NULL);
    q->head = q->length = 0;
}
static void queue_push(struct queue *q, struct batch b) {
    pthread_mutex_lock(&q->lock);
    while (q->length == QUEUE_DEPTH) pthread_cond_wait(&q->changed, &q->lock);
    q->items[(q->head + q->length) % QUEUE_DEPTH] = b;
    q->length++;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}
static struct batch queue_pop(struct queue *q) {
    pthread_mutex_lock(&q->lock);
    while (q->length == 0) pthread_cond_wait(&q->changed, &q->lock);
    struct batch b = q->items[q->head];
    q->head = (q->head + 1) % QUEUE_DEPTH;
    q->length--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        p += w;
        n -= (size_t)w;
    }
}

static int durable = 1;

/* Like the node's payload segments: once durable, pages older than the last 128 MiB leave
 * the page cache, so the kernel reuses pages instead of allocating fresh ones. */
#define CACHE_WINDOW (128L << 20)

static void store(int log, const struct batch *b) {
    write_all(log, b->data, (size_t)(b->messages * size));
    if (durable && fdatasync(log) != 0) die("fdatasync");
    off_t end = lseek(log, 0, SEEK_CUR);
    if (durable && end > CACHE_WINDOW) posix_fadvise(log, 0, end - CACHE_WINDOW, POSIX_FADV_DONTNEED);
}

/* ---- node A ---- */
static struct queue a_stored;
static int a_log;

static void *a_storer(void *unused) {
    (void)unused;
    for (long sent = 0; sent < count;) {
        struct batch b = {malloc((size_t)(batch_count * size)), count - sent < batch_count ? count - sent : batch_count};
        memset(b.data, 0x5a, (size_t)(b.messages * size));
        store(a_log, &b);
        queue_push(&a_stored, b);
        sent += b.messages;
    }
    return NULL;
}

static void node_a(int sock) {
    EVP_CIPHER_CTX *evp = EVP_CIPHER_CTX_new();
    size_t prefix = large_frames ? 4 : 2;
    size_t frame = prefix + TAG + (size_t)size + TAG;
    unsigned char *out = malloc(frame * (size_t)batch_count);
    unsigned long long n = 0;
    pthread_t storer;
    queue_init(&a_stored);
    pthread_create(&storer, NULL, a_storer, NULL);
    for (long sent = 0; sent < count;) {
        struct batch b = queue_pop(&a_stored);
        unsigned char *p = out;
        for (long i = 0; i < b.messages; i++) {
            for (size_t j = 0; j < prefix; j++) p[j] = (unsigned char)(size >> (8 * (prefix - 1 - j)));
            seal(evp, n++, p, prefix);
            memcpy(p + prefix + TAG, b.data + i * size, (size_t)size);
            seal(evp, n++, p + prefix + TAG, (size_t)size);
            p += frame;
        }
        write_all(sock, out, (size_t)(p - out));
        free(b.data);
        sent += b.messages;
    }
    pthread_join(storer, NULL);
    EVP_CIPHER_CTX_free(evp);
}

/* ---- node B ---- */
static struct queue b_received;
static int b_log;

static void *b_storer(void *unused) {
    (void)unused;
    for (long stored = 0; stored < count;) {
        struct batch b = queue_pop(&b_received);
        store(b_log, &b);
        stored += b.messages;
        free(b.data);
    }
    return NULL;
}

static void read_all(int fd, unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r == 0) {
            fprintf(stderr, "node_ceiling: node A closed early\n");
            exit(1);
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        p += r;
        n -= (size_t)r;
    }
}

static void node_b(int sock) {
    EVP_CIPHER_CTX *evp = EVP_CIPHER_CTX_new();
    size_t prefix = large_frames ? 4 : 2;
    size_t frame = prefix + TAG + (size_t)size + TAG;
    /* Read in chunks of up to 1 MiB of whole frames; decrypt in place. */
    size_t chunk_frames = frame >= (1 << 20) ? 1 : (1 << 20) / frame;
    unsigned char *in = malloc(frame * chunk_frames);
    unsigned long long n = 0;
    pthread_t storer;
    queue_init(&b_received);
    pthread_create(&storer, NULL, b_storer, NULL);
    for (long received = 0; received < count;) {
        struct batch b = {malloc((size_t)(batch_count * size)), 0};
        long want = count - received < batch_count ? count - received : batch_count;
        while (b.messages < want) {
            size_t frames = (size_t)(want - b.messages) < chunk_frames ? (size_t)(want - b.messages) : chunk_frames;
            read_all(sock, in, frames * frame);
            for (size_t i = 0; i < frames; i++) {
                unsigned char *p = in + i * frame;
                if (!open_(evp, n++, p, prefix) || !open_(evp, n++, p + prefix + TAG, (size_t)size)) {
                    fprintf(stderr, "node_ceiling: a frame failed authentication\n");
                    exit(1);
                }
                memcpy(b.data + b.messages * size, p + prefix + TAG, (size_t)size);
                b.messages++;
            }
        }
        received += b.messages;
        queue_push(&b_received, b);
    }
    pthread_join(storer, NULL);
    EVP_CIPHER_CTX_free(evp);
}

int main(int argc, char **argv) {
    if (argc != 6 && !(argc == 7 && strcmp(argv[6], "volatile") == 0)) {
        fprintf(stderr, "usage: node_ceiling DIR COUNT SIZE NAME UNIT [volatile]\n");
        return 2;
    }
    durable = argc == 6;
    if (sodium_init() < 0) return 1;
    count = atol(argv[2]);
    size = atol(argv[3]);
    if (count <= 0 || size <= 0) {
        fprintf(stderr, "node_ceiling: COUNT and SIZE must be positive\n");
        return 2;
    }
    large_frames = size > 65535 - 2;
    batch_count = (4L << 20) / size;
    if (batch_count < 1) batch_count = 1;
    if (batch_count > 2000) batch_count = 2000;
    randombytes_buf(key, sizeof key);

    char path[4096];
    snprintf(path, sizeof path, "%s/a.log", argv[1]);
    a_log = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    snprintf(path, sizeof path, "%s/b.log", argv[1]);
    b_log = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (a_log < 0 || b_log < 0) die("open log");

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1) != 0 ||
        getsockname(listener, (struct sockaddr *)&address, &length) != 0)
        die("listen");
    int a_sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(a_sock, (struct sockaddr *)&address, sizeof address) != 0) die("connect");
    int b_sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (b_sock < 0) die("accept");
    close(listener);
    int one = 1;
    setsockopt(a_sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    int done[2];
    if (pipe(done) != 0) die("pipe");
    double start = now();
    pid_t b = fork();
    if (b < 0) die("fork");
    if (b == 0) {
        close(a_sock);
        node_b(b_sock);
        double end = now(); /* CLOCK_MONOTONIC is shared by both processes */
        write_all(done[1], (unsigned char *)&end, sizeof end);
        _exit(0);
    }
    close(b_sock);
    node_a(a_sock);
    double end;
    unsigned char *p = (unsigned char *)&end;
    read_all(done[0], p, sizeof end);
    int status;
    waitpid(b, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    double seconds = end - start;
    double value = strcmp(argv[5], "MB/s") == 0 ? (double)count * (double)size / seconds / 1e6 : (double)count / seconds;
    printf("{\"name\": \"%s\", \"value\": %.0f, \"unit\": \"%s\"}\n", argv[4], value, argv[5]);
    snprintf(path, sizeof path, "%s/a.log", argv[1]);
    unlink(path);
    snprintf(path, sizeof path, "%s/b.log", argv[1]);
    unlink(path);
    return 0;
}
