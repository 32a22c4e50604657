"""End to end: the spool link between real lnpd processes that never connect.

Bundles go through a directory, as on a USB stick: `lnp-cli spool export` on one node,
`lnp-cli spool import` on the other, receipts the same way back.
"""
import hashlib
import json
import os
import shutil
import subprocess
import time

from conftest import CLI, wait_for

HEADER = 29  # magic 8, version 1, bundle id 16, envelope count 4
CHECKSUM = 32


def spool(node, verb, directory, *args, check=True):
    result = node.cli("spool", verb, "--dir", directory, "--json", *args, check=check)
    return json.loads(result.stdout) if check else result


def status(node, message_id):
    return json.loads(node.cli("status", message_id, "--json").stdout)


def bundles(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".lnpspool"))


def send_lines(node, recipient, lines):
    ids = node.cli("send", recipient.node_id, "--stdin-lines", input="".join(line + "\n" for line in lines)).stdout.split()
    assert len(ids) == len(lines)
    return ids


def test_ten_thousand_messages_by_spool_with_receipts_exactly_once(nodes, tmp_path):
    a, b = nodes("a").start(), nodes("b").start()
    stick, back = str(tmp_path / "stick"), str(tmp_path / "back")
    os.makedirs(stick)
    os.makedirs(back)
    texts = [f"spooled {i:05d}" for i in range(10_000)]
    ids = send_lines(a, b, texts)
    # No address for b at all: the messages wait for an export.
    assert status(a, ids[0])["state"] == "queued"

    started = time.monotonic()
    exported = spool(a, "export", stick)
    print(f"\nspool.export.10000: {time.monotonic() - started:.2f} s (lnp-cli spool export)")
    assert exported["messages"] == 10_000 and exported["receipts"] == 0 and exported["peers"] == 1
    assert exported["bundles"] == len(bundles(stick)) >= 1
    assert status(a, ids[0]) | {"created_at": None} == {"id": ids[0], "to": b.node_id, "state": "sent", "link": "spool", "created_at": None}

    started = time.monotonic()
    imported = spool(b, "import", stick)
    seconds = time.monotonic() - started
    print(f"spool.import.10000: {seconds:.2f} s (lnp-cli spool import, {exported['bundles']} bundles)")
    assert imported["messages_stored"] == 10_000 and imported["bundles_imported"] == exported["bundles"]
    assert imported["files_rejected"] == imported["envelopes_rejected"] == imported["duplicates"] == 0
    got = b.recv()
    assert [m["text"] for m in got] == texts
    assert [m["id"] for m in got] == ids and {m["from"] for m in got} == {a.node_id}

    # The way back: b owes a receipt, which says "everything through 10,000".
    receipts = spool(b, "export", back)
    assert receipts["receipts"] == 1 and receipts["messages"] == 0 and receipts["bundles"] == 1
    applied = spool(a, "import", back)
    assert applied["receipts"] == 1 and applied["messages_stored"] == 0
    for message_id in (ids[0], ids[4_999], ids[-1]):
        assert status(a, message_id)["state"] == "delivered" and status(a, message_id)["link"] == "spool"

    # The same bundles again, on both sides: nothing changes.
    again = spool(b, "import", stick)
    assert again["bundles_already_imported"] == exported["bundles"] and again["messages_stored"] == 0
    assert spool(a, "import", back)["bundles_already_imported"] == 1
    assert len(b.recv()) == 10_000
    assert status(a, ids[-1])["state"] == "delivered"
    # Nothing is owed any more in either direction.
    assert spool(a, "export", str(tmp_path))["bundles"] == 0
    assert spool(b, "export", str(tmp_path))["bundles"] == 0


def repack(source, destination):
    """A new bundle (fresh id, correct checksum) holding the envelopes of an old one: what
    anyone who saw the old bundle can build, since the checksum is not a signature."""
    data = open(source, "rb").read()
    body = b"LNPSPOOL\x01" + os.urandom(16) + data[25:-CHECKSUM]
    open(destination, "wb").write(body + hashlib.sha256(body).digest())


