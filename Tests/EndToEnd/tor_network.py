"""Fixtures and helpers for the Tor end-to-end tests.

`tor_network` (session scope) runs a private Tor network on loopback with Scripts/tor-testnet
and always stops it; `offline_tor` (per test) is one tor with a bogus directory authority:
it never bootstraps, but its control port answers (ADD_ONION works) and its SOCKS port
answers (a connect to any onion fails), in about a second.
"""
import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader

import pytest

SCRIPT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "Scripts", "tor-testnet"))
TOR_MISSING = [tool for tool in ("tor", "tor-gencert") if shutil.which(tool) is None]
SKIP_REASON = f"{' and '.join(TOR_MISSING)} not installed (Debian package tor; Scripts/install-deps test installs it)"
requires_tor = pytest.mark.skipif(bool(TOR_MISSING), reason=SKIP_REASON)
# The clients' control ports accept this password as well as their cookie.
CONTROL_PASSWORD = "lnp-e2e-control-password"
CLIENTS = 3
START_TIMEOUT = 120


def _load_script():
    """Scripts/tor-testnet as a module, for its control-protocol client (one implementation)."""
    loader = SourceFileLoader("tor_testnet", SCRIPT)
    module = module_from_spec(spec_from_loader("tor_testnet", loader))
    loader.exec_module(module)
    return module


tor_testnet = _load_script()
TorControl = tor_testnet.TorControl
ControlError = tor_testnet.TestnetError


@dataclass
class TorClient:
    """One client tor, as `tor-testnet start` prints it."""
    name: str
    socks: str
    control: str
    cookie: str
    pid: int
    password: str = None

    def lnpd_args(self):
        return ["--tor-socks", self.socks, "--tor-control", self.control, "--tor-cookie", self.cookie]

    def control_session(self):
        return TorControl(self.control, cookie=self.cookie)

    def control_port_open(self):
        try:
            socket.create_connection(tor_testnet.split_address(self.control), timeout=1).close()
            return True
        except OSError:
            return False


def run_script(*args, timeout):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout)


def parse_clients(stdout):
    return [TorClient(**json.loads(line)) for line in stdout.splitlines() if line.strip()]


