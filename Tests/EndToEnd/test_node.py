"""End to end: real lnpd processes on loopback, driven through lnp-cli."""
import json
import os
import socket
import struct
import time

from conftest import wait_for


def connect(a, b):
    a.cli("connect", b.address)
    wait_for(lambda: b.connected_to(a) and a.connected_to(b), 20, "both sides to see the connection")


def test_info_connect_send_recv_ping(nodes):
    a, b = nodes("a").start(), nodes("b").start()
    info = a.info()
    assert len(info["node_id"]) == 66
    assert info["listen"] == [f"127.0.0.1:{a.port}"]
    assert info["peer_count"] == 0
    connect(a, b)
    peers = a.peers()
    assert peers[0]["node_id"] == b.node_id and peers[0]["direction"] == "outbound"
    assert "option_lnp_messaging optional" in peers[0]["features"]
    assert peers[0]["large_frames"] is True

    sent = a.cli("send", b.node_id, "--text", "hello, b").stdout.split()
    assert len(sent) == 1 and len(sent[0]) == 32
    got = b.recv("--count", "1", "--timeout", "20")
    assert got[0]["id"] == sent[0] and got[0]["from"] == a.node_id and got[0]["text"] == "hello, b"
    assert got[0]["type"] == 32769 and got[0]["payload_hex"] == b"hello, b".hex()
    b.cli("send", a.node_id, "--hex", "00ff10", "--type", "33333")
    back = a.recv("--count", "1", "--timeout", "20")
    assert back[0]["payload_hex"] == "00ff10" and back[0]["type"] == 33333
    wait_for(lambda: json.loads(a.cli("status", sent[0], "--json").stdout)["state"] == "delivered", 20, "delivery receipt")
    assert "pong from" in a.cli("ping", b.node_id, "--bytes", "100").stdout
    assert a.info()["peer_count"] == 1


def test_ten_thousand_messages_in_order_exactly_once(nodes):
    a, b = nodes("a").start(), nodes("b").start()
    connect(a, b)
    lines = "".join(f"message {i:05d}\n" for i in range(10_000))
    started = time.monotonic()
    ids = a.cli("send", b.node_id, "--stdin-lines", input=lines).stdout.split()
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    assert time.monotonic() - started < 30, "send --stdin-lines must return once stored, in seconds"
    got = b.recv("--count", "10000", "--timeout", "120")
    assert [m["text"] for m in got] == [f"message {i:05d}" for i in range(10_000)]
    assert [m["id"] for m in got] == ids
    # Nothing more arrives later: exactly once.
    time.sleep(1)
    assert len(b.recv()) == 10_000


def test_kill9_receiver_and_sender_nothing_lost_or_duplicated(nodes):
    a, b = nodes("a").start(), nodes("b").start()
    connect(a, b)
    first = "".join(f"first {i}\n" for i in range(5_000))
    ids = a.cli("send", b.node_id, "--stdin-lines", input=first).stdout.split()
    b.kill9()  # mid-delivery, most likely
    b.start()
    wait_for(lambda: a.connected_to(b), 60, "a to reconnect to the restarted b by itself")
    second = "".join(f"second {i}\n" for i in range(5_000))
    ids += a.cli("send", b.node_id, "--stdin-lines", input=second).stdout.split()
    a.kill9()  # the sender this time
    a.start()
    wait_for(lambda: a.connected_to(b), 60, "the restarted a to redial its persistent peer")
    got = b.recv("--count", "10000", "--timeout", "180")
    assert sorted(m["id"] for m in got) == sorted(ids)
    assert len({m["id"] for m in got}) == 10_000
    time.sleep(2)
    assert len(b.recv()) == 10_000, "a message was delivered twice"


