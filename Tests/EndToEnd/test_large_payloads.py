"""End to end: large messages are kept in payload segment files beside the database, and
survive a kill -9 of the receiver exactly once with every byte intact."""
import hashlib
import os
import time

import pytest

from conftest import wait_for
from test_node import connect

COUNT = 30
SIZE = 3 << 20


def segment_files(node):
    directory = os.path.join(node.data_dir, "node.sqlite-payloads")
    if not os.path.isdir(directory):
        return {}
    return {name: os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)}


def test_large_messages_through_a_kill9_of_the_receiver(nodes, tmp_path):
    a, b = nodes("a").start(), nodes("b").start()
    connect(a, b)
    digests = []
    ids = []

    def send(i):
        payload = os.urandom(SIZE)
        digests.append(hashlib.sha256(payload).hexdigest())
        path = tmp_path / f"message-{i}"
        path.write_bytes(payload)
        sent = a.cli("send", b.node_id, "--file", str(path)).stdout.split()
        assert len(sent) == 1
        ids.append(sent[0])
        path.unlink()

    for i in range(COUNT // 2):
        send(i)
    b.kill9()  # while A is still delivering, most likely: 45 MiB were queued at once
    b.start()
    wait_for(lambda: a.connected_to(b), 60, "a to reconnect to the restarted b by itself")
    for i in range(COUNT // 2, COUNT):
        send(i)

    got = b.recv("--count", str(COUNT), "--timeout", "240", timeout=300)
    assert sorted(m["id"] for m in got) == sorted(ids), "every message exactly once"
    received = {m["id"]: hashlib.sha256(bytes.fromhex(m["payload_hex"])).hexdigest() for m in got}
    assert [received[i] for i in ids] == digests, "every payload intact"
    time.sleep(2)
    assert len(b.recv()) == COUNT, "a message was delivered twice"

    # Segment files hold the payloads on both nodes (checked before any xfail below).
    for node in (a, b):
        files = segment_files(node)
        assert files and all(name.endswith(".seg") for name in files), f"{node.name}: {files}"
        assert sum(files.values()) >= COUNT * SIZE, f"{node.name}: {files}"
    assert os.path.getsize(os.path.join(b.data_dir, "node.sqlite")) < COUNT * SIZE // 4

    # Known gap: while the restarted receiver's msgd is not yet subscribed to its peerd's
    # events, messages that peerd already accepted are published to nobody. The sender's
    # go-back-N resends them about 3 s later, exactly once, but the messages sent
    # after them were stored first, and recv lists messages in storage order.
    if [m["id"] for m in got] != ids:
        pytest.xfail("recv order differs from send order after the receiver's restart (startup subscription race)")



def test_a_damaged_segment_is_one_clear_sentence_and_the_node_keeps_serving(nodes, tmp_path):
    a, b = nodes("a").start(), nodes("b").start()
    connect(a, b)
    path = tmp_path / "large"
    path.write_bytes(os.urandom(1 << 20))
    a.cli("send", b.node_id, "--file", str(path))
    assert len(b.recv("--count", "1", "--timeout", "60")) == 1
    b.stop()
    segment = os.path.join(b.data_dir, "node.sqlite-payloads", "00000001.seg")
    os.truncate(segment, 1000)
    b.start()

    result = b.cli("recv", "--json", check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be read" in lines[0] and "00000001.seg" in lines[0], result.stderr
    assert "cannot read received messages" in b.log_tail()
    # Everything else still works: the node answers, and messages flow both ways.
    assert b.info()["node_id"] == b.node_id
    wait_for(lambda: a.connected_to(b), 60, "a to reconnect to the restarted b")
    b.cli("send", a.node_id, "--text", "still here")
    assert [m["text"] for m in a.recv("--count", "1", "--timeout", "60")] == ["still here"]
