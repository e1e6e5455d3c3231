# SPDX-License-Identifier: Apache-2.0
"""HTTPS plumbing shared by the HTTP backends.

Two things requests does not do on its own and a scheduler needs: one
absolute deadline for a whole exchange, and a cap on the size of the
answer.

requests' timeouts are per socket operation, so a peer that drips its
status line, headers, the size lines of a chunked body, the TLS handshake
or the body one byte at a time keeps a request alive with no upper bound.
Checking the clock between reads cannot help while a read is inside
http.client's header parser. So each exchange has a watchdog: at the
deadline it shuts the connection's socket down (``shutdown(2)`` on a
duplicate of the descriptor, which wakes any read blocked on the socket,
in native threads and eventlet alike), and the exchange then fails as
"did not finish in time", whatever the read in progress made of the cut.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import re
import socket
import ssl
import threading
import time
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions
import urllib3.response
from oslo_config import cfg

from trustpool.attestation.strictjson import loads_strict
from trustpool.exceptions import AttestationError, Cause

__all__ = ["TRANSPORT_OPTS", "HttpSettings", "JsonClient"]

#: How the HTTP backends talk, in [trusted_computing] (COMMON_GROUP): the
#: old filter's attestation_insecure_ssl, and trustpool's own.
TRANSPORT_OPTS = [
    cfg.BoolOpt(
        "attestation_insecure_ssl",
        default=False,
        help="Skip verification of the attestation server's TLS "
        "certificate. Only for labs: anyone on the path can then forge "
        "trust answers.",
    ),
    cfg.StrOpt(
        "attestation_scheme",
        default="https",
        choices=[
            ("https", "TLS, verified unless attestation_insecure_ssl is set"),
            ("http", "plain text: answers can be forged on the network"),
        ],
        help="URL scheme used to reach the attestation server.",
    ),
    cfg.FloatOpt(
        "connect_timeout",
        default=3.0,
        min=0.001,
        help="Seconds to wait for the TCP and TLS connection to the "
        "attestation server. Keeps the scheduler from hanging on a dead "
        "server.",
    ),
    cfg.FloatOpt(
        "read_timeout",
        default=10.0,
        min=0.001,
        help="Seconds allowed for the answer to arrive once connected. "
        "connect_timeout + read_timeout is one absolute deadline for the "
        "whole exchange (connection, TLS, headers, body, and every request "
        "of a backend that needs several): a server that drips its answer "
        "is cut off at it, and the failure is remembered for "
        "failure_retry_interval.",
    ),
    cfg.StrOpt(
        "client_cert_file",
        help="PEM client certificate presented to the attestation server "
        "for mutual TLS.",
    ),
    cfg.StrOpt(
        "client_key_file",
        help="PEM private key of client_cert_file, when the certificate "
        "file does not contain it. Never logged.",
    ),
    cfg.IntOpt(
        "max_response_bytes",
        default=64 * 1024 * 1024,
        min=1024,
        help="Largest attestation answer read, in bytes; a larger one is "
        "refused.",
    ),
]

_CHUNK = 256 * 1024


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """How to reach one HTTP(S) service. Holds paths, never key material."""

    verify: bool | str = True
    cert_file: str | None = None
    key_file: str | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_bytes: int = 64 * 1024 * 1024
    #: the name the server's certificate must carry, when it is not the
    #: host connected to (Keylime 6.x certificates name no IP address)
    server_name: str | None = None
    #: the option that sets ``cert_file``, named in the hint a TLS failure
    #: without a client certificate gets
    cert_option: str = "client_cert_file"

    @property
    def budget(self) -> float:
        """Seconds one whole exchange may take."""
        return self.connect_timeout + self.read_timeout

    def cert(self) -> str | tuple[str, str] | None:
        if self.cert_file and self.key_file:
            return (self.cert_file, self.key_file)
        return self.cert_file


class _Exchange:
    """One request's deadline, and the sockets to cut when it passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self.expired = False

    def watch(self, conn: Any) -> None:
        with self._lock:
            self._connections.append(conn)
            expired = self.expired
        if expired:
            _cut(conn)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            connections = list(self._connections)
        for conn in connections:
            _cut(conn)


#: the exchange each thread is in; a request runs in one thread, and the
#: connection classes below find their exchange here
_current = threading.local()


def _cut(conn: Any) -> None:
    killer = getattr(conn, "_tp_killer", None)
    if killer is not None:
        try:
            killer.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: nothing left to cut


