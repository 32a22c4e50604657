#!/usr/bin/env python3
"""Regenerates the fuzz seed corpora in Tests/Fuzz/Corpus/<target>/ from the spec vectors.

    python3 Tests/Fuzz/make-corpus.py

Sources: Tests/LNPWireTests/Fixtures/bolt01-*.json (BOLT-1 appendices A-C) and
Tests/LNPSessionTests/Fixtures/bolt08-transport.json (BOLT-8 appendix A); the seeds of
the transport targets (socks, torcontrol, datagram, lineframing, envelope, spool) are
written from RFC 1928/1929, tor's control-spec and the formats' own documents. A few seeds
are built from those vectors (messages of every known type around the spec's init, and
frames encrypted with the spec's transport keys), so each target starts with inputs that
reach its deeper code. The input layouts are documented in the harnesses
(Tests/Fuzz/Sources/LNPFuzzTargets/*Target.swift). Output is deterministic; needs only
the Python 3 standard library (ChaCha20-Poly1305 is implemented below, checked against
the spec's encrypted "hello" messages before anything is written).
"""

import hashlib
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fuzz" / "Corpus"
WIRE = ROOT / "Tests" / "LNPWireTests" / "Fixtures"
SESSION = ROOT / "Tests" / "LNPSessionTests" / "Fixtures"


def load(path):
    with open(path) as handle:
        return json.load(handle)


def h(text):
    return bytes.fromhex(text)


# --- ChaCha20-Poly1305 (RFC 8439), only for building seed frames -------------------------

def _rotl(value, count):
    return ((value << count) & 0xFFFFFFFF) | (value >> (32 - count))


def _chacha_block(key, counter, nonce):
    constants = b"expand 32-byte k"
    state = list(struct.unpack("<16I", constants + key + struct.pack("<I", counter) + nonce))
    working = state[:]

    def quarter(a, b, c, d):
        working[a] = (working[a] + working[b]) & 0xFFFFFFFF; working[d] = _rotl(working[d] ^ working[a], 16)
        working[c] = (working[c] + working[d]) & 0xFFFFFFFF; working[b] = _rotl(working[b] ^ working[c], 12)
        working[a] = (working[a] + working[b]) & 0xFFFFFFFF; working[d] = _rotl(working[d] ^ working[a], 8)
        working[c] = (working[c] + working[d]) & 0xFFFFFFFF; working[b] = _rotl(working[b] ^ working[c], 7)

    for _ in range(10):
        quarter(0, 4, 8, 12); quarter(1, 5, 9, 13); quarter(2, 6, 10, 14); quarter(3, 7, 11, 15)
        quarter(0, 5, 10, 15); quarter(1, 6, 11, 12); quarter(2, 7, 8, 13); quarter(3, 4, 9, 14)
    return struct.pack("<16I", *((working[i] + state[i]) & 0xFFFFFFFF for i in range(16)))


