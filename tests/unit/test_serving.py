"""Both listeners of the service (Prometheus ``/metrics``, the Keylime
revocation webhook) under the attacks a client can make on a bounded
server, on real loopback sockets: a burst beyond the cap, a TLS handshake
that never ends, a request dripped or reset half-way, an answer never
read. Each test runs against both listeners where the attack applies to
both: they share one server class (:mod:`trustpool.serving`)."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from trustpool.metrics import listener as metrics_listener
from trustpool.metrics.service import ServiceMetrics
from trustpool.revocation import options
from trustpool.revocation import start as start_events

from tests.support.placement_server import _free_port as free_port

#: seconds a test waits for something that should come at once; far
#: above what a loaded machine needs, far below what the bug it guards
#: against would cost
BUDGET = 15.0


@dataclass
class Running:
    """One listener started for a test."""

    kind: str
    port: int
    #: a complete request and the start of its answer
    request: bytes
    answer: bytes
    tls: ssl.SSLContext | None
    #: stops the listener (the fixture stops it again at the end)
    stop: Callable[[], None] = lambda: None

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port),
                                        timeout=BUDGET)

    def connect(self) -> socket.socket:
        """A connection ready for HTTP (TLS done for the event listener)."""
        sock = self.raw()
        if self.tls is None:
            return sock
        return self.tls.wrap_socket(sock, server_hostname="127.0.0.1")

    def served(self) -> bytes:
        """The answer to :attr:`request`, retried while the listener
        turns the connection away (a slot not yet free)."""
        deadline = time.monotonic() + BUDGET
        while True:
            try:
                with self.connect() as sock:
                    sock.sendall(self.request)
                    got = _read_to_end(sock)
                if got.startswith(self.answer):
                    return got
            except OSError:
                pass
            assert time.monotonic() < deadline, "the listener never served"
            time.sleep(0.05)


def _read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ended the connection (end of file or a reset)
    before this socket's own timeout."""
    try:
        return sock.recv(100) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a client that crashed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def start(conf, pki, monkeypatch) -> Iterator[Callable[..., Running]]:
    """``start(kind, max_connections, deadline)`` for ``kind`` metrics or
    events; every listener started is stopped at the end."""
    stops: list[Callable[[], None]] = []

    def _start(kind: str, max_connections: int, deadline: float,
               app=None) -> Running:
        port = free_port()
        if kind == "metrics":
            monkeypatch.setattr(metrics_listener, "_MAX_CONNECTIONS",
                                max_connections)
            monkeypatch.setattr(metrics_listener._Handler, "timeout",
                                deadline)
            served = metrics_listener.start(
                f"127.0.0.1:{port}", app or metrics_listener.metrics_app(
                    ServiceMetrics().registry))
            stops.append(served.close)
            return Running(kind, port, b"GET /metrics HTTP/1.0\r\n\r\n",
                           b"HTTP/1.0 200", None, served.close)
        options.register_opts(conf)
        for name, value in {"listen": f"127.0.0.1:{port}",
                            "cert_file": str(pki["server"].cert),
                            "key_file": str(pki["server"].key),
                            "max_connections": max_connections,
                            "request_timeout": deadline}.items():
            conf.set_override(name, value, options.GROUP)
        service = start_events(conf, placement=None)
        stops.append(service.stop)
        # not a revocation: answered 400 before any handling
        return Running(kind, port,
                       b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2"
                       b"\r\n\r\n{}", b"HTTP/1.1 400",
                       ssl.create_default_context(
                           cafile=str(pki["ca"].cert_path)), service.stop)

    yield _start
    for stop in reversed(stops):
        stop()


def _hold_the_slot(running: Running) -> socket.socket:
    """A connection that has sent half its request and waits."""
    holder = running.connect()
    holder.sendall(running.request[:10])
    return holder


BOTH = pytest.mark.parametrize("kind", ["metrics", "events"])


@BOTH
def test_a_burst_beyond_the_cap_is_refused_without_stalling_accept(
        start, kind):
    """Every connection over the cap is closed at once by the accept loop:
    it never waits for a slot. (The event listener waited up to 1 s for
    each one, so a dozen connections from anyone who can reach it kept
    the verifier's own connection in the backlog for 12 s, longer than
    the verifier's 5 s timeout.)"""
    running = start(kind, max_connections=1, deadline=60.0)
    holder = _hold_the_slot(running)
    burst = []
    try:
        # fewer than the backlog, so that every connect completes at once
        for _ in range(12):
            burst.append(running.raw())
        started = time.monotonic()
        for sock in burst:
            sock.settimeout(max(0.01, started + 6.0 - time.monotonic()))
            assert _closed_by_server(sock), (
                "a refused connection was left waiting: the accept loop "
                "stalls on connections over the cap")
        # the holder is still served, the slot is then free again
        holder.sendall(running.request[10:])
        assert _read_to_end(holder).startswith(running.answer)
        assert running.served().startswith(running.answer)
    finally:
        holder.close()
        for sock in burst:
            sock.close()