class _WatchedConnection:
    """Mixin for urllib3 connections: keep a duplicate of each new socket.

    The duplicate is what the watchdog shuts down. It is taken before TLS
    wraps the socket (wrapping detaches the original object, so only a
    second descriptor reaches the socket during the handshake), and closed
    with the connection.
    """

    _tp_killer: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self._close_killer()
        self._tp_killer = sock.dup()
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            exchange.watch(self)
        return sock

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            self._close_killer()

    def _close_killer(self) -> None:
        killer, self._tp_killer = self._tp_killer, None
        if killer is not None:
            killer.close()


#: http.client's own limit on a status line
_MAX_LINE = 65536
# RFC 9112: reason-phrase = *( HTAB / SP / VCHAR / obs-text )
_STATUS_LINE = re.compile(
    rb"HTTP/1\.[01] [1-9][0-9]{2}(?: [\t\x20-\x7e\x80-\xff]*)?\r\n")
_CHUNK_SIZE_LINE = re.compile(rb"[0-9A-Fa-f]{1,16}(?:;[^\r\n]*)?\r\n")
# RFC 9112 trailer-section: field lines (token ":" field-value), then CRLF
_TRAILER_LINE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n")
_MAX_TRAILER_LINES = 64


class _StrictStatus(http.client.HTTPResponse):
    """http.client reads ``HTTP/1.1 +200 OK``, ``0200`` or ``2_00`` as 200
    (it calls ``int()``); a trust answer must be framed as the grammar
    says, or it is not read at all."""

    def _read_status(self) -> tuple[str, int, str]:  # type: ignore[override]
        line = self.fp.readline(_MAX_LINE + 1)
        if not line:
            raise http.client.RemoteDisconnected(
                "Remote end closed connection without response")
        if not _STATUS_LINE.fullmatch(line):
            self._close_conn()  # type: ignore[attr-defined]
            # not quoted: what stands there may be any data at all
            raise http.client.BadStatusLine("malformed status line")
        version, status, reason = (line.decode("iso-8859-1").rstrip("\r\n")
                                   + " ").split(" ", 2)
        return version, int(status), reason.strip()

    # Chunked bodies: http.client reads a size with ``int(line, 16)`` (so
    # ``0x1f``, ``+1f``, `` 1f`` and ``1_f`` pass) and throws away the two
    # bytes after each chunk unread; both are checked here.

    def _read_next_chunk_size(self) -> int:
        line = self.fp.readline(1025)
        if not _CHUNK_SIZE_LINE.fullmatch(line):
            self._close_conn()  # type: ignore[attr-defined]
            raise ValueError("malformed chunk size line")
        return int(line.split(b";", 1)[0], 16)

    def _read_and_discard_trailer(self) -> None:
        # http.client ends the trailer section at EOF, at a bare LF or at
        # whatever line it meets; the grammar ends it with CRLF only, after
        # well-formed field lines. A body cut short there, or ended some
        # other way, is not an answer: a peer must not be able to make two
        # parsers disagree on where a trust answer ends.
        for _ in range(_MAX_TRAILER_LINES):
            line = self.fp.readline(1025)
            if line == b"\r\n":
                return
            if not _TRAILER_LINE.fullmatch(line):
                break
        self._close_conn()  # type: ignore[attr-defined]
        raise http.client.IncompleteRead(b"")

    def _get_chunk_left(self) -> int | None:
        if self.chunk_left == 0:  # type: ignore[attr-defined]
            if self._safe_read(2) != b"\r\n":  # type: ignore[attr-defined]
                self._close_conn()  # type: ignore[attr-defined]
                raise http.client.IncompleteRead(b"")
            self.chunk_left = None  # type: ignore[attr-defined]
        return super()._get_chunk_left()  # type: ignore[misc,no-any-return]


class _StrictChunks(urllib3.response.HTTPResponse):
    """urllib3 reads a chunk size with ``int(line, 16)`` (so ``0x1f``,
    ``+1f``, `` 1f`` and ``1_f`` pass) and throws away the two bytes after
    a chunk unread; both are checked here."""

    chunk_left: int | None

    def _update_chunk_length(self) -> None:
        if self.chunk_left is not None:
            return
        line = self._fp.fp.readline(1025)  # type: ignore[union-attr]
        if not _CHUNK_SIZE_LINE.fullmatch(line):
            self.close()
            raise urllib3.exceptions.ProtocolError(
                "malformed chunk size line")
        self.chunk_left = int(line.split(b";", 1)[0], 16)

    def _handle_chunk(self, amt: int | None) -> bytes:
        left = self.chunk_left or 0
        if amt is not None and amt < left:
            value: bytes = self._fp._safe_read(amt)  # type: ignore[union-attr]
            self.chunk_left = left - amt
            return value
        value = self._fp._safe_read(left)  # type: ignore[union-attr]
        if self._fp._safe_read(2) != b"\r\n":  # type: ignore[union-attr]
            self.close()
            raise urllib3.exceptions.ProtocolError(
                "chunk not followed by CRLF")
        self.chunk_left = None
        return value


