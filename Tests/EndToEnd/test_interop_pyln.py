"""Interop with an independent BOLT-8 implementation: pyln-proto from PyPI."""
import os
import socket
import struct
import threading

from pyln.proto.wire import LightningServerSocket, PrivateKey, PublicKey, connect as pyln_connect

from conftest import wait_for

INIT = struct.pack(">HHH", 16, 0, 0)  # no features


def test_pyln_connects_to_lnpd(nodes):
    a = nodes("a").start()
    key = PrivateKey(os.urandom(32))
    conn = pyln_connect(key, PublicKey(bytes.fromhex(a.node_id)), "127.0.0.1", a.port)
    their_init = conn.read_message()
    assert their_init[:2] == b"\x00\x10", "lnpd must send init first"
    conn.send_message(INIT)
    # ping -> pong with the asked-for size
    conn.send_message(struct.pack(">HHH", 18, 7, 3) + b"abc")
    pong = conn.read_message()
    while pong[:2] != b"\x00\x13":
        pong = conn.read_message()
    assert pong == struct.pack(">HH", 19, 7) + b"\x00" * 7
    # pyln -> lnpd custom message
    our_id = key.public_key().serializeCompressed().hex()
    conn.send_message(struct.pack(">H", 32769) + b"hello from pyln")
    got = a.recv("--count", "1", "--timeout", "20", "--from", our_id)
    assert got[0]["text"] == "hello from pyln" and got[0]["type"] == 32769
    # lnpd -> pyln custom message (plain Lightning message: pyln does not speak lnp_messaging)
    a.cli("send", our_id, "--text", "hello from lnpd")
    while True:
        message = conn.read_message()
        if message[:2] == struct.pack(">H", 32769):
            break
    assert message[2:] == b"hello from lnpd"
    conn.connection.close()


def test_lnpd_connects_to_pyln(nodes):
    a = nodes("a").start()
    key = PrivateKey(os.urandom(32))
    server = LightningServerSocket(key)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    node_id = key.public_key().serializeCompressed().hex()
    result = {}

    def serve():
        conn, _ = server.accept()
        result["init"] = conn.read_message()
        conn.send_message(INIT)
        conn.send_message(struct.pack(">H", 32771) + b"from pyln server")
        while True:
            message = conn.read_message()
            if message[:2] == b"\x00\x12":  # answer lnpd's pings
                num = struct.unpack(">H", message[2:4])[0]
                conn.send_message(struct.pack(">HH", 19, num) + b"\x00" * num)
                continue
            if message[:2] == struct.pack(">H", 32769):
                result["custom"] = message[2:]
                break
        result["conn"] = conn

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    a.cli("connect", f"{node_id}@127.0.0.1:{port}")
    got = a.recv("--count", "1", "--timeout", "20", "--from", node_id)
    assert got[0]["type"] == 32771 and got[0]["text"] == "from pyln server"
    assert "pong from" in a.cli("ping", node_id).stdout
    a.cli("send", node_id, "--text", "to pyln server")
    thread.join(timeout=20)
    assert result.get("custom") == b"to pyln server"
    assert result["init"][:2] == b"\x00\x10"
    result["conn"].connection.close()
    server.close()