def test_a_tls_handshake_that_never_ends_holds_only_its_own_slot(start):
    """The handshake happens in the connection's thread, under its
    deadline: a client that sends half a ClientHello (or nothing) blocks
    neither the accept loop nor the other connections, and is cut."""
    running = start("events", max_connections=3, deadline=1.0)
    silent = running.raw()
    half = running.raw()
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    try:
        assert running.served().startswith(running.answer)
        silent.settimeout(BUDGET)
        half.settimeout(BUDGET)
        assert _closed_by_server(silent)
        assert _closed_by_server(half)
    finally:
        silent.close()
        half.close()


@BOTH
def test_a_reset_in_mid_request_gives_its_slot_back(start, kind):
    running = start(kind, max_connections=1, deadline=60.0)
    _reset(_hold_the_slot(running))
    # within the budget, far before the 60 s deadline
    assert running.served().startswith(running.answer)


@BOTH
def test_a_client_that_drips_its_request_is_cut_at_the_deadline(start,
                                                                kind):
    """A byte every 0.2 s restarts every per-read timeout; the deadline
    is absolute."""
    running = start(kind, max_connections=1, deadline=1.0)
    first_line = running.request.split(b"\r\n")[0]
    with running.connect() as sock:
        assert _drip(sock, first_line + b"\r\nX-Drip: " + b"a" * 500), (
            "a dripping client kept its connection")
    assert running.served().startswith(running.answer)


def _drip(sock: socket.socket, data: bytes) -> bool:
    """Send ``data`` a byte every 0.2 s; whether the server ended the
    connection before the end (or :data:`BUDGET`)."""
    sock.settimeout(0.2)
    ends = time.monotonic() + BUDGET
    for at in range(len(data)):
        if time.monotonic() > ends:
            return False
        try:
            sock.sendall(data[at:at + 1])
        except OSError:
            return True
        if _closed_by_server(sock):
            return True
    return False


def _endless(environ, start_response):
    """An answer far larger than every socket buffer on the way (64 MiB)
    at /big, and a small one elsewhere."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ.get("PATH_INFO") != "/big":
        return [b"small\n"]
    chunk = b"x" * 65536
    return (chunk for _ in range(1024))


def test_a_client_that_never_reads_its_answer_is_cut(start):
    """The server's write blocks for good; the deadline still ends it and
    gives the slot back."""
    running = start("metrics", max_connections=1, deadline=1.0,
                    app=_endless)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(BUDGET)
    slow.connect(("127.0.0.1", running.port))
    try:
        slow.sendall(b"GET /big HTTP/1.0\r\n\r\n")
        assert slow.recv(10)  # the answer has started, and is not read on
        assert running.served().startswith(running.answer)
        # what had reached the client's buffers, then the end: it was cut
        got = 0
        while True:
            try:
                chunk = slow.recv(1 << 20)
            except ConnectionError:
                break
            if not chunk:
                break
            got += len(chunk)
        assert got < 64 << 20
    finally:
        slow.close()


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


@BOTH
def test_threads_stay_bounded_by_the_cap(start, kind):
    """Ten clients that hold their connections: the cap's worth of
    connection threads, one watchdog for all of them, nothing more."""
    running = start(kind, max_connections=3, deadline=60.0)
    before = _threads()
    held = [running.raw() for _ in range(10)]
    try:
        for sock in held:
            sock.settimeout(0.2)
        # the seven over the cap are closed; the three others wait
        closed = 0
        ends = time.monotonic() + BUDGET
        while closed < 7 and time.monotonic() < ends:
            closed = sum(_closed_by_server(s) for s in held)
        assert closed == 7
        new = [t for t in _threads() - before if t.is_alive()]
        assert len(new) <= 3, [t.name for t in new]
    finally:
        for sock in held:
            sock.close()


def test_the_watchdog_outlives_a_socket_it_cannot_cut():
    """One watchdog thread holds every deadline: a socket object whose
    shutdown fails oddly (eventlet's green socket has no class-level
    ``shutdown``, as Nova's functional tier found) must not end it."""
    from trustpool import serving

    class Odd:
        def shutdown(self, how):
            raise AttributeError("no shutdown here")

    watchdog = serving._Watchdog("test-watchdog")
    ours, peer = socket.socketpair()
    try:
        watchdog.watch(Odd(), 0)
        watchdog.watch(ours, 0.05)
        peer.settimeout(BUDGET)
        assert _closed_by_server(peer), "the watchdog died"
    finally:
        watchdog.stop()
        ours.close()
        peer.close()


def test_stop_returns_once_the_connection_threads_have_ended(start):
    """stop() with connections open: every connection is cut, and stop()
    returns only once their threads have ended (boundedly), so that no
    request is still being handled after the service stopped (the event
    service closes its handler right after). A connection thread inside
    the application when stop() came ran on after stop() returned."""
    inside, ended = threading.Event(), threading.Event()

    def slow(environ, start_response):
        inside.set()
        time.sleep(0.5)
        ended.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late\n"]

    running = start("metrics", max_connections=4, deadline=60.0, app=slow)
    before = _threads()
    busy = running.raw()
    busy.sendall(running.request)
    held = _hold_the_slot(running)
    silent = running.raw()
    try:
        assert inside.wait(BUDGET)
        running.stop()
        assert ended.is_set(), "stop() returned while a request ran"
        left = [t.name for t in _threads() - before if t.is_alive()]
        assert not left, left
        for sock in (busy, held, silent):
            sock.settimeout(BUDGET)
            assert _closed_by_server(sock)
    finally:
        for sock in (busy, held, silent):
            sock.close()
