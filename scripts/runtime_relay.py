#!/usr/bin/env python3
"""A relay between the local functions and `cargo lambda watch`'s Lambda runtime API, for every
stack scripts/stack.py starts (`make run`, the pytest suite's, make load's): scripts/cargo-run-built
points each function's AWS_LAMBDA_RUNTIME_API here, and every request is passed on unchanged.

Why: the emulator (cargo-lambda 1.9.2) answers a function's `POST .../invocation/<id>/response`
with 200 as soon as it has read the request head, and reads the body (the function's answer) later.
An answer larger than the emulator's first read (about 8 KB) is therefore still arriving when the
200 comes back; the function's HTTP client (hyper) then closes that connection once its body is
written, and under load that close reached the emulator before it had handed the body on: the
browser got the emulator's own 500 page ("httpstatuses.com/500") instead of the portal's answer
(seen with strace: the body's last bytes, then EOF, then the 500). Through this relay the function's
connection closes here, after the relay has read the whole request; the relay's own connections to
the emulator are kept open, so the emulator never sees that close.

Usage: runtime_relay.py --upstream-port PORT: listens on a free loopback port and prints
`ready <port>` on stdout; ends when its standard input closes (its stack stopped or died)."""

from __future__ import annotations

import argparse
import http.client
import http.server
import queue
import sys
import threading

# Hop-by-hop headers (RFC 9110, 7.6.1) are the relay's own business on each side.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
              "upgrade", "content-length"}


class Upstream:
    """Kept-open HTTP/1.1 connections to the emulator, one per request in flight."""

    def __init__(self, port: int):
        self.port = port
        self.idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue()

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes):
        """The emulator's answer (status, headers, body) to one request. A request on a kept
        connection that the emulator had closed meanwhile is sent once more on a new one (the
        emulator closes a connection only between requests, so it never saw the first)."""
        for attempt in (1, 2):
            try:
                conn = self.idle.get_nowait()
                reused = True
            except queue.Empty:
                # No timeout: `invocation/next` is held until there is an event for the function.
                conn, reused = http.client.HTTPConnection("127.0.0.1", self.port), False
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                answer = resp.status, resp.getheaders(), resp.read()
            except (ConnectionError, http.client.BadStatusLine, http.client.RemoteDisconnected):
                conn.close()
                if reused and attempt == 1:
                    continue
                raise
            if resp.will_close:
                conn.close()
            else:
                self.idle.put(conn)
            return answer
        raise AssertionError("unreachable")


def handler_for(upstream: Upstream):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive with the function's client

        def relay(self) -> None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                # The portal's functions answer buffered (never streaming): refuse what is not.
                self.send_error(501, "runtime_relay.py passes on Content-Length bodies only")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
            try:
                status, answer_headers, answer = upstream.forward(self.command, self.path, headers,
                                                                  body)
            except OSError as e:
                self.send_error(502, f"the emulator did not answer: {e}")
                return
            self.send_response_only(status)
            for name, value in answer_headers:
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = relay

        def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
            pass  # a line per call of every function would drown the stack's log

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args(argv)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(Upstream(args.upstream_port)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the stack closes it
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