def test_bad_bundles_are_rejected_with_a_reason_and_the_good_ones_still_import(nodes, tmp_path):
    a, b, c = nodes("a").start(), nodes("b").start(), nodes("c").start()
    first_dir, mixed = str(tmp_path / "first"), str(tmp_path / "mixed")
    os.makedirs(first_dir)
    os.makedirs(mixed)
    first = send_lines(a, b, ["first 1", "first 2", "first 3"])
    spool(a, "export", first_dir, "--peer", b.node_id)
    assert spool(b, "import", first_dir)["messages_stored"] == 3
    [old] = bundles(first_dir)
    old_path = os.path.join(first_dir, old)

    second = send_lines(a, b, ["second 1", "second 2", "second 3"])
    send_lines(a, c, ["for c 1", "for c 2"])
    spool(a, "export", mixed)  # one bundle for b, one for c
    good = bundles(mixed)
    assert len(good) == 2
    # Truncated: half of the new bundle for b, as a copy interrupted halfway leaves it; its
    # name sorts first, so the complete bundle comes after it.
    for name in good:
        whole = open(os.path.join(mixed, name), "rb").read()
        open(os.path.join(mixed, "lnp-000000000000001-0000-truncated-" + name), "wb").write(whole[: len(whole) // 2])
    data = open(old_path, "rb").read()
    # Corrupted: one bit of the bundle id flipped, so the file is not mistaken for the one
    # already imported and its checksum no longer matches.
    corrupt = bytearray(data)
    corrupt[12] ^= 0x01
    open(os.path.join(mixed, "lnp-000000000000002-0000-corrupted.lnpspool"), "wb").write(bytes(corrupt))
    # Replays: the old bundle copied back under a new name, and its envelopes repacked.
    shutil.copy(old_path, os.path.join(mixed, "lnp-000000000000003-0000-copied.lnpspool"))
    repack(old_path, os.path.join(mixed, "lnp-000000000000004-0000-repacked.lnpspool"))

    report = spool(b, "import", mixed)
    assert report["messages_stored"] == 3, report
    assert report["files_rejected"] == 3, report  # truncated (2: one for c too), corrupted
    assert report["bundles_for_another_node"] == 1, report
    assert report["bundles_already_imported"] == 1, report  # the copy, by its id
    # The repacked envelopes, and "first 1-3" again in the new bundle: b sent no receipt yet,
    # so a exported them once more (a bundle is a one-way trip; exporting again is the retry).
    assert report["duplicates"] == 6 and report["envelopes_rejected"] == 6, report
    problems = "\n".join(report["problems"])
    assert "truncated-" in problems and "is cut short" in problems
    assert "corrupted.lnpspool was rejected: the bundle's checksum does not match" in problems
    assert "repacked.lnpspool were rejected: their messages were received before" in problems
    assert "sealed to another node" in problems
    log = open(os.path.join(b.data_dir, "lnpd-all.log"), errors="replace").read()
    assert "0000-truncated-" in log and "corrupted.lnpspool" in log, "rejected files are logged with their reason"

    got = b.recv()
    assert [m["id"] for m in got] == first + second
    assert [m["text"] for m in got] == ["first 1", "first 2", "first 3", "second 1", "second 2", "second 3"]
    # c's bundle was not harmed by b's import.
    assert spool(c, "import", mixed)["messages_stored"] == 2
    assert [m["text"] for m in c.recv()] == ["for c 1", "for c 2"]
    # A receipt from c does not settle messages a sent to b.
    spool(c, "export", str(tmp_path / "first"))
    spool(a, "import", str(tmp_path / "first"))
    assert status(a, second[0])["state"] == "sent"


def test_receiver_killed_during_import_takes_everything_exactly_once(nodes, tmp_path):
    a, b = nodes("a").start(), nodes("b").start()
    stick = str(tmp_path / "stick")
    os.makedirs(stick)
    texts = [f"crash {i:05d}" for i in range(10_000)]
    ids = send_lines(a, b, texts)
    assert spool(a, "export", stick)["messages"] == 10_000

    importing = subprocess.Popen([CLI, "--data-dir", b.data_dir, "spool", "import", "--dir", stick],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Halfway: once the first bundle is in the ledger, or a second in at most.
        ledger = os.path.join(b.data_dir, "spool-ledger")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and os.path.getsize(ledger) <= len("lnp-spool-ledger 1\n"):
            time.sleep(0.01)
        assert importing.poll() is None, "the import ended before the kill; nothing was tested"
        b.kill9()
        # The CLI notices at once, with one sentence, rather than wait out its long timeout.
        _, err = importing.communicate(timeout=10)
        assert importing.returncode == 1 and err.decode() == "lnp-cli: lnpd stopped while importing; import again once it runs (nothing is taken in twice)\n"
    finally:
        if importing.poll() is None:
            importing.kill()
            importing.wait()
    b.start()
    report = spool(b, "import", stick)
    assert report["files_rejected"] == 0
    got = b.recv()
    assert [m["text"] for m in got] == texts
    assert [m["id"] for m in got] == ids
    # And once more, for good measure.
    spool(b, "import", stick)
    assert len(b.recv()) == 10_000


def test_spool_cli_fails_with_one_clear_sentence(nodes, tmp_path):
    a = nodes("a").start()
    missing = a.cli("spool", "export", "--dir", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1 and "no such directory" in missing.stderr and missing.stderr.count("\n") == 1
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    not_dir = a.cli("spool", "import", "--dir", str(a_file), check=False)
    assert not_dir.returncode == 1 and "not a directory" in not_dir.stderr
    bad_peer = a.cli("spool", "export", "--dir", str(tmp_path), "--peer", "nonsense", check=False)
    assert bad_peer.returncode == 1 and "is not a node id" in bad_peer.stderr
    a.stop()
    down = a.cli("spool", "import", "--dir", str(tmp_path), check=False)
    assert down.returncode == 1 and down.stderr.startswith("lnp-cli: ") and down.stderr.count("\n") == 1


def test_spool_and_tcp_carry_one_sequence(nodes, tmp_path):
    """A message that comes by spool and then over TCP (the sender had no receipt yet and
    resends on connect) is stored once, and the messages after it follow in order."""
    a, b = nodes("a").start(), nodes("b").start()
    stick = str(tmp_path / "stick")
    os.makedirs(stick)
    first = send_lines(a, b, [f"by spool {i}" for i in range(100)])
    spool(a, "export", stick)
    assert spool(b, "import", stick)["messages_stored"] == 100
    # Now they meet: a still counts the 100 as only sent; b's ack on connect settles them,
    # and whatever a resends before hearing it, b drops by sequence number.
    a.cli("connect", b.address)
    wait_for(lambda: b.connected_to(a) and a.connected_to(b), 20, "both sides to see the connection")
    later = send_lines(a, b, [f"by tcp {i}" for i in range(50)])
    wait_for(lambda: status(a, later[-1])["state"] == "delivered", 30, "the last message delivered over tcp")
    assert status(a, first[0])["state"] == "delivered"
    got = b.recv()
    assert [m["id"] for m in got] == first + later
    # A bundle written before the connection, imported after it, changes nothing either.
    late_stick = str(tmp_path / "late")
    os.makedirs(late_stick)
    shutil.copy(os.path.join(stick, bundles(stick)[0]), late_stick)
    repack(os.path.join(stick, bundles(stick)[0]), os.path.join(late_stick, "lnp-000000000000009-0000-again.lnpspool"))
    again = spool(b, "import", late_stick)
    assert again["messages_stored"] == 0 and again["duplicates"] == 100 and again["bundles_already_imported"] == 1
    assert len(b.recv()) == 150


def test_shared_directory_peers_exchange_messages_and_receipts(nodes, tmp_path):
    """`--connect spool://NODEID@/path` on both nodes: msgd keeps the directory as a mailbox,
    with messages one way and receipts the other, and no lnp-cli spool command at all."""
    a, b = nodes("a").start(), nodes("b").start()
    shared = str(tmp_path / "shared")
    os.makedirs(shared)
    a.stop()
    b.stop()
    a.extra_args = ["--connect", f"spool://{b.node_id}@{shared}"]
    b.extra_args = ["--connect", f"spool://{a.node_id}@{shared}"]
    a.start()
    b.start()
    ids = send_lines(a, b, [f"shared {i}" for i in range(200)])
    got = b.recv("--count", "200", "--timeout", "30")
    assert [m["id"] for m in got] == ids
    wait_for(lambda: status(a, ids[-1])["state"] == "delivered", 30, "the receipt to come back through the directory")
    assert status(a, ids[0]) | {"created_at": None} == {"id": ids[0], "to": b.node_id, "state": "delivered", "link": "spool", "created_at": None}
    # Each side deletes what it took in: the directory empties.
    wait_for(lambda: not bundles(shared), 20, "both sides to take in what is theirs")
    time.sleep(3)
    assert len(b.recv()) == 200, "nothing arrives twice"
