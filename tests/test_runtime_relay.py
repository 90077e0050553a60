"""scripts/runtime_relay.py, against a stand-in for cargo lambda watch's runtime API that behaves as
the emulator does: it answers a POST with 200 once it has read the head and reads the body later.
A function whose HTTP client closes its connection right after its answer must not close the
emulator's: that close lost answers (the emulator's own 500 page in place of the portal's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

RELAY = os.path.join(os.path.dirname(__file__), "..", "scripts", "runtime_relay.py")


class EarlyAnsweringEmulator:
    """Accepts connections; to each request it answers at once (for `/next`, an event with a
    request id header; otherwise an empty 200), then reads the body slowly. Records every body and
    whether any connection was closed by its client."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.bodies: list[bytes] = []
        self.closed_by_client = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = conn.recv(65536)
                    if not chunk:
                        self.closed_by_client.set()
                        return
                    buffered += chunk
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                               if line.lower().startswith("content-length:")), 0)
                if lines[0].startswith("GET") and lines[0].split()[1].endswith("/next"):
                    event = b'{"hello":"event"}'
                    conn.sendall(b"HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: req-1\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(event), event))
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                time.sleep(0.2)  # the body is read only after the answer went back
                while len(buffered) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        self.closed_by_client.set()
                        return
                    buffered += chunk
                if length:
                    self.bodies.append(buffered[:length])
                buffered = buffered[length:]


@pytest.fixture
def relay():
    emulator = EarlyAnsweringEmulator()
    proc = subprocess.Popen([sys.executable, RELAY, "--upstream-port", str(emulator.port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        word, port = proc.stdout.readline().split()
        assert word == b"ready"
        yield emulator, int(port)
    finally:
        proc.stdin.close()
        proc.wait(10)
        emulator.listener.close()


def exchange(port: int, request: bytes) -> bytes:
    """Sends one request on a new connection, reads the answer, then closes the connection at
    once, as the function's client did."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += conn.recv(65536)
        head, body = answer.split(b"\r\n\r\n", 1)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body


def test_a_large_answer_reaches_the_emulator_whole_and_its_connection_stays_open(relay):
    emulator, port = relay
    answer = b'{"statusCode":200,"body":"' + b"x" * 50_000 + b'"}'
    for _ in range(3):
        reply = exchange(port, b"POST /.rt/profile/2018-06-01/runtime/invocation/req-1/response "
                               b"HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(answer), answer))
        assert reply.startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 5
    while len(emulator.bodies) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.bodies == [answer] * 3
    assert not emulator.closed_by_client.is_set(), "the emulator saw a client close its connection"


def test_next_passes_the_event_and_its_headers_back(relay):
    _, port = relay
    reply = exchange(port, b"GET /.rt/profile/2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
                           b"host: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200")
    assert b"lambda-runtime-aws-request-id: req-1" in reply.lower()
    assert reply.endswith(b'{"hello":"event"}')