class TorNetwork:
    def __init__(self, directory, clients):
        self.directory = directory
        self.clients = clients
        self.restarts = []

    def restart_client_in_background(self, client, down_seconds):
        """Starts `tor-testnet restart-client`: the client tor stops now, stays down for
        down_seconds, then comes back on the same ports. Returns the Popen; see finish_restart."""
        process = subprocess.Popen([SCRIPT, "restart-client", self.directory, client.name,
                                    "--down", str(down_seconds), "--timeout", "60"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.restarts.append(process)
        return process

    def wait_for_restarts(self):
        """Lets restarts that a failed test left behind finish, so that none starts a tor
        after the network was stopped."""
        for process in self.restarts:
            # restart-client gives up by itself after --down plus 60 s; the kill is a backstop.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=120)
            process.kill()
            process.communicate()
        self.restarts = []

    def finish_restart(self, process):
        stdout, stderr = process.communicate(timeout=120)
        self.restarts.remove(process)
        assert process.returncode == 0, f"restart-client failed: {stderr}"
        restarted = parse_clients(stdout)[0]
        self.clients = [restarted if c.name == restarted.name else c for c in self.clients]
        return restarted


def _stop(directory):
    result = run_script("stop", directory, timeout=60)
    assert result.returncode == 0, f"tor-testnet stop failed: {result.stderr}"


@pytest.fixture(scope="session")
def tor_network():
    if TOR_MISSING:
        pytest.skip(SKIP_REASON)
    directory = tempfile.mkdtemp(prefix="lnp-tor-")
    try:
        result = run_script("start", directory, "--clients", str(CLIENTS), "--control-password", CONTROL_PASSWORD,
                            "--timeout", str(START_TIMEOUT), timeout=START_TIMEOUT + 60)
        assert result.returncode == 0, f"tor-testnet start failed: {result.stderr}"
        clients = parse_clients(result.stdout)
        assert len(clients) == CLIENTS
        network = TorNetwork(directory, clients)
        try:
            yield network
        finally:
            network.wait_for_restarts()
    finally:
        # Also after a failed or killed start: stop reads the pids start recorded.
        _stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def offline_tor():
    if TOR_MISSING:
        pytest.skip(SKIP_REASON)
    directory = tempfile.mkdtemp(prefix="lnp-tor-offline-")
    try:
        result = run_script("start", directory, "--offline", "--control-password", CONTROL_PASSWORD, timeout=60)
        assert result.returncode == 0, f"tor-testnet start --offline failed: {result.stderr}"
        yield parse_clients(result.stdout)[0]
    finally:
        _stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


class StreamEvents:
    """Records tor's STREAM events (every stream a SOCKS client opens, with its target)
    while open: proof that a node did, or did not, ask its tor for a connection."""

    def __init__(self, client):
        self.events = []
        self.control = client.control_session()
        code, lines = self.control.command("SETEVENTS STREAM")
        assert code == "250", lines
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                code, lines = self.control.read_reply()
            except (OSError, ValueError, ControlError):
                return
            if code == "650":
                self.events.append(" ".join(lines))

    def mentioning(self, text):
        return [event for event in list(self.events) if text in event]

    def close(self):
        self.control.close()
        self.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# v3 onion addresses (rend-spec-v3, "Encoding onion addresses"):
# base32(PUBKEY(32) | CHECKSUM(2) | VERSION(1)), CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2].

def onion_checksum(public_key, version=b"\x03"):
    return hashlib.sha3_256(b".onion checksum" + public_key + version).digest()[:2]


def onion_checksum_ok(host):
    """True when host is NAME.onion with a 56-character v3 name whose checksum matches."""
    name = host.removesuffix(".onion")
    if len(name) != 56:
        return False
    try:
        raw = base64.b32decode(name.upper())
    except ValueError:
        return False
    public_key, checksum, version = raw[:32], raw[32:34], raw[34:]
    return version == b"\x03" and checksum == onion_checksum(public_key)


def onion_with_bad_checksum():
    """A well-formed v3 onion host (56 base32 characters, version 3) whose checksum is wrong."""
    public_key = os.urandom(32)
    good = onion_checksum(public_key)
    bad = bytes([good[0] ^ 0x01, good[1]])
    return base64.b32encode(public_key + bad + b"\x03").decode().lower() + ".onion"


def unpublished_onion(offline_tor):
    """A valid v3 onion host that no tor on the test network serves: made by ADD_ONION on the
    offline tor (which never publishes anything) and removed at once."""
    with TorControl(offline_tor.control, cookie=offline_tor.cookie) as control:
        code, lines = control.command("ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=9735,127.0.0.1:9")
        assert code == "250", lines
        service_id = lines[0].split("=", 1)[1]
        code, lines = control.command("DEL_ONION " + service_id)
        assert code == "250", lines
    host = service_id + ".onion"
    assert onion_checksum_ok(host)
    return host


def socks_connect(socks, host, port, timeout=30):
    """SOCKS5 CONNECT to host:port by name through a tor SocksPort (no authentication).
    Returns (socket, reply code); the caller closes the socket. 0 is success; with
    ExtendedErrors, 0xF0-0xF7 are tor's onion-service errors."""
    sock = socket.create_connection(tor_testnet.split_address(socks), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        if _receive_exactly(sock, 2) != b"\x05\x00":
            raise AssertionError("tor's SocksPort refused the no-authentication method")
        name = host.encode()
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        reply = _receive_exactly(sock, 10)  # tor always answers with an IPv4 bound address
        return sock, reply[1]
    except BaseException:
        sock.close()
        raise


def _receive_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise AssertionError(f"tor closed the SOCKS connection after {len(data)} of {count} bytes")
        data += chunk
    return data


def add_onion_and_wait_until_published(control, arguments, timeout=60):
    """ADD_ONION arguments on an open control session, then waits until tor has uploaded the
    descriptor to every HSDir it tried (HS_DESC UPLOAD/UPLOADED events). Returns the reply
    lines. A client that asks an HSDir before then may get the previous descriptor of a
    re-added service and, measured here, be stuck for up to three minutes."""
    code, lines = control.command("SETEVENTS HS_DESC")
    assert code == "250", lines
    code, lines = control.command("ADD_ONION " + arguments)
    assert code == "250", lines
    service_id = lines[0].split("=", 1)[1]
    pending, uploaded = set(), 0
    deadline = time.monotonic() + timeout
    while not (uploaded and not pending):
        assert time.monotonic() < deadline, f"tor did not publish {service_id}.onion within {timeout} s"
        try:
            code, event = control.read_reply()
        except TimeoutError:
            continue
        fields = " ".join(event).split()
        if code != "650" or fields[:1] != ["HS_DESC"] or fields[2:3] != [service_id]:
            continue
        action, hsdir = fields[1], fields[4] if len(fields) > 4 else ""
        if action == "UPLOAD":
            pending.add(hsdir)
        elif action in ("UPLOADED", "FAILED"):
            pending.discard(hsdir)
            uploaded += action == "UPLOADED"
    control.command("SETEVENTS")
    return lines
