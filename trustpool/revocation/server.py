# SPDX-License-Identifier: Apache-2.0
"""The HTTPS listener for Keylime's revocation webhook.

The standard library's HTTP server on :mod:`trustpool.serving`, bounded
on every axis a client controls:

- concurrency: at most ``max_connections`` connections are handled at
  once; another is closed at once, without holding up the accept loop
  (the verifier retries);
- time: one absolute deadline per connection (``request_timeout``), from
  accept to answer, TLS handshake included (in the connection's thread,
  never in the accept loop): a watchdog shuts the socket when it passes,
  however the client paces its bytes, and every socket operation also
  times out on its own;
- size: the body must come with a plain ``Content-Length`` no larger than
  ``max_body_bytes``, checked before a byte of it is read (no chunked
  bodies).

One request per connection. The outermost boundary of a request turns any
exception into a 500 with a generic body, logged once with its type; no
log line quotes the body or a header.

An observer (:mod:`.observer`), when set, hears of every answered request
and every connection turned away, in words from fixed sets.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import ssl
import time
from typing import Any

from trustpool.revocation import observer as obs
from trustpool.revocation.handler import RevocationHandler
from trustpool.revocation.message import Refused, SignatureCheck, read
from trustpool.serving import BoundedServerMixIn

__all__ = ["Limits", "Listener"]

LOG = logging.getLogger(__name__)


class Limits:
    """The bounds of the listener (see the module docstring)."""

    def __init__(self, max_body_bytes: int = 65536,
                 request_timeout: float = 10.0,
                 max_connections: int = 16) -> None:
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.max_connections = max_connections


class _Server(BoundedServerMixIn, http.server.HTTPServer):
    label = "revocation listener"
    thread_name = "trustpool-events"
    log = LOG
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any,
                 limits: Limits, family: int,
                 tls: ssl.SSLContext | None) -> None:
        self.address_family = family
        self.limits = limits
        #: see :class:`~.observer.EventObserver`; may be set at any time
        self.observer: obs.EventObserver | None = None
        super().__init__(address, handler,
                         max_connections=limits.max_connections,
                         deadline=limits.request_timeout, tls=tls)

    def tell(self, name: str, *args: Any) -> None:
        """Call the observer's ``name``; an observer that raises is
        ignored (measuring must not change an answer)."""
        observer = self.observer
        if observer is None:
            return
        try:
            getattr(observer, name)(*args)
        except Exception:  # noqa: BLE001, S110 - measuring changes nothing
            pass

    def refused(self, client_address: Any) -> None:
        self.tell("revocation_refused", "other")


class Listener:
    """The webhook listener; :meth:`start` serves in a thread of its
    own, :meth:`stop` stops it."""

    def __init__(self, address: tuple[str, int], handler: RevocationHandler,
                 check: SignatureCheck | None, limits: Limits,
                 tls: ssl.SSLContext | None) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._server = _Server(address, _request_handler(handler, check),
                               limits, family, tls)
        self.scheme = "https" if tls is not None else "http"
        self.port: int = self._server.server_address[1]
        self.host = address[0]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    @property
    def observer(self) -> obs.EventObserver | None:
        return self._server.observer

    @observer.setter
    def observer(self, observer: obs.EventObserver | None) -> None:
        self._server.observer = observer

    def start(self) -> Listener:
        self._server.serve_in_thread(poll_interval=0.2)
        return self

    def stop(self) -> None:
        self._server.stop()


def _request_handler(handler: RevocationHandler,
                     check: SignatureCheck | None) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "trustpool-events"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # http.server quotes the request line; we log our own

        def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def handle(self) -> None:
            """http.server's, and a connection that ends without an
            answer told once as refused (``other``): a failed handshake
            or client certificate, a reset. A connection that sent
            nothing at all is not an event."""
            self._told = False
            self.raw_requestline = b""
            try:
                super().handle()
            except Exception:
                self._tell_refused("other")
                raise
            if self.raw_requestline:
                self._tell_refused("other")

        def _tell_refused(self, reason: str) -> None:
            if not self._told:
                self._told = True
                self.server.tell(  # type: ignore[attr-defined]
                    "revocation_refused", reason)

        def send_error(self, code: int, message: str | None = None,
                       explain: str | None = None) -> None:
            """http.server's own refusals (a bad request line, an unknown
            method), told by their status."""
            self._tell_refused(obs.refusal_of(code))
            super().send_error(code, message, explain)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.close_connection = True
            received = time.monotonic()
            received_at = time.time()
            #: (outcome, latency) once a verified event was handled
            self._event: tuple[str, float | None] | None = None
            try:
                status, word = self._post()
            except Exception as exc:  # noqa: BLE001 - the boundary
                LOG.error("revocation listener: handling failed (%s); "
                          "answered 500", type(exc).__name__)
                status, word = 500, "internal error"
                self._event = None
            self._answer(status, word)
            if self._event is None:
                self._tell_refused(obs.refusal_of(status))
                return
            self._told = True
            outcome, latency = self._event
            self.server.tell(  # type: ignore[attr-defined]
                "revocation_event", outcome, received_at,
                time.monotonic() - received, latency)

        def _post(self) -> tuple[int, str]:
            limits: Limits = self.server.limits  # type: ignore[attr-defined]
            peer = self.client_address[0]
            if self.headers.get("Transfer-Encoding") is not None:
                return self._refuse(peer, Refused(
                    411, "a chunked body; Content-Length is required"))
            length = self.headers.get("Content-Length")
            if length is None:
                return self._refuse(peer, Refused(
                    411, "no Content-Length"))
            length = length.strip()
            if not length.isdigit() or not length.isascii() or len(
                    length) > 12:
                return self._refuse(peer, Refused(
                    400, "a Content-Length that is not a plain number"))
            size = int(length)
            if size > limits.max_body_bytes:
                return self._refuse(peer, Refused(
                    413, f"a body of {size} bytes (max_body_bytes "
                    f"{limits.max_body_bytes})"))
            body = self.rfile.read(size)
            if len(body) != size:
                return self._refuse(peer, Refused(
                    400, "the body ended early"))
            try:
                note = read(body, check)
            except Refused as refused:
                return self._refuse(peer, refused)
            try:
                word = handler.handle(note)
            except Exception as exc:  # noqa: BLE001 - Keylime retries
                LOG.error("revocation event (%s) for Keylime agent %s: "
                          "the trust trait could not be removed (%s); "
                          "answered 503, the verifier will retry",
                          note.kind, note.agent_id, type(exc).__name__)
                self._event = ("failed", None)
                return 503, "not done, retry"
            outcome = obs.outcome_of(word)
            # the handler returns once Placement confirmed the removal
            latency = obs.latency(obs.verifier_timestamp(note.verifier_time),
                                  time.time()) \
                if outcome == "removed" else None
            self._event = (outcome, latency)
            return 200, word

        @staticmethod
        def _refuse(peer: str, refused: Refused) -> tuple[int, str]:
            (LOG.warning if refused.status in (401, 403) else LOG.info)(
                "revocation listener: refused an event from %s with %d: "
                "%s", peer, refused.status, refused.reason)
            return refused.status, "refused"

        def _answer(self, status: int, word: str) -> None:
            body = json.dumps({"result": word}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
            except OSError as exc:
                LOG.info("revocation listener: could not answer %d (%s)",
                         status, type(exc).__name__)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.close_connection = True
            self._answer(405, "POST revocation events here")
            self._tell_refused("method")

        do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    return Handler