def _chacha20(key, counter, nonce, data):
    out = bytearray()
    for block in range(0, len(data), 64):
        stream = _chacha_block(key, counter + block // 64, nonce)
        out += bytes(x ^ y for x, y in zip(data[block:block + 64], stream))
    return bytes(out)


def _poly1305(key, message):
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    accumulator = 0
    for index in range(0, len(message), 16):
        chunk = message[index:index + 16] + b"\x01"
        accumulator = (accumulator + int.from_bytes(chunk, "little")) * r % p
    return ((accumulator + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def seal(key, counter, plaintext, ad=b""):
    """BOLT-8 encryptWithAD: nonce = 4 zero bytes || little-endian u64 counter."""
    nonce = b"\x00" * 4 + struct.pack("<Q", counter)
    one_time_key = _chacha_block(key, 0, nonce)[:32]
    ciphertext = _chacha20(key, 1, nonce, plaintext)

    def pad(data):
        return data + b"\x00" * (-len(data) % 16)

    mac_data = pad(ad) + pad(ciphertext) + struct.pack("<QQ", len(ad), len(ciphertext))
    return ciphertext + _poly1305(one_time_key, mac_data)


class Encoder:
    """One direction of a BOLT-8 transport (no key rotation: seeds stay far below 500 messages)."""

    def __init__(self, key, large=False):
        self.key = key
        self.nonce = 0
        self.large = large

    def frame(self, message):
        length = len(message).to_bytes(3 if self.large else 2, "big")
        header = seal(self.key, self.nonce, length)
        body = seal(self.key, self.nonce + 1, message)
        self.nonce += 2
        return header + body


# --- message builders ---------------------------------------------------------------------

def u16(value):
    return struct.pack(">H", value)


def bigsize(value):
    if value < 0xFD:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + struct.pack(">H", value)
    if value <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack(">I", value)
    return b"\xff" + struct.pack(">Q", value)


def tlv(record_type, value):
    return bigsize(record_type) + bigsize(len(value)) + value


def features(*bits):
    value = 0
    for bit in bits:
        value |= 1 << bit
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def init_message(global_features=b"", local_features=b"", tlvs=b""):
    return u16(16) + u16(len(global_features)) + global_features + u16(len(local_features)) + local_features + tlvs


CHAIN = bytes.fromhex("6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000")  # bitcoin genesis
ADDRESSES = {
    "ipv4": b"\x01" + bytes([203, 0, 113, 7]) + u16(9735),
    "ipv6": b"\x02" + bytes.fromhex("20010db8000000000000000000000001") + u16(9735),
    "torv2": b"\x03" + bytes(range(12)),
    "torv3": b"\x04" + bytes(range(35)) + u16(9735),
    "dns": b"\x05" + bytes([len(b"node.example")]) + b"node.example" + u16(9735),
    "unknown": b"\x09" + b"opaque",
}


def diagnostic(message_type, text, tlvs=b""):
    return u16(message_type) + bytes(32) + u16(len(text)) + text + tlvs


# The feature set the session harness's own init uses (var_onion_optin, payment_secret,
# basic_mpp optional) plus option_lnp_large_frames (181).
SESSION_FEATURES = features(9, 15, 17, 181)
PEER_INIT = init_message(local_features=features(9, 15, 17), tlvs=tlv(1, CHAIN))
PEER_INIT_LARGE = init_message(local_features=SESSION_FEATURES, tlvs=tlv(1, CHAIN) + tlv(3, ADDRESSES["ipv4"]))


def messages():
    init = load(WIRE / "bolt01-init.json")
    seeds = {}
    for index, entry in enumerate(init["valid"] + init["invalid"]):
        seeds[f"spec-init-{index}"] = h(entry["msg"])
    seeds["init-features"] = init_message(features(9), features(0, 9, 14, 17, 44, 181))
    seeds["init-padded-features"] = init_message(b"\x00\x00" + features(12), b"\x00" + features(15, 51))
    seeds["init-unknown-required"] = init_message(local_features=features(100, 16))
    seeds["init-missing-dependency"] = init_message(local_features=features(17, 51))
    seeds["init-networks"] = init_message(local_features=features(15), tlvs=tlv(1, CHAIN + bytes(32)))
    for name, address in ADDRESSES.items():
        seeds[f"init-remote-addr-{name}"] = init_message(tlvs=tlv(1, CHAIN) + tlv(3, address) + tlv(0xC9, b"\x2a"))
    seeds["error"] = diagnostic(17, b"internal error\n\x00\xff")
    seeds["warning-tlv"] = diagnostic(1, b"all channels", tlv(3, b"x") + tlv(0xFD0101, b""))
    seeds["ping"] = u16(18) + u16(4) + u16(3) + b"abc"
    seeds["ping-no-pong"] = u16(18) + u16(65532) + u16(0) + tlv(1, b"")
    seeds["pong"] = u16(19) + u16(4) + bytes(4)
    seeds["unknown-odd"] = u16(0x0101) + b"payload"
    seeds["custom-odd"] = u16(32769) + b"\x00\x01"
    seeds["unknown-even"] = u16(0x0100) + b"payload"
    return seeds


def tlvs():
    spec = load(WIRE / "bolt01-tlv.json")
    seeds = {}
    for group in ("decoding_successes", "decoding_failures", "stream_decoding_failures"):
        for index, entry in enumerate(spec[group]):
            seeds[f"{group.replace('_', '-')}-{entry['namespace']}-{index}"] = h(entry["stream"])
    seeds["large-types"] = tlv(0xFFFE, b"\x01") + tlv(0x10000, b"") + tlv(0x1_0000_0000, b"\x02\x03")
    return seeds


def handshakes():
    spec = load(SESSION / "bolt08-transport.json")
    seeds = {
        "act1-vector": b"\x00" + h(spec["responder"]["act_one_input"]),
        "act2-vector": b"\x01" + h(spec["initiator"]["act_two_input"]),
        "act3-vector": b"\x02" + h(spec["responder"]["act_three_input"]),
    }
    for case in spec["initiator_failures"]:
        seeds[slug(case["expected_error"]["code"])] = b"\x01" + h(case["act_two_input"])
    for case in spec["responder_failures"]:
        if case["expected_error"]["during_act"] == "one":
            seeds[slug(case["expected_error"]["code"])] = b"\x00" + h(case["act_one_input"])
        else:
            seeds[slug(case["expected_error"]["code"])] = b"\x02" + h(case["act_three_input"])
    return seeds


def plan(*entries):
    """planMessages layout: control byte, u16 length, bytes (short bytes are padded with the control byte)."""
    out = b""
    for control, payload, length in entries:
        out += bytes([control]) + u16(len(payload) if length is None else length) + payload
    return out


def frames(spec):
    encryption = spec["message_encryption"]
    outputs = {int(k): h(v) for k, v in encryption["outputs"].items()}
    sk = h(encryption["sk"])
    hello = h(encryption["plaintext"])
    check = Encoder(sk)
    assert check.frame(hello) == outputs[0] and check.frame(hello) == outputs[1], "ChaCha20-Poly1305 self-test failed"

    # Header: mode, limit, 4 chunk-pattern bytes. Mode bits: 0 round trip, 1 large, 2-3 cipher state, 4 zero copy.
    # Planned-message control bits: 0x20 switch format after, 0xc0 = length + 65536, 0x18 encrypt variant.
    seeds = {
        "cipher-vector-0-1": bytes([0x00, 0, 0, 0, 0, 0]) + outputs[0] + outputs[1],
        "cipher-vector-0-1-chunked": bytes([0x10, 0, 1, 7, 18, 0]) + outputs[0] + outputs[1],
        "cipher-vector-500-501": bytes([0x08, 0, 39, 0, 0, 0]) + outputs[500] + outputs[501],
        "cipher-vector-1000-1001": bytes([0x0C, 0, 5, 13, 0, 3]) + outputs[1000] + outputs[1001],
        "cipher-vector-0-limit": bytes([0x00, 1, 0, 0, 0, 0]) + outputs[0],
        "cipher-truncated": bytes([0x00, 0, 2, 0, 0, 0]) + outputs[0] + outputs[1][:25],
    }
    large = Encoder(sk, large=True)
    seeds["cipher-large"] = bytes([0x02, 0, 11, 0, 0, 0]) + large.frame(hello) + large.frame(b"\x00\x12" + u16(300) + u16(296) + bytes(296))
    seeds["roundtrip-hello"] = bytes([0x01, 0, 0, 0, 0, 0]) + plan((0x00, hello, None), (0x08, hello, None), (0x10, hello, None))
    seeds["roundtrip-empty-and-init"] = bytes([0x11, 0, 3, 1, 0, 0]) + plan((0x00, b"", None), (0x00, PEER_INIT, None))
    seeds["roundtrip-rotation"] = bytes([0x05, 0, 17, 0, 0, 0]) + plan(*[(0x00, b"", None)] * 4 + [(0x01, hello, None)])
    seeds["roundtrip-switch-large"] = bytes([0x01, 0, 200, 0, 0, 0]) + plan(
        (0x20, PEER_INIT_LARGE, None), (0xC1, b"", 4000), (0x21, hello, None), (0x00, hello, None))
    seeds["roundtrip-large-limit"] = bytes([0x03, 4, 0, 0, 0, 0]) + plan((0x00, hello, None), (0x07, b"", 2000))
    seeds["roundtrip-bolt-maximum"] = bytes([0x01, 0, 0, 0, 0, 0]) + plan((0x3F, b"", 65535), (0xC0, b"", 0))
    return seeds


def sessions(spec):
    act_one = h(spec["responder"]["act_one_input"])
    act_two = h(spec["initiator"]["act_two_input"])
    act_three = h(spec["responder"]["act_three_input"])
    encryption = spec["message_encryption"]
    outputs = {int(k): h(v) for k, v in encryption["outputs"].items()}
    initiator_sends = h(encryption["sk"])
    initiator_receives = h(encryption["rk"])

    ping = u16(18) + u16(2) + u16(1) + b"\x00"
    seeds = {}
    # Mode 0: [0][options: bit 0 initiator, bit 1 large, bit 2 no start()][4 chunk-pattern bytes][link bytes].
    seeds["raw-responder-hello"] = bytes([0, 0, 0, 0, 0, 0]) + act_one + act_three + outputs[0]
    seeds["raw-responder-chunked"] = bytes([0, 2, 1, 49, 66, 0]) + act_one + act_three
    encoder = Encoder(initiator_sends)
    seeds["raw-responder-init"] = bytes([0, 0, 60, 0, 0, 0]) + act_one + act_three + encoder.frame(PEER_INIT) + encoder.frame(ping)
    encoder = Encoder(initiator_sends)
    first = encoder.frame(PEER_INIT_LARGE)
    encoder.large = True
    seeds["raw-responder-large"] = bytes([0, 2, 0, 0, 0, 0]) + act_one + act_three + first + encoder.frame(ping)
    encoder = Encoder(initiator_receives)
    seeds["raw-initiator-init"] = bytes([0, 1, 25, 0, 0, 0]) + act_two + encoder.frame(PEER_INIT) + encoder.frame(ping)
    seeds["raw-initiator-not-started"] = bytes([0, 5, 0, 0, 0, 0]) + act_two
    seeds["raw-initiator-bad-act2"] = bytes([0, 1, 0, 0, 0, 0]) + act_two[:-1] + b"\x00"
    # Mode 1: [1][options: bit 0 our init offers large frames, bit 1 small limit][4 pattern bytes][planned messages].
    seeds["established-init-ping"] = bytes([1, 0, 0, 0, 0, 0]) + plan((0x00, PEER_INIT, None), (0x00, ping, None))
    seeds["established-large"] = bytes([1, 1, 7, 100, 0, 0]) + plan(
        (0x00, PEER_INIT_LARGE, None), (0xC5, u16(0x8001), 100), (0x00, ping, None))
    seeds["established-limit"] = bytes([1, 2, 0, 0, 0, 0]) + plan((0x00, PEER_INIT, None), (0x00, ping, None), (0x09, u16(0x8001), 1001))
    seeds["established-not-init"] = bytes([1, 0, 0, 0, 0, 0]) + plan((0x00, ping, None))
    seeds["established-bad-init"] = bytes([1, 0, 0, 0, 0, 0]) + plan((0x00, h("001000000000ca012a"), None))
    return seeds


# --- transport targets -------------------------------------------------------------------

def socks():
    """Layout: [options: bit 0 credentials, bits 1-2 destination, bit 3 exact answers][4 pattern bytes][proxy bytes]."""
    ipv4_reply = bytes([5, 0, 0, 1, 127, 0, 0, 1, 0x26, 0x07])
    name_reply = bytes([5, 0, 0, 3, 12]) + b"node.example" + u16(80)
    ipv6_reply = bytes([5, 0, 0, 4]) + bytes(15) + b"\x01" + u16(9735)
    return {
        "noauth-ipv4-reply-leftover": bytes([0x08, 0, 0, 0, 0]) + b"\x05\x00" + ipv4_reply + b"first bytes",
        "noauth-whole": bytes([0x02, 0, 0, 0, 0]) + b"\x05\x00" + ipv4_reply,
        "auth-name-reply-chunked": bytes([0x09, 3, 1, 7, 0]) + b"\x05\x02" + b"\x01\x00" + name_reply,
        "auth-ipv6-reply": bytes([0x0D, 5, 0, 0, 0]) + b"\x05\x02" + b"\x01\x00" + ipv6_reply + b"\x00\x10",
        "onion-intro-failed": bytes([0x08, 0, 0, 0, 0]) + b"\x05\x00" + bytes([5, 0xF2, 0, 1]) + bytes(6),
        "ttl-expired": bytes([0x0E, 1, 0, 0, 0]) + b"\x05\x00" + bytes([5, 0x06, 0, 1]) + bytes(6),
        "refused-methods": bytes([0x00, 0, 0, 0, 0]) + b"\x05\xff",
        "unoffered-method": bytes([0x01, 0, 0, 0, 0]) + b"\x05\x00",
        "auth-rejected": bytes([0x09, 0, 0, 0, 0]) + b"\x05\x02\x01\x01",
        "http-proxy": bytes([0x00, 0, 0, 0, 0]) + b"HTTP/1.1 400 Bad Request\\r\\n\\r\\n",
        "bad-address-type": bytes([0x08, 0, 0, 0, 0]) + b"\x05\x00" + bytes([5, 0, 0, 9, 1, 2]),
    }


def torcontrol():
    """Layout: [options: bit 0 small limits][4 pattern bytes][control-port stream]."""
    onion = "a" * 56
    lines = {
        "protocolinfo": b'250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/run/tor/control.authcookie"\r\n'
                        b'250-VERSION Tor="0.4.8.10"\r\n250 OK\r\n',
        "bootstrap-done": b'650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"\r\n',
        "bootstrap-warn": b'650 STATUS_CLIENT WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay" '
                          b'WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=3 RECOMMENDATION=warn\r\n',
        "circuit-established": b"650 STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED\r\n",
        "hs-desc-uploaded": ("650 HS_DESC UPLOADED %s UNKNOWN $0123456789ABCDEF0123456789ABCDEF01234567~relay\r\n" % onion).encode(),
        "hs-desc-failed": ("650 HS_DESC FAILED %s NO_AUTH $0123456789ABCDEF0123456789ABCDEF01234567 REASON=UPLOAD_REJECTED\r\n"
                           % onion).encode(),
        "data-block": b"250+config-text=\r\nSocksPort 9050\r\n..starts with a dot\r\n\r\nControlPort 9051\r\n.\r\n250 OK\r\n",
        "add-onion": ("250-ServiceID=%s\r\n250-PrivateKey=ED25519-V3:%s\r\n250 OK\r\n" % (onion, "B" * 86)).encode(),
        "error": b'552 Unrecognized key "net/listeners/nothing"\r\n',
        "mixed-event-reply": b"250-first\r\n650 STATUS_CLIENT NOTICE X\r\n",
        "escapes": b'650 STATUS_CLIENT NOTICE CHECKING A="tab\\there \\"quoted\\" \\101\\302\\251" B=plain\r\n',
        "bare-lf-and-event-between": b"250-a\n650-EVENT one\r\n650 two\r\n250 OK\n",
        "not-utf8": b"250 \xff\xfe\r\n",
        "malformed": b"25O OK\r\n",
    }
    seeds = {}
    for name, stream in lines.items():
        seeds[name] = bytes([0, 0, 0, 0, 0]) + stream
    seeds["protocolinfo-chunked"] = bytes([0, 1, 3, 17, 0]) + lines["protocolinfo"]
    seeds["data-block-small-limits"] = bytes([1, 2, 0, 5, 0]) + lines["data-block"]
    seeds["long-line-small-limits"] = bytes([1, 0, 0, 0, 0]) + b"250 " + b"x" * 70 + b"\r\n"
    seeds["many-lines-small-limits"] = bytes([1, 0, 0, 0, 0]) + b"250-x\r\n" * 9 + b"250 OK\r\n"
    return seeds


def datagrams(spec):
    """Layout in DatagramTarget.swift: mode 0 a responder on arbitrary datagrams, mode 1 an established pair."""
    act_one = b"\x01" + h(spec["responder"]["act_one_input"])
    forged = b"\x10" + bytes(4) + b"hello" + bytes(16)

    def item(address, datagram):
        return bytes([1, address]) + u16(len(datagram)) + datagram

    seeds = {
        "responder-act-one": b"\x00" + item(0, act_one),
        "responder-act-one-early-data": b"\x00" + item(0, act_one) + item(0, forged) + item(0, forged) + item(1, forged)
                                        + bytes([2, 0]) * 5,
        "responder-act-one-timers": b"\x00" + item(1, act_one) + bytes([0, 29, 0, 2]) + item(1, act_one) + item(1, forged),
        "responder-endpoint-flood": b"\x00" + b"".join(item(a, act_one) for a in range(4)) + item(0, b"\x03" + bytes(66)),
        "responder-oversized-and-short": b"\x00" + item(0, b"\x11" * 200) + item(0, b"\x01") + item(0, b"") + item(0, b"\x7f"),
    }
    # Mode 1 items: 0 send [u16 n][fate](+[u16 pos][xor]); 1 release; 2 raw to responder; 3 responder sends [n];
    # 4 time [s]; 5 handshake act [which]; 6 raw to initiator.
    seeds["pair-messages"] = b"\x01" + b"\x00" + u16(40) + b"\x00" + b"\x00" + u16(1000) + b"\x00" + b"\x00" + u16(600) + b"\x01"
    seeds["pair-held-and-lost"] = b"\x01" + b"\x00" + u16(500) + b"\x02" + b"\x00" + u16(300) + b"\x03" + b"\x00" + u16(20) + b"\x00" + b"\x01"
    seeds["pair-mutated"] = b"\x01" + b"\x00" + u16(400) + b"\x04" + u16(0x0123) + b"\x80" + b"\x00" + u16(10) + b"\x04" + u16(0) + b"\x01"
    seeds["pair-both-ways"] = b"\x01" + b"\x03\x40" + b"\x00" + u16(90) + b"\x00" + b"\x03\xff" + b"\x06\x03\x10\x00\x00"
    seeds["pair-replays-and-timers"] = b"\x01" + b"\x05\x00\x05\x02\x05\x01" + b"\x04\x10\x00" + u16(50) + b"\x00" + b"\x04\x3c\x04\x3c"
    seeds["pair-injected"] = b"\x01" + b"\x02" + bytes([len(forged)]) + forged + b"\x02\x01\x01" + b"\x06\x02\x02\x00"
    seeds["pair-too-large"] = b"\x01" + b"\x00" + u16(2100) + b"\x00"
    return seeds


def line_frame(datagram):
    """COBS(datagram || CRC-32 little-endian) || 0x00, as LineFraming.swift documents."""
    data = datagram + struct.pack("<I", zlib.crc32(datagram) & 0xFFFFFFFF)
    out = bytearray([0])
    code_index, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_index] = code
            code_index, code = len(out), 1
            out.append(0)
            continue
        out.append(byte)
        code += 1
        if code == 0xFF:
            out[code_index] = code
            code_index, code = len(out), 1
            out.append(0)
    out[code_index] = code
    out.append(0)
    return bytes(out)


def lineframing():
    """Layout: [mode][size][4 pattern bytes][rest]; mode odd: [noise length][noise][planned datagrams]."""
    frames = line_frame(b"\x10\x00\x00\x00\x01hello") + line_frame(bytes(10)) + line_frame(bytes(range(1, 256)))
    broken = bytearray(line_frame(b"checksum"))
    broken[2] ^= 1
    return {
        "stream-frames": bytes([0, 100, 0, 0, 0, 0]) + frames,
        "stream-chunked-noise": bytes([0, 8, 3, 1, 0, 9]) + b"\x00\x00noise" + frames + bytes(broken) + b"\x02\x01\x01\x00",
        "stream-oversized": bytes([0, 0, 0, 0, 0, 0]) + line_frame(bytes(range(1, 100))) + b"tail",
        "roundtrip": bytes([1, 40, 5, 0, 0, 0]) + b"\x03abc" + plan((0x00, b"\x12\x34", None), (0x00, b"", 200), (0x01, b"", 300)),
        "roundtrip-254": bytes([1, 255, 0, 0, 0, 0]) + b"\x00" + plan((0xFF, b"", 254), (0x00, bytes(5), None)),
    }


def envelopes():
    """Layout: [mode][rest]: 0 an envelope; 1 mutations of the genuine one; 2 an envelope record."""
    def record_message(created=b"\x6b\x49\xd2\x00", expiry=b"\x6b\x4b\x23\x80", extra=b""):
        return b"\x01\x01" + tlv(0, bytes(range(16))) + tlv(2, created) + tlv(4, expiry) + tlv(6, u16(32769)) + tlv(8, b"hello") + extra

    seeds = {
        "shaped-header": b"\x00" + b"\x01" + struct.pack(">I", 4) + b"\x02" + bytes(32) + bytes(49) + b"data" + bytes(16),
        "bad-ephemeral-prefix": b"\x00" + b"\x01" + struct.pack(">I", 0) + b"\x04" + bytes(32) + bytes(49) + bytes(16),
        "unknown-version": b"\x00\x02" + bytes(10),
        "trailing": b"\x00" + b"\x01" + struct.pack(">I", 0) + b"\x03" + bytes(32 + 49 + 16 + 1),
        "genuine": b"\x01",
        "genuine-length-changed": b"\x01" + u16(4) + b"\x01",
        "genuine-ephemeral-changed": b"\x01" + u16(6) + b"\x40",
        "genuine-sender-changed": b"\x01" + u16(50) + b"\x01",
        "genuine-payload-changed": b"\x01" + u16(120) + b"\x80",
        "genuine-extended-and-cut": b"\x01" + u16(0xFFFF) + b"\x00" + u16(0xFFFE) + b"\x00",
        "record-message": b"\x02" + record_message(),
        "record-message-odd-extra": b"\x02" + record_message(extra=tlv(9, b"future")),
        "record-expiry-before-created": b"\x02" + record_message(created=b"\x02", expiry=b"\x01"),
        "record-non-minimal-time": b"\x02" + record_message(created=b"\x00\x01"),
        "record-receipt": b"\x02" + b"\x01\x02" + tlv(0, bytes(range(32))),
        "record-receipt-partial": b"\x02" + b"\x01\x02" + tlv(0, bytes(20)),
        "record-unknown-kind": b"\x02" + b"\x01\x03",
    }
    return seeds


def spool_bundle(bundle_id, envelopes_):
    body = b"LNPSPOOL" + b"\x01" + bundle_id + struct.pack(">I", len(envelopes_)) + b"".join(envelopes_)
    return body + hashlib.sha256(body).digest()


def fake_envelope(payload):
    """A clear envelope header (version 1, u32 payload length) and an envelope's size; no cryptography."""
    return b"\x01" + struct.pack(">I", len(payload)) + bytes(98) + payload


def spools():
    """Layout: [mode][rest]: even a bundle file; odd [id byte][u16 position][xor][u16 cut][planned payloads]."""
    two = spool_bundle(bytes(range(16)), [fake_envelope(b"first"), fake_envelope(b"")])
    cut = two[:-40]
    return {
        "bundle": b"\x00" + two,
        "bundle-cut-short": b"\x00" + cut,
        "bundle-bad-checksum": b"\x00" + two[:-1] + bytes([two[-1] ^ 1]),
        "bundle-trailing": b"\x00" + spool_bundle(bytes(16), [fake_envelope(b"x") + b"junk"]),
        "bundle-no-envelopes": b"\x00" + spool_bundle(bytes(16), []),
        "bundle-bad-envelope-version": b"\x00" + spool_bundle(bytes(16), [b"\x02" + fake_envelope(b"")[1:]]),
        "bundle-huge-count": b"\x00" + b"LNPSPOOL\x01" + bytes(16) + b"\xff\xff\xff\xff",
        "not-a-bundle": b"\x00" + b"PK\x03\x04",
        "roundtrip": b"\x01" + b"\x07" + u16(30) + b"\x01" + u16(0xFFFF) + plan((0x00, b"hello", None), (0x05, b"", 300)),
        "roundtrip-cut": b"\x01" + b"\x09" + u16(0) + b"\x00" + u16(60) + plan((0x00, b"a", None), (0x00, b"b", None)),
    }


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write(target, seeds):
    directory = OUT / target
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name, data in sorted(seeds.items()):
        (directory / slug(name)).write_bytes(data)
    return len(seeds)


def main():
    transport = load(SESSION / "bolt08-transport.json")
    corpora = {
        "tlv": tlvs(),
        "message": messages(),
        "handshake": handshakes(),
        "frames": frames(transport),
        "session": sessions(transport),
        "socks": socks(),
        "torcontrol": torcontrol(),
        "datagram": datagrams(transport),
        "lineframing": lineframing(),
        "envelope": envelopes(),
        "spool": spools(),
    }
    total = 0
    for target, seeds in corpora.items():
        count = write(target, seeds)
        total += count
        print(f"{target}: {count} seeds")
    print(f"total: {total} seeds in {OUT.relative_to(ROOT)}")
    assert total < 300


if __name__ == "__main__":
    main()