def test_cli_fails_with_one_clear_sentence(nodes):
    from pyln.proto.wire import PrivateKey
    a = nodes("a").start()
    stranger = PrivateKey(os.urandom(32)).public_key().serializeCompressed().hex()
    for args, needle in [
        (["connect", "nonsense"], "node id"),
        (["connect", stranger + "@127.0.0.1"], "port"),
        (["connect", stranger + "@127.0.0.1:99999"], "port"),
        (["connect", "02" + "11" * 32 + "@127.0.0.1:9735"], "node id"),
        (["disconnect", stranger], "no peer"),
        (["send", "zz", "--text", "x"], "node id"),
        (["ping", stranger], stranger),
        (["status", "00" * 16], "no message"),
    ]:
        result = a.cli(*args, check=False)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, result.stderr)
    missing = nodes("never-started")
    result = missing.cli("info", check=False)
    assert result.returncode != 0 and "not running" in result.stderr


def test_config_file_and_flags(nodes):
    a = nodes("a")
    port = a.port
    with open(os.path.join(a.data_dir, "lnpd.conf"), "w") as f:
        f.write(f"# test\nlisten = 127.0.0.1:{port}\nlog-level = debug\n")
    a.extra_args = []
    a.start()
    assert a.info()["listen"] == [f"127.0.0.1:{port}"]
    a.stop()
    with open(os.path.join(a.data_dir, "lnpd.conf"), "w") as f:
        f.write("bogus = 1\n")
    import subprocess
    from conftest import LNPD
    result = subprocess.run([LNPD, "--data-dir", a.data_dir], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "unknown option" in result.stderr


def test_node_as_four_processes(nodes):
    a = nodes("a", services=["keyd", "peerd", "msgd", "lnpd"]).start()
    b = nodes("b").start()
    connect(a, b)
    a.cli("send", b.node_id, "--text", "from a process-split node")
    assert b.recv("--count", "1", "--timeout", "20")[0]["text"] == "from a process-split node"
    b.cli("send", a.node_id, "--text", "back")
    assert a.recv("--count", "1", "--timeout", "20")[0]["text"] == "back"
    for name in ("lnpd.rpc",):
        pass
    mode = os.stat(os.path.join(a.data_dir, "node.key")).st_mode & 0o777
    assert mode == 0o600


def free_port_range(count):
    """A base port with `count` free consecutive ports after it (the bus's tcp slots)."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(20_000, 60_000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port range")


def test_node_as_four_processes_on_a_tcp_bus_with_curve(nodes):
    """--bus tcp://HOST:BASEPORT: the services of one node reach each other over tcp with
    CURVE (as they would across hosts), all holding DATA_DIR/bus-curve.key."""
    base = free_port_range(14)
    a = nodes("a", services=["keyd", "peerd", "msgd", "lnpd"], extra_args=["--bus", f"tcp://127.0.0.1:{base}"]).start()
    b = nodes("b").start()
    key_file = os.path.join(a.data_dir, "bus-curve.key")
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    connect(a, b)
    a.cli("send", b.node_id, "--text", "over a tcp bus")
    assert b.recv("--count", "1", "--timeout", "20")[0]["text"] == "over a tcp bus"
    b.cli("send", a.node_id, "--text", "back")
    assert a.recv("--count", "1", "--timeout", "20")[0]["text"] == "back"
    # keyd's request port is base + 2 (lnpd, keyd, peerd, msgd... two ports each): a client
    # without the node's CURVE key gets nothing from it (LNPBusTests prove the refusal).
    with socket.create_connection(("127.0.0.1", base + 2), timeout=5) as plain:
        plain.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL" + b"\x00" * 16 + b"\x00" + b"\x00" * 31)
        plain.settimeout(5)
        received = b""
        try:
            while True:
                chunk = plain.recv(4096)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
    assert b"READY" not in received, "keyd accepted a NULL-mechanism (unauthenticated) ZMTP client"


def test_bus_option_is_refused_without_service_and_when_malformed(nodes):
    import subprocess
    from conftest import LNPD
    a = nodes("a")
    for args, expected in ((["--bus", "tcp://127.0.0.1:9800"], "--service"),
                           (["--service", "keyd", "--bus", "ipc:///tmp/x"], "only tcp://"),
                           (["--service", "keyd", "--bus", "tcp://127.0.0.1:9800", "--bus-host", "nosuch=10.0.0.1"], "SERVICE=HOST")):
        result = subprocess.run([LNPD, "--data-dir", a.data_dir, "--no-tor", *args], capture_output=True, text=True, timeout=30)
        assert result.returncode != 0 and expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
