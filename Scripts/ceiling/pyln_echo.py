"""Anchor for `Scripts/bench node`: pyln-proto (PyPI), a pure-Python BOLT-8 stack, echoing
100-byte custom messages over loopback, measured in the same run as our node.
Prints one JSON line: {"name": "anchor.pyln.echo.100", "value": N, "unit": "msgs/s"}."""
import json
import os
import socket
import sys
import threading
import time

from pyln.proto.wire import LightningServerSocket, PrivateKey, connect

count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
server_key, client_key = PrivateKey(os.urandom(32)), PrivateKey(os.urandom(32))
server = LightningServerSocket(server_key)
server.bind(("127.0.0.1", 0))
server.listen(1)
port = server.getsockname()[1]


def echo():
    conn, _ = server.accept()
    conn.connection = WholeReads(conn.connection)
    for _ in range(count):
        conn.send_message(conn.read_message())


class WholeReads:
    """pyln-proto reads with a single recv(n), which may return fewer bytes under load;
    MSG_WAITALL makes each read whole, which is what its framing assumes."""

    def __init__(self, sock):
        self.sock = sock

    def recv(self, n):
        return self.sock.recv(n, socket.MSG_WAITALL)

    def __getattr__(self, name):
        return getattr(self.sock, name)


thread = threading.Thread(target=echo, daemon=True)
thread.start()
client = connect(client_key, server_key.public_key(), "127.0.0.1", port)
client.connection = WholeReads(client.connection)
message = (32769).to_bytes(2, "big") + os.urandom(100)
start = time.monotonic()
writer = threading.Thread(target=lambda: [client.send_message(message) for _ in range(count)], daemon=True)
writer.start()
for _ in range(count):
    client.read_message()
elapsed = time.monotonic() - start
print(json.dumps({"name": "anchor.pyln.echo.100", "value": round(count / elapsed), "unit": "msgs/s"}))
