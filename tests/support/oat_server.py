"""A real OpenAttestation PollHosts server over HTTPS on 127.0.0.1.

Answers from a host → level table that tests change while it runs, counts
every request, and can require a client certificate. Tests that need odd
behaviour replace :attr:`OATServer.responder`.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import pathlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

Responder = Callable[["Request"], "Response"]


@dataclasses.dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any
    client_cert: dict | None
    #: the http.server handler, for responders that write raw bytes
    handler: Any = None


@dataclasses.dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def vtime_now() -> str:
    """Now, formatted the way OpenAttestation 2.x does."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{now.microsecond // 1000:03d}+0000"


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Failed handshakes are what some tests are about; stay quiet."""


class OATServer:
    """Start with :meth:`start`, stop with :meth:`stop` (or as a context)."""

    def __init__(self, cert: pathlib.Path | None, key: pathlib.Path | None,
                 *, client_ca: pathlib.Path | None = None,
                 levels: dict[str, str] | None = None,
                 api_url: str = "/OpenAttestationWebServices/V1.0",
                 port: int = 0, client_cert_optional: bool = False) -> None:
        self.levels: dict[str, str] = dict(levels or {})
        self.api_url = api_url
        self.requests: list[Request] = []
        self.responder: Responder = self.poll_hosts
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        #: set by :meth:`stop`; responders that stall wait on it
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            oat_server = server

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                cert = None
                if isinstance(self.connection, ssl.SSLSocket):
                    cert = self.connection.getpeercert() or None
                request = Request(self.path, dict(self.headers), body, cert,
                                  self)
                with server._lock:
                    server.requests.append(request)
                response = server.responder(request)
                if response is None:  # the responder wrote by itself
                    return
                self.send_response(response.status)
                headers = {"Content-Type": "application/json",
                           "Content-Length": str(len(response.body))}
                headers.update(response.headers)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST  # noqa: N815

        self.handler_class = Handler
        self._httpd = _QuietServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if client_ca is not None:
                context.verify_mode = (ssl.CERT_OPTIONAL
                                       if client_cert_optional
                                       else ssl.CERT_REQUIRED)
                context.load_verify_locations(client_ca)
            # Handshake in the handler thread, so one bad client cannot
            # stall the accept loop.
            self._httpd.socket = context.wrap_socket(
                self._httpd.socket, server_side=True,
                do_handshake_on_connect=False)
            self.scheme = "https"
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.api_url}"

    def poll_hosts(self, request: Request) -> Response:
        """Default behaviour: answer for the hosts in the table."""
        if request.path != f"{self.api_url}/PollHosts":
            return Response(404, b'{"error": "not found"}')
        asked = request.body.get("hosts", []) if isinstance(
            request.body, dict) else []
        hosts = [{"host_name": name, "trust_lvl": self.levels[name],
                  "vtime": vtime_now()}
                 for name in asked if name in self.levels]
        return Response(200, json.dumps({"hosts": hosts}).encode())

    def polls(self) -> int:
        with self._lock:
            return sum(1 for r in self.requests
                       if r.path.endswith("/PollHosts"))

    def start(self) -> OATServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop like a dead server: no listener, kept-alive sockets cut."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> OATServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve_main() -> None:
    """``python -m tests.support.oat_server``: a server in its own process,
    for load runs where it must not share a GIL with the scheduler.

    Prints the port, then serves until killed. SIGUSR1 makes it hang every
    request (accept, never answer); SIGUSR2 makes it answer again. On
    stdin, ``polls`` asks for the PollHosts request count and ``stats`` for
    ``<requests> <hosts asked> <CPU seconds of this process>``, the load a
    scale-out run puts on one attestation service. Requests are counted,
    not kept, so a long run does not grow the process.
    """
    import argparse
    import signal
    import sys
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--trusted", nargs="*", default=[])
    parser.add_argument("--trusted-file")
    args = parser.parse_args()
    names = list(args.trusted)
    if args.trusted_file:
        names += pathlib.Path(args.trusted_file).read_text().split()
    server = OATServer(pathlib.Path(args.cert), pathlib.Path(args.key),
                       levels={n: "trusted" for n in names})
    normal = server.responder
    hang = threading.Event()
    counts = {"polls": 0, "hosts": 0}

    def responder(request: Request) -> Response | None:
        with server._lock:
            server.requests.remove(request)
            if request.path.endswith("/PollHosts"):
                counts["polls"] += 1
                if isinstance(request.body, dict) and isinstance(
                        request.body.get("hosts"), list):
                    counts["hosts"] += len(request.body["hosts"])
        if hang.is_set():
            request.handler.close_connection = True
            server.stopping.wait(120)
            return None
        return normal(request)

    server.responder = responder
    signal.signal(signal.SIGUSR1, lambda *a: hang.set())
    signal.signal(signal.SIGUSR2, lambda *a: hang.clear())
    server.start()
    print(server.port, flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "polls":
                with server._lock:
                    print(counts["polls"], flush=True)
            elif command == "stats":
                with server._lock:
                    polls, hosts = counts["polls"], counts["hosts"]
                # the whole process: handshakes, parsing, answers, the
                # accept loop's wake-ups
                print(polls, hosts, time.process_time(), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    _serve_main()