class _StrictConnection(_WatchedConnection):
    """Every response read with the strict parsers above. urllib3 builds
    its response object from a module global rather than the pool's
    ``ResponseCls``; the subclass adds no state, so switching the class of
    the object it built is safe."""

    response_class = _StrictStatus  # type: ignore[assignment]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        response = super().getresponse(  # type: ignore[misc]
            *args, **kwargs)
        if type(response) is urllib3.response.HTTPResponse:
            response.__class__ = _StrictChunks
        return response


class _HTTPConnection(  # type: ignore[misc]
        _StrictConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(  # type: ignore[misc]
        _StrictConnection, urllib3.connection.HTTPSConnection):
    pass


class _WatchedPool:
    """Mixin for urllib3 pools: a kept-alive connection taken from the
    pool joins the exchange of the thread that takes it."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            exchange.watch(conn)
        return conn


class _HTTPPool(_WatchedPool, urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_WatchedPool, urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """An adapter on urllib3's own connection classes.

    Test harnesses and instrumentation (wsgi-intercept in Nova's functional
    tests, for one) replace ``HTTPSConnectionPool.ConnectionCls`` for the
    whole process; the replacements can drop TLS settings. The trust
    decision must not depend on what else is loaded in nova-scheduler, so
    the pools here name their connection classes themselves.
    """

    def __init__(self, server_name: str | None = None) -> None:
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._server_name:
            kwargs["server_hostname"] = self._server_name
            kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _HTTPPool, "https": _HTTPSPool}


class _NoHeaderDump(logging.Filter):
    """urllib3 logs the raw headers it could not parse, which can quote
    whatever a peer echoes back (an auth blob, say); that line is dropped:
    the exchange fails with its own, data-free, "malformed headers"."""

    def filter(self, record: logging.LogRecord) -> bool:
        # the exchange fails with its own "malformed headers" error
        return not str(record.msg).startswith("Failed to parse headers")


_HEADER_FILTER = _NoHeaderDump()


class JsonClient:
    """One ``requests.Session`` with TLS settings fixed at creation."""

    def __init__(self, settings: HttpSettings) -> None:
        # added here, not at import: importing a module changes nothing
        logging.getLogger("urllib3.connection").addFilter(_HEADER_FILTER)
        self.settings = settings
        self._session = requests.Session()
        adapter = _PinnedAdapter(settings.server_name)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.verify = settings.verify
        self._session.cert = settings.cert()
        # Proxies from the environment would also put another host in the
        # trust path; the attestation server is reached directly.
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, url: str, *,
                headers: dict[str, str] | None = None,
                body: Any = None,
                deadline: float | None = None) -> tuple[int, Any]:
        """Send one request and return ``(status, decoded JSON body)``.

        :param deadline: a ``time.monotonic()`` value by which the whole
            exchange (connect, TLS, status line, headers, chunk framing,
            body) must be over; by default ``connect_timeout +
            read_timeout`` from now. A backend that makes several requests
            for one answer passes the same deadline to each.
        :raises AttestationError: on any transport or TLS failure, any
            status but 200 (404 is returned to the caller), malformed
            framing (status line, headers, Content-Length, chunks), a body over
            the size cap, an exchange past the deadline, or a body that is
            not strict JSON.
        """
        own = time.monotonic() + self.settings.budget
        deadline = own if deadline is None else min(deadline, own)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AttestationError(self._late(url), "timeout")
        exchange = _Exchange()
        watchdog = threading.Timer(remaining, exchange.expire)
        watchdog.daemon = True
        outer = getattr(_current, "exchange", None)
        _current.exchange = exchange
        watchdog.start()
        try:
            status, raw, kind = self._exchange(method, url, headers, body,
                                               deadline, exchange)
        finally:
            watchdog.cancel()
            _current.exchange = outer
        if status == 404:
            return status, None
        try:
            return status, loads_strict(raw)
        except AttestationError as exc:
            raise AttestationError(
                f"{url} answered with a body that is not JSON "
                f"({kind}): {exc}", "malformed") from None

    def _exchange(self, method: str, url: str,
                  headers: dict[str, str] | None, body: Any,
                  deadline: float, exchange: _Exchange
                  ) -> tuple[int, bytes, str]:
        """Status, raw body and content type; fails past the deadline."""
        settings = self.settings
        try:
            response = self._session.request(
                method, url, headers=headers, json=body, stream=True,
                # Answers must come from the server we named: a redirect
                # would hand the trust decision to another host.
                allow_redirects=False,
                timeout=(settings.connect_timeout, settings.read_timeout))
        except Exception as exc:  # noqa: BLE001 - requests, urllib3, ssl...
            if exchange.expired:
                raise AttestationError(self._late(url), "timeout") from None
            raise AttestationError(*self._transport_error(url, exc)) \
                from None
        with response:
            status = response.status_code
            if exchange.expired:
                raise AttestationError(self._late(url), "timeout")
            if _header_defects(response) or _odd_framing(response):
                # http.client stops reading headers at a line it cannot
                # parse and hands the rest over as body; urllib3 only logs
                # it. Framing that two parsers read two ways proves nothing.
                raise AttestationError(
                    f"{url} answered with malformed headers", "malformed")
            if status == 404:
                return status, b"", ""
            if status != 200:
                raise AttestationError(
                    f"{url} answered HTTP {status} "
                    f"{_printable(response.reason)}{_location(response)}",
                    "http_status")
            raw = self._read_body(response, url, deadline, exchange)
            kind = _printable(response.headers.get("Content-Type",
                                                   "no content type"))
        if exchange.expired:
            # the watchdog cut the body short: what was read is not the
            # whole answer, however it parses
            raise AttestationError(self._late(url), "timeout")
        return status, raw, kind

    def _transport_error(self, url: str, exc: BaseException
                         ) -> tuple[str, Cause]:
        """The message and cause of a failure requests raised; the cause
        comes from the exception's type, never from its text."""
        cause = _root_cause(exc)
        kind: Cause
        if isinstance(exc, requests.exceptions.SSLError):
            text, kind = f"TLS failure talking to {url}: {cause}", "tls"
        elif isinstance(exc, requests.exceptions.Timeout):
            return f"timed out talking to {url}", "timeout"
        elif isinstance(exc, requests.exceptions.RequestException):
            text, kind = f"cannot reach {url}: {cause}", _request_cause(exc)
        else:
            text = (f"cannot talk to {url}: {type(exc).__name__}: "
                    f"{cause}")
            kind = "other"
        return text + self._client_cert_hint(cause), kind

    def _client_cert_hint(self, cause: str) -> str:
        """Servers that require a client certificate end the handshake
        with an alert, or just close it ("EOF occurred in violation of
        protocol"); neither says why, so we do."""
        if self.settings.cert_file:
            return ""
        lowered = cause.lower()
        if any(word in lowered for word in _CLIENT_CERT_SIGNS):
            return (f" (the server probably requires a client certificate;"
                    f" set {self.settings.cert_option})")
        return ""

    def _read_body(self, response: requests.Response, url: str,
                   deadline: float, exchange: _Exchange) -> bytes:
        limit = self.settings.max_bytes
        declared = response.headers.get("Content-Length")
        if declared is not None and not (declared.isdigit()
                                         and declared.isascii()):
            # one plain decimal number, or the body's end is a guess
            raise AttestationError(
                f"{url} sent an invalid Content-Length "
                f"{_printable(declared)!r}", "malformed")
        if declared and int(declared) > limit:
            raise AttestationError(
                f"{url} announced a {_printable(declared)}-byte answer, over "
                f"the {limit}-byte limit (max_response_bytes)", "malformed")
        sock = _socket_of(response)
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or exchange.expired:
                    raise AttestationError(self._late(url), "timeout")
                if sock is not None:
                    sock.settimeout(min(remaining, self.settings.read_timeout))
                chunk = response.raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise AttestationError(
                        f"{url} sent more than {limit} bytes "
                        f"(max_response_bytes)", "malformed")
                parts.append(chunk)
        except AttestationError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3 has many types
            if exchange.expired or time.monotonic() >= deadline - 0.05:
                raise AttestationError(self._late(url), "timeout") from None
            if _is_timeout(exc):
                raise AttestationError(
                    f"{url} sent nothing for {self.settings.read_timeout:g}s "
                    f"(read_timeout)", "timeout") from None
            raise AttestationError(
                f"connection broke while reading the answer of {url}: "
                f"{_root_cause(exc)}", _body_cause(exc)) from None
        return b"".join(parts)

    def _late(self, url: str) -> str:
        return (f"{url} did not finish its answer within "
                f"{self.settings.budget:g}s (connect_timeout + "
                f"read_timeout)")


_CLIENT_CERT_SIGNS = ("certificate required", "eof occurred",
                      "handshake failure", "unexpected eof",
                      "connection reset", "alert bad certificate")


def _printable(text: object, limit: int = 4000) -> str:
    """A peer-supplied string stripped of control characters, fit for a
    one-line log message. Cut only far past the final bound: secrets are
    masked later (backend guard, client), and half a secret could not be
    recognised; the length is bounded after masking."""
    value = str(text)[:limit]
    return "".join(c if c.isprintable() else "?" for c in value)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _odd_framing(response: requests.Response) -> bool:
    """Headers two parsers could read two ways: a control character in a
    header, chunked in HTTP/1.0 (undefined there), chunked beside a
    Content-Length, any transfer coding but plain ``chunked``."""
    for name, value in response.headers.items():
        if _CONTROL.search(name) or _CONTROL.search(value):
            return True  # a header line the grammar does not allow
    coding = response.headers.get("Transfer-Encoding")
    if coding is None:
        return False
    return (coding.strip().lower() != "chunked"
            or getattr(response.raw, "version", 11) != 11
            or "Content-Length" in response.headers)


def _request_cause(exc: BaseException) -> Cause:
    """The cause of a failed request that requests raised as neither a TLS
    error nor a timeout, from the types along its chain."""
    cause = _chain_cause(exc)
    if cause is not None:
        return cause
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection"
    if isinstance(exc, (requests.exceptions.InvalidHeader,
                        requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return "malformed"
    return "other"


def _body_cause(exc: BaseException) -> Cause:
    """The cause of a failure while the body was read."""
    return _chain_cause(exc) or "connection"


def _chain_cause(exc: BaseException) -> Cause | None:
    """What the exceptions inside ``exc`` say by their types: a TLS
    error, a timeout, a framing error of the peer's (a status line, a
    chunk size), or a broken connection; ``None`` when none does.

    Types only, never the text: the text is the peer's to choose."""
    chain = _chain(exc)
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "tls"
    if any(isinstance(e, TimeoutError) for e in chain):
        return "timeout"
    for e in chain:
        if isinstance(e, (http.client.RemoteDisconnected,
                          http.client.IncompleteRead, OSError)):
            continue  # the peer went away: a connection failure
        if isinstance(e, (http.client.HTTPException, ValueError)):
            return "malformed"
        if (isinstance(e, urllib3.exceptions.ProtocolError) and not any(
                isinstance(a, BaseException) for a in e.args)):
            return "malformed"  # raised by the strict parsers above
    if any(isinstance(e, (OSError, http.client.HTTPException))
           for e in chain):
        return "connection"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps (causes, contexts, urllib3's
    ``reason`` and exception arguments); bounded, a chain can loop."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(found) < 32:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(
                item is seen for seen in found):
            continue
        found.append(item)
        todo += [getattr(item, "reason", None), item.__cause__,
                 item.__context__, *item.args]
    return found


def _header_defects(response: requests.Response) -> bool:
    original = getattr(response.raw, "_original_response", None)
    return bool(getattr(getattr(original, "msg", None), "defects", None))


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed response, to tighten its timeout."""
    conn = getattr(response.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _is_timeout(exc: BaseException | None) -> bool:
    for _ in range(10):  # bounded: a chain can be made to loop
        if exc is None:
            return False
        if isinstance(exc, (TimeoutError, socket.timeout)) or (
                "timed out" in _text(exc).lower()):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _root_cause(exc: BaseException) -> str:
    """The innermost message, which is the one that says what went wrong."""
    for _ in range(10):
        inner = (getattr(exc, "reason", None) if isinstance(
            getattr(exc, "reason", None), BaseException) else None)
        if inner is None and exc.args and isinstance(exc.args[0],
                                                     BaseException):
            inner = exc.args[0]
        inner = inner or exc.__cause__
        if inner is None:
            break
        exc = inner
    return _printable(_text(exc) or type(exc).__name__)


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ says nothing
        return type(exc).__name__


def _location(response: requests.Response) -> str:
    target = response.headers.get("Location")
    return (f" (redirect to {_printable(target)!r} not followed)"
            if target else "")
