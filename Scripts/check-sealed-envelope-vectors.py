#!/usr/bin/env python3
"""Checks Tests/LNPSessionTests/Fixtures/sealed-envelope.json against a second, independent
implementation of the format in Sources/LNPSession/SEALED-ENVELOPE.md, written from the spec
with coincurve (libsecp256k1) and cryptography (ChaCha20-Poly1305).

    python3 Scripts/check-sealed-envelope-vectors.py [path/to/sealed-envelope.json]

Prints one line per case and exits non-zero on the first disagreement.
"""
import hashlib
import hmac
import json
import pathlib
import struct
import sys

from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

VERSION = 1
MAX_LENGTH = 16 << 20
OVERHEAD = 1 + 4 + 33 + 49 + 16


class EnvelopeError(Exception):
    pass


def sha256(data):
    return hashlib.sha256(data).digest()


def hkdf2(salt, ikm):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    t1 = hmac.new(prk, b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(prk, t1 + b"\x02", hashlib.sha256).digest()
    return t1, t2


def nonce(n):
    return b"\x00" * 4 + struct.pack("<Q", n)


def ecdh(private, public):
    # BOLT-8 ECDH: SHA-256 of the compressed shared point.
    point = PublicKey(public).multiply(private.secret)
    return sha256(point.format(compressed=True))


class Schedule:
    def __init__(self, name, prologue):
        h = name.ljust(32, b"\x00") if len(name) <= 32 else sha256(name)
        self.ck, self.h = h, h
        self.trace = {"initial_hash": h}
        self.mix_hash(prologue)
        self.trace["hash_after_prologue"] = self.h

    def mix_hash(self, data):
        self.h = sha256(self.h + data)

    def mix_key(self, secret):
        self.ck, self.k = hkdf2(self.ck, secret)


def begin(vectors, header, recipient_pub, ephemeral_pub):
    s = Schedule(vectors["protocol_name"].encode(), bytes.fromhex(vectors["prologue_label"]) + header)
    s.mix_hash(recipient_pub)
    s.trace["hash_after_recipient"] = s.h
    s.mix_hash(ephemeral_pub)
    s.trace["hash_after_ephemeral"] = s.h
    return s


def after_es(s, es):
    s.mix_key(es)
    s.trace.update(es=es, ck_after_es=s.ck, sender_key_key=s.k)


def after_ss(s, ss):
    s.mix_key(ss)
    s.trace.update(ss=ss, ck_after_ss=s.ck, payload_key=s.k)


def seal(vectors, payload, recipient_pub, sender, ephemeral):
    header = bytes([VERSION]) + struct.pack(">I", len(payload))
    e_pub = ephemeral.public_key.format(compressed=True)
    s = begin(vectors, header, recipient_pub, e_pub)
    after_es(s, ecdh(ephemeral, recipient_pub))
    c_s = ChaCha20Poly1305(s.k).encrypt(nonce(0), sender.public_key.format(compressed=True), s.h)
    s.mix_hash(c_s)
    s.trace["hash_after_sender"] = s.h
    after_ss(s, ecdh(sender, recipient_pub))
    c_p = ChaCha20Poly1305(s.k).encrypt(nonce(0), payload, s.h)
    return header + e_pub + c_s + c_p, s.trace


def parse_key(data):
    if data[0] not in (2, 3):
        return None
    try:
        return PublicKey(data)
    except Exception:
        return None


def open_envelope(vectors, data, local, limit=MAX_LENGTH):
    limit = min(limit, MAX_LENGTH)
    if len(data) > limit:
        raise EnvelopeError("TOO_LARGE")
    if not data:
        raise EnvelopeError("TRUNCATED")
    if data[0] != VERSION:
        raise EnvelopeError("UNKNOWN_VERSION")
    if len(data) < 5:
        raise EnvelopeError("TRUNCATED")
    total = OVERHEAD + struct.unpack(">I", data[1:5])[0]
    if total > limit:
        raise EnvelopeError("TOO_LARGE")
    if len(data) < total:
        raise EnvelopeError("TRUNCATED")
    if len(data) > total:
        raise EnvelopeError("TRAILING_BYTES")
    e_pub = data[5:38]
    if parse_key(e_pub) is None:
        raise EnvelopeError("BAD_EPHEMERAL_KEY")
    local_pub = local.public_key.format(compressed=True)
    s = begin(vectors, data[:5], local_pub, e_pub)
    after_es(s, ecdh(local, e_pub))
    try:
        sender = ChaCha20Poly1305(s.k).decrypt(nonce(0), data[38:87], s.h)
    except Exception:
        raise EnvelopeError("NOT_FOR_THIS_NODE")
    s.mix_hash(data[38:87])
    s.trace["hash_after_sender"] = s.h
    if parse_key(sender) is None:
        raise EnvelopeError("BAD_SENDER_KEY")
    after_ss(s, ecdh(local, sender))
    try:
        payload = ChaCha20Poly1305(s.k).decrypt(nonce(0), data[87:], s.h)
    except Exception:
        raise EnvelopeError("BAD_PAYLOAD_TAG")
    return sender, payload, s.trace


class RecordError(Exception):
    pass


def bigsize(data, at):
    if at >= len(data):
        raise RecordError("RECORD_MALFORMED")
    first = data[at]
    for prefix, width, minimum in ((0xFD, 2, 0xFD), (0xFE, 4, 0x10000), (0xFF, 8, 0x100000000)):
        if first == prefix:
            if at + 1 + width > len(data):
                raise RecordError("RECORD_MALFORMED")
            value = int.from_bytes(data[at + 1:at + 1 + width], "big")
            if value < minimum:
                raise RecordError("RECORD_MALFORMED")
            return value, at + 1 + width
    return first, at + 1


def decode_record(data):
    if len(data) < 1:
        raise RecordError("RECORD_MALFORMED")
    if data[0] != 1:
        raise RecordError("RECORD_UNKNOWN_VERSION")
    if len(data) < 2:
        raise RecordError("RECORD_MALFORMED")
    kind = data[1]
    if kind not in (1, 2):
        raise RecordError("RECORD_UNKNOWN_KIND")
    known = {0, 1, 2, 4, 6, 8} if kind == 1 else {0, 1}
    fields, at, previous = {}, 2, None
    while at < len(data):
        t, at = bigsize(data, at)
        if previous is not None and t <= previous:
            raise RecordError("RECORD_MALFORMED")
        length, at = bigsize(data, at)
        if length > len(data) - at:
            raise RecordError("RECORD_MALFORMED")
        if t % 2 == 0 and t not in known:
            raise RecordError("RECORD_MALFORMED")
        if t in known:
            fields[t] = data[at:at + length]
        at += length
        previous = t

    def need(t):
        if t not in fields:
            raise RecordError("RECORD_MISSING_FIELD")
        return fields[t]

    def tu64(value):
        if len(value) > 8 or (value and value[0] == 0):
            raise RecordError("RECORD_MALFORMED")
        return int.from_bytes(value, "big")

    if kind == 1:
        message_id, created, expiry = need(0), tu64(need(2)), tu64(need(4))
        type_, body = need(6), need(8)
        if len(type_) != 2:
            raise RecordError("RECORD_BAD_FIELD_LENGTH")
        if len(message_id) != 16:
            raise RecordError("RECORD_BAD_FIELD_LENGTH")
        if expiry < created:
            raise RecordError("RECORD_EXPIRY_BEFORE_CREATION")
        decoded = {"kind": "message", "message_id": message_id.hex(), "created": created, "expiry": expiry,
                   "type": int.from_bytes(type_, "big"), "body": body.hex()}
        if 1 in fields:
            decoded["seq"] = in_sequence_range(tu64(fields[1]))
        return decoded
    through = tu64(fields[1]) if 1 in fields else None
    # The id list may be left out only when through_seq is present.
    ids = need(0) if through is None else fields.get(0, b"")
    if len(ids) % 16:
        raise RecordError("RECORD_PARTIAL_MESSAGE_ID")
    if len(ids) // 16 > 1024:
        raise RecordError("RECORD_TOO_MANY_MESSAGE_IDS")
    decoded = {"kind": "receipt", "delivered": [ids[i:i + 16].hex() for i in range(0, len(ids), 16)]}
    if through is not None:
        decoded["through_seq"] = in_sequence_range(through)
    if not ids and through is None:
        raise RecordError("RECORD_NO_MESSAGE_IDS")
    return decoded


def in_sequence_range(value):
    if value == 0 or value > 2**63 - 1:
        raise RecordError("RECORD_SEQUENCE_OUT_OF_RANGE")
    return value


def byte_spec(value):
    if isinstance(value, str):
        return bytes.fromhex(value)
    return bytes.fromhex(value.get("prefix", "")) + bytes.fromhex(value["repeat_byte"]) * value["repeat_count"]


def hexed(trace):
    return {k: v.hex() for k, v in trace.items()}


def main():
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                        pathlib.Path(__file__).resolve().parent.parent / "Tests/LNPSessionTests/Fixtures/sealed-envelope.json")
    vectors = json.loads(path.read_text())
    assert len(vectors["keys"]) == 8
    keys = {}
    for name in ("sender", "recipient", "ephemeral", "other"):
        keys[name] = PrivateKey(bytes.fromhex(vectors["keys"][name + "_priv"]))
        assert keys[name].public_key.format().hex() == vectors["keys"][name + "_pub"], name
    assert vectors["overhead"] == OVERHEAD
    recipient_pub = keys["recipient"].public_key.format()
    failures = 0

    def check(ok, what):
        nonlocal failures
        print(("ok   " if ok else "FAIL ") + what)
        failures += 0 if ok else 1

    for case in vectors["envelopes"]:
        payload = byte_spec(case["payload"])
        envelope, trace = seal(vectors, payload, recipient_pub, keys["sender"], keys["ephemeral"])
        if "envelope" in case:
            same = envelope.hex() == case["envelope"]
        else:
            same = len(envelope) == case["envelope_length"] and sha256(envelope).hex() == case["envelope_sha256"]
        check(same and hexed(trace) == case["key_schedule"], "seal   " + case["name"])
        sender, opened, trace = open_envelope(vectors, envelope, keys["recipient"])
        check(sender == keys["sender"].public_key.format() and opened == payload and hexed(trace) == case["key_schedule"],
              "open   " + case["name"])
        if "record" in case:
            check(decode_record(opened) == case["record"], "record " + case["name"])
    for case in vectors["open_failures"]:
        try:
            open_envelope(vectors, byte_spec(case["envelope"]), keys[case["open_with"]],
                          case.get("maximum_length", MAX_LENGTH))
            code = "OPENED"
        except EnvelopeError as error:
            code = str(error)
        check(code == case["expected_error"], f"fail   {case['name']}: {code}")
    for case in vectors["record_failures"]:
        try:
            decode_record(byte_spec(case["record"]))
            code = "DECODED"
        except RecordError as error:
            code = str(error)
        check(code == case["expected_error"], f"record {case['name']}: {code}")
    for case in vectors["record_accepts"]:
        check(decode_record(byte_spec(case["record"])) == case["decoded"], "record " + case["name"])
    print(f"{failures} disagreement(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
