"""A real TLS server on 127.0.0.1 that answers with scripted raw bytes.

Unlike :mod:`tests.support.oat_server`, nothing here speaks HTTP on the
answering side: for each request a :class:`Script` says which bytes to
write, with which pauses between them, and how the connection ends:

- ``close``: a plain close (FIN; no TLS close_notify, as most HTTPS
  servers do);
- ``keep``: keep the connection and read the next request on it (HTTP
  keep-alive);
- ``stall``: hold the connection open without writing, until the client
  closes it or the server releases it (:meth:`RawServer.release`,
  :meth:`RawServer.stop`);
- ``reset``: a TCP reset (``SO_LINGER`` 0, then close).

The server reads each request (request line, headers, a body of the
announced Content-Length) before it plays the script routed to the
request's path, so one server serves a client that makes several requests
(Keylime: ``GET /version``, then ``GET /v2.x/agents/?bulk=True``).

Every connection runs in a thread of its own; :meth:`release` ends all of
them (stalled ones included) and waits for their threads, and
:meth:`stop` does that and ends the accept thread: no thread is left
running, or :meth:`stop` says which.
"""

from __future__ import annotations

import dataclasses
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Sequence

ENDINGS = ("close", "keep", "stall", "reset")
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024
#: seconds a connection may sit idle waiting for a request before the
#: server gives up on it (clients keep pooled connections open)
_IDLE = 30.0
_POLL = 0.05


@dataclasses.dataclass(frozen=True)
class Script:
    """What to answer to one request."""

    #: ``(bytes, pause)`` pairs: write the bytes, then wait ``pause`` s
    writes: tuple[tuple[bytes, float], ...]
    ending: str = "close"

    def __post_init__(self) -> None:
        if self.ending not in ENDINGS:
            raise ValueError(f"unknown ending {self.ending!r}")

    @property
    def data(self) -> bytes:
        return b"".join(data for data, _ in self.writes)

    @property
    def pause_total(self) -> float:
        return sum(pause for _, pause in self.writes)

    def __repr__(self) -> str:  # short enough for hypothesis' output
        parts = []
        for data, pause in self.writes:
            shown = data if len(data) <= 160 else (
                data[:120] + b"...<%d bytes>..." % len(data) + data[-30:])
            parts.append(f"({shown!r}, {pause:g})")
        if len(parts) > 12:
            parts = parts[:6] + [f"...{len(parts) - 12} more..."] + \
                parts[-6:]
        return f"Script([{', '.join(parts)}], ending={self.ending!r})"


