"""Fixtures for end-to-end tests: real lnpd processes on loopback, driven through lnp-cli.

Every process a test starts is stopped when the test ends (kill -9 as a last resort), and
every data directory is a fresh temporary directory.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import shutil

import pytest

# The Tor fixtures (a private Tor network on loopback, an offline tor) live in tor_network.py.
from tor_network import offline_tor, tor_network  # noqa: F401  (pytest finds fixtures by name)

BIN = os.environ.get("LNP_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))
LNPD = os.path.join(BIN, "lnpd")
CLI = os.path.join(BIN, "lnp-cli")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Node:
    """One lnpd (all services as threads) or, with services=[...], one process per service."""

    def __init__(self, root, name, extra_args=(), services=None):
        self.name = name
        self.data_dir = os.path.join(root, name)
        os.makedirs(self.data_dir, exist_ok=True)
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.services = services
        self.processes = []
        self.logs = []

    @property
    def address(self):
        return f"{self.node_id}@127.0.0.1:{self.port}"

    def start(self):
        kinds = self.services or [None]
        for kind in kinds:
            args = [LNPD, "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}"] + self.extra_args
            # lnpd starts its own tor when tor is installed and none is configured; tests
            # that are not about Tor run without it.
            if not any(arg.startswith("--tor") or arg in ("--onion", "--no-tor") for arg in self.extra_args) \
                    and not self.config_mentions_tor():
                args.append("--no-tor")
            if kind:
                args += ["--service", kind]
            log = open(os.path.join(self.data_dir, f"lnpd-{kind or 'all'}.log"), "ab")
            self.logs.append(log)
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
            self.processes.append(process)
            # Readiness is announced on stdout; never assumed by sleeping.
            deadline = time.monotonic() + 60
            line = b""
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                if b"ready" in line or not line:
                    break
            assert b"ready" in line, f"{self.name} {kind or ''} did not start: {self.log_tail()}"
        self.node_id = self.info()["node_id"]
        return self

    def config_mentions_tor(self):
        try:
            with open(os.path.join(self.data_dir, "lnpd.conf")) as f:
                return any(line.strip().startswith(("tor", "onion", "no-tor")) for line in f)
        except FileNotFoundError:
            return False

    def log_tail(self):
        out = []
        for name in os.listdir(self.data_dir):
            if name.endswith(".log"):
                with open(os.path.join(self.data_dir, name), "rb") as f:
                    out.append(f.read()[-3000:].decode(errors="replace"))
        return "\n".join(out)

    def cli(self, subcommand, *args, **kwargs):
        """lnp-cli SUBCOMMAND --data-dir DIR ARGS... (options belong to the subcommand)."""
        result = subprocess.run([CLI, "--data-dir", self.data_dir, subcommand, *args],
                                input=kwargs.get("input"), capture_output=True, text=True, timeout=kwargs.get("timeout", 120))
        if kwargs.get("check", True) and result.returncode != 0:
            raise AssertionError(f"lnp-cli {subcommand} {' '.join(args)} failed ({result.returncode}): {result.stderr}\n{self.log_tail()}")
        return result

    def info(self):
        return json.loads(self.cli("info", "--json").stdout)

    def peers(self):
        return json.loads(self.cli("peers", "--json").stdout)

    def connected_to(self, other):
        return any(p["node_id"] == other.node_id and p["connected"] for p in self.peers())

    def recv(self, *args, timeout=180):
        out = self.cli("recv", "--json", *args, timeout=timeout).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []
        for log in self.logs:
            log.close()
        self.logs = []

    def kill9(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        self.processes = []


@pytest.fixture
def nodes():
    root = tempfile.mkdtemp(prefix="lnp-e2e-")
    created = []

    def make(name, **kwargs):
        node = Node(root, name, **kwargs)
        created.append(node)
        return node

    yield make
    for node in created:
        try:
            node.stop()
        except Exception:
            pass
    # LNP_E2E_KEEP=1 keeps the nodes' data directories and logs for a look after a failure.
    if os.environ.get("LNP_E2E_KEEP") == "1":
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
