"""Bad input drops that peer, never the node."""
import os
import socket
import time

from pyln.proto.wire import PrivateKey, PublicKey, connect as pyln_connect

from conftest import wait_for


def init_message(features=b""):
    return struct_pack_init(features)


def struct_pack_init(features):
    import struct
    return struct.pack(">HH", 16, 0) + struct.pack(">H", len(features)) + features


def pyln_peer(node):
    key = PrivateKey(os.urandom(32))
    conn = pyln_connect(key, PublicKey(bytes.fromhex(node.node_id)), "127.0.0.1", node.port)
    conn.send_message(init_message())
    their_init = conn.read_message()
    assert their_init[:2] == b"\x00\x10"
    return conn


def closed(sock, timeout=15):
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def assert_still_serving(a, b, tag):
    a.cli("send", b.node_id, "--text", tag)
    got = [m["text"] for m in b.recv("--timeout", "20", "--count", "1", "--from", a.node_id)]
    assert tag in got or tag in [m["text"] for m in b.recv()]


def test_each_kind_of_bad_input_drops_only_that_peer(nodes):
    a, b = nodes("a").start(), nodes("b").start()
    a.cli("connect", b.address)
    wait_for(lambda: a.connected_to(b), 20, "a connected")

    # Garbage instead of act one.
    s = socket.create_connection(("127.0.0.1", b.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" + b"x" * 64)
    assert closed(s), "garbage act one"
    s.close()
    assert_still_serving(a, b, "after garbage")

    # A bad MAC after a good handshake.
    conn = pyln_peer(b)
    conn.connection.sendall(os.urandom(18 + 100))
    assert closed(conn.connection), "bad MAC"
    assert_still_serving(a, b, "after bad mac")

    # An unknown even message type: a warning, then the connection closes.
    conn = pyln_peer(b)
    conn.send_message(b"\x01\x00" + b"even")
    assert closed(conn.connection), "unknown even type"
    assert_still_serving(a, b, "after unknown even")

    # A flood of pings.
    conn = pyln_peer(b)
    try:
        for _ in range(5_000):
            conn.send_message(b"\x00\x12\x00\x04\x00\x00")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert closed(conn.connection), "ping flood"
    assert_still_serving(a, b, "after ping flood")

    # A truncated act one: dropped when the handshake times out.
    s = socket.create_connection(("127.0.0.1", b.port))
    s.sendall(b"\x00" + os.urandom(20))
    assert closed(s, timeout=30), "truncated act"
    s.close()
    assert_still_serving(a, b, "after truncated act")
    assert a.connected_to(b)