NOT_FOUND = Script(((b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n", 0.0),), "close")


@dataclasses.dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: ``time.monotonic()`` when the request was read, and when its answer
    #: was over (written, ended) or None
    at: float = 0.0
    done: float | None = None


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | ssl.SSLSocket = sock
        # A second descriptor of the same socket: shutting it down wakes
        # whatever the connection's thread is blocked in (TLS included).
        self.killer: socket.socket | None = sock.dup()
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def kill(self) -> None:
        self.released.set()
        with self.lock:
            if self.killer is not None:
                try:
                    self.killer.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop_killer(self) -> None:
        with self.lock:
            killer, self.killer = self.killer, None
        if killer is not None:
            killer.close()

    def close(self, reset: bool = False) -> None:
        self.drop_killer()
        if reset:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


class RawServer:
    """``RawServer(cert, key).start()``; :meth:`serve` sets the scripts."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert_file), str(key_file))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._routes: list[tuple[re.Pattern[str], Script]] = []
        self._accepter: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        #: every request read since the last :meth:`release`
        self.requests: list[Request] = []
        #: connections accepted since the last :meth:`release`
        self.accepted = 0
        #: what happened to each connection since the last release, for
        #: a failing example's report
        self.log: list[str] = []
        self._started = time.monotonic()

    # -- control ---------------------------------------------------------

    def start(self) -> RawServer:
        self._accepter = threading.Thread(target=self._accept_loop,
                                          name="raw-server-accept",
                                          daemon=True)
        self._accepter.start()
        return self

    def serve(self, routes: Iterable[tuple[str, Script]]) -> None:
        """Answer requests whose ``METHOD path`` matches a pattern (a
        regular expression, searched) with its script; the first match
        wins; anything else gets a 404."""
        compiled = [(re.compile(pattern), script)
                    for pattern, script in routes]
        with self._lock:
            self._routes = compiled

    def release(self, timeout: float = 10.0) -> None:
        """End every open connection (stalled ones too) and wait for their
        threads; forget the requests seen."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.kill()
        stuck = []
        for conn in connections:
            if conn.thread is not None:
                conn.thread.join(timeout)
                if conn.thread.is_alive():
                    stuck.append(conn.thread.name)
        with self._lock:
            self.requests = []
            self.accepted = 0
            self.log = []
            self._started = time.monotonic()
        if stuck:
            raise RuntimeError(f"raw server threads did not end: {stuck}")

    def stop(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        if self._accepter is not None:
            self._accepter.join(10)
            with self._lock:
                self._threads.append(self._accepter)
        self.release()
        with self._lock:
            threads = list(self._threads)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"raw server threads left running: {alive}")

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], _POLL)
            except (OSError, ValueError):
                return  # listener closed by stop()
            if not ready:
                continue
            try:
                sock, _ = self._listener.accept()
            except OSError:
                continue
            conn = _Connection(sock)
            thread = threading.Thread(
                target=self._handle, args=(conn,), daemon=True,
                name=f"raw-server-conn-{sock.fileno()}")
            conn.thread = thread
            with self._lock:
                # started under the lock: release() must never find a
                # connection whose thread has not started yet
                thread.start()
                self._connections.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                self.accepted += 1

    def _note(self, conn: _Connection, what: str) -> None:
        with self._lock:
            self.log.append(f"{time.monotonic() - self._started:.3f}s "
                            f"conn {id(conn) % 10000}: {what}")

    def _done(self, conn: _Connection) -> bool:
        return self._stop.is_set() or conn.released.is_set()

    def _handle(self, conn: _Connection) -> None:
        reset = False
        how = "ended"
        self._note(conn, "accepted")
        try:
            raw = conn.sock
            raw.settimeout(5.0)
            tls = self._context.wrap_socket(raw, server_side=True,
                                            do_handshake_on_connect=False)
            conn.sock = tls
            tls.do_handshake()
            while not self._done(conn):
                request = self._read_request(tls, conn)
                if request is None:
                    how = "no further request (client closed or released)"
                    return
                self._note(conn, f"{request.method} {request.path}")
                with self._lock:
                    self.requests.append(request)
                    routes = list(self._routes)
                target = f"{request.method} {request.path}"
                script = next((s for p, s in routes if p.search(target)),
                              NOT_FOUND)
                ending = self._play(tls, conn, script)
                request.done = time.monotonic()
                how = f"script ended: {ending}"
                if ending == "reset":
                    reset = True
                    return
                if ending != "keep":
                    return
        except (OSError, ssl.SSLError, ValueError) as exc:
            # the client went away, or the test released us
            how = f"{type(exc).__name__}: {exc}"
            return
        finally:
            self._note(conn, f"closed ({how})")
            conn.close(reset=reset)
            with self._lock:
                self._connections.discard(conn)

    def _read_request(self, tls: ssl.SSLSocket,
                      conn: _Connection) -> Request | None:
        buf = b""
        waited = 0.0
        tls.settimeout(_POLL)
        while b"\r\n\r\n" not in buf:
            if self._done(conn) or waited > _IDLE or len(buf) > _MAX_HEAD:
                return None
            try:
                chunk = tls.recv(65536)
            except TimeoutError:
                waited += _POLL
                continue
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, _, target = lines[0].partition(" ")
        path = target.rsplit(" ", 1)[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        length = min(max(length, 0), _MAX_BODY)
        tls.settimeout(5.0)
        while len(rest) < length:
            if self._done(conn):
                return None
            chunk = tls.recv(65536)
            if not chunk:
                return None
            rest += chunk
        return Request(method, path, headers, rest[:length], time.monotonic())

    def _play(self, tls: ssl.SSLSocket, conn: _Connection,
              script: Script) -> str:
        tls.settimeout(5.0)
        for data, pause in script.writes:
            if self._done(conn):
                return "close"
            if data:
                tls.sendall(data)
            if pause > 0 and self._wait(conn, pause):
                return "close"
        if script.ending == "stall":
            self._stall(tls, conn)
            return "close"
        return script.ending

    def _wait(self, conn: _Connection, seconds: float) -> bool:
        """Sleep ``seconds``; True if the server was released meanwhile."""
        if conn.released.wait(seconds):
            return True
        return self._stop.is_set()

    def _stall(self, tls: ssl.SSLSocket, conn: _Connection) -> None:
        """Write nothing more; return when the client closes, or when the
        server is released or stopped."""
        tls.settimeout(_POLL)
        while not self._done(conn):
            try:
                if not tls.recv(65536):
                    return
            except TimeoutError:
                continue


def script(parts: Sequence[bytes | tuple[bytes, float]],
           ending: str = "close") -> Script:
    """A :class:`Script` from bytes and ``(bytes, pause)`` pairs."""
    writes = tuple(p if isinstance(p, tuple) else (p, 0.0) for p in parts)
    return Script(writes, ending)
