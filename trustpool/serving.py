# SPDX-License-Identifier: Apache-2.0
"""A threading HTTP server bounded on every axis a client controls.

The service listens twice (Prometheus ``/metrics``, the Keylime revocation
webhook) and each listener is reachable by whoever can reach the port. The
standard library's threading servers give every connection a thread for as
long as the client likes; :class:`BoundedServerMixIn` bounds them:

- threads: at most ``max_connections`` connections are served at once,
  one thread each, plus the accept loop and ONE watchdog thread for all
  of them;
- the accept loop never waits on a client: a connection over the cap is
  closed at once (no slot wait, no answer written: a client that does not
  read could block that too), the listening socket is non-blocking, and
  a TLS handshake (``tls``) happens in the connection's own thread, on its
  first read;
- time: one absolute deadline per connection, from accept to the end of
  the answer, TLS handshake included: the watchdog shuts the socket when
  it passes, however the client paces its bytes (a per-read timeout alone
  restarts with every byte dripped), and every socket operation times out
  on its own too;
- logs: a burst of refused connections costs one log line per ten
  seconds, not one per connection.

Standard library only, so that either listener can use it without the
other's dependencies.
"""

from __future__ import annotations

import _socket
import itertools
import logging
import socket
import ssl
import sys
import threading
import time
from typing import Any

__all__ = ["BoundedServerMixIn"]

LOG = logging.getLogger(__name__)
_Socket = socket.socket
#: seconds between two log lines about refused connections
_REFUSAL_LOG_INTERVAL = 10.0
#: seconds :meth:`BoundedServerMixIn.stop` waits, in all, for connection
#: threads still running after their sockets were cut
_STOP_WAIT = 5.0


class BoundedServerMixIn:
    """Mix in before a :class:`socketserver.TCPServer` subclass (such as
    :class:`http.server.HTTPServer` or wsgiref's ``WSGIServer``), in place
    of :class:`socketserver.ThreadingMixIn`.

    Subclasses may set :attr:`label`, :attr:`thread_name`, :attr:`log`
    and the two levels, and override :meth:`refused` to count refusals.
    """

    #: names the listener in log lines
    label = "listener"
    #: the accept loop's thread; ``-connection``, ``-watchdog`` added for
    #: the others
    thread_name = "trustpool-listener"
    log = LOG
    #: the level of the (rate-limited) line about refused connections
    refusal_level = logging.WARNING
    #: the level of the line about a connection that ended in an error
    error_level = logging.INFO
    #: the listening socket (the server's own attribute)
    socket: _Socket

    def __init__(self, *args: Any, max_connections: int, deadline: float,
                 tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self.max_connections = max_connections
        self.deadline = deadline
        self._tls = tls
        self._slots = threading.BoundedSemaphore(max_connections)
        self.request_queue_size = max(16, 2 * max_connections)
        self._refusals = _RefusalLog()
        self._serving: threading.Thread | None = None
        #: the connection threads running, by watchdog token (not found by
        #: current_thread(): under eventlet's monkey-patching it need not
        #: be the object started); stop() waits for them
        self._connections: dict[int, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        self._watchdog = _Watchdog(f"{self.thread_name}-watchdog")

    # -- the listening socket --------------------------------------------

    def server_activate(self) -> None:
        super().server_activate()  # type: ignore[misc]
        # select() said readable, but the client may be gone by accept()
        self.socket.setblocking(False)
        if self._tls is not None:
            # no handshake at accept: it happens in the connection's thread
            self.socket = self._tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False)

    # -- the accept loop: never waits ------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # type: ignore[attr-defined]
            self._refusals.count(self)
            self.refused(client_address)
            return
        token = self._watchdog.watch(request, self.deadline)
        thread = threading.Thread(
            target=self._serve_one, args=(request, client_address, token),
            name=f"{self.thread_name}-connection", daemon=True)
        try:
            with self._connections_lock:
                self._connections[token] = thread
            thread.start()
        except BaseException:
            with self._connections_lock:
                self._connections.pop(token, None)
            self._watchdog.forget(token)
            self._slots.release()
            raise

    def refused(self, client_address: Any) -> None:
        """A connection over the cap was closed (already logged); called
        in the accept loop, so it must not block."""

    # -- one connection, in its own thread -------------------------------

    def _serve_one(self, request: _Socket, client_address: Any,
                   token: int) -> None:
        try:
            request.settimeout(self.deadline)
            self.finish_request(  # type: ignore[attr-defined]
                request, client_address)
        except Exception:  # noqa: BLE001 - the connection's boundary
            self.handle_error(request, client_address)
        finally:
            # forgotten before the close, so that the watchdog never cuts
            # a later connection that reuses the descriptor
            self._watchdog.forget(token)
            self.shutdown_request(request)  # type: ignore[attr-defined]
            self._slots.release()
            with self._connections_lock:
                self._connections.pop(token, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake, a reset, a cut connection: its type only
        (a traceback could quote what the client sent)."""
        exc = sys.exc_info()[1]
        self.log.log(self.error_level, "%s: connection from %s ended: %s",
                     self.label,
                     client_address[0] if client_address else "?",
                     type(exc).__name__ if exc else "unknown")

    # -- running and stopping --------------------------------------------

    def serve_in_thread(self, poll_interval: float = 0.5) -> None:
        """``serve_forever`` in a daemon thread named
        :attr:`thread_name`."""
        self._serving = threading.Thread(
            target=self.serve_forever,  # type: ignore[attr-defined]
            kwargs={"poll_interval": poll_interval}, name=self.thread_name,
            daemon=True)
        self._serving.start()

    def stop(self) -> None:
        """Stop accepting, cut every connection still open, wait (at most
        :data:`_STOP_WAIT` seconds) for their threads to end, close.

        The wait: a thread cut in the middle of its handler runs on until
        the handler returns, and the caller closes what handlers use
        right after this (the event service, its handler).
        """
        if self._serving is not None:
            self.shutdown()  # type: ignore[attr-defined]
        self._watchdog.stop()
        ends = time.monotonic() + _STOP_WAIT
        with self._connections_lock:
            running = list(self._connections.values())
        for thread in running:
            if thread is not threading.current_thread():
                thread.join(max(0.0, ends - time.monotonic()))
        self.server_close()  # type: ignore[attr-defined]
        if self._serving is not None:
            self._serving.join(5)


class _RefusalLog:
    """One line at most every :data:`_REFUSAL_LOG_INTERVAL` seconds about
    connections refused for want of a slot, with how many there were."""

    def __init__(self) -> None:
        self._unlogged = 0
        self._logged_at: float | None = None

    def count(self, server: BoundedServerMixIn) -> None:
        # only the accept loop calls this: no lock needed
        self._unlogged += 1
        now = time.monotonic()
        if (self._logged_at is not None
                and now - self._logged_at < _REFUSAL_LOG_INTERVAL):
            return
        server.log.log(
            server.refusal_level,
            "%s: all %d connections busy; closed %d new one(s) at once",
            server.label, server.max_connections, self._unlogged)
        self._unlogged = 0
        self._logged_at = now


class _Watchdog:
    """One thread that shuts each watched socket at its deadline."""

    def __init__(self, name: str) -> None:
        self._due: dict[int, tuple[float, Any]] = {}
        self._tokens = itertools.count()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name,
                                        daemon=True)
        self._thread.start()

    def watch(self, sock: Any, seconds: float) -> int:
        with self._changed:
            token = next(self._tokens)
            self._due[token] = (time.monotonic() + seconds, sock)
            self._changed.notify()
        return token

    def forget(self, token: int) -> None:
        with self._changed:
            self._due.pop(token, None)

    def stop(self) -> None:
        """Cut every socket still watched and end the thread."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join(5)

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                now = time.monotonic()
                for token, (due, sock) in list(self._due.items()):
                    if due <= now:
                        del self._due[token]
                        _cut(sock)
                soonest = min((due for due, _ in self._due.values()),
                              default=None)
                self._changed.wait(None if soonest is None
                                   else soonest - now)
            for _, sock in self._due.values():
                _cut(sock)
            self._due.clear()


def _cut(sock: Any) -> None:
    """End the connection whatever its thread is doing (a blocked read or
    write returns at once). On the descriptor itself, also for a TLS
    socket: ``SSLSocket.shutdown`` would drop its TLS state under the
    thread still using it. A socket object that is only a wrapper
    (eventlet's green socket, under Nova's monkey-patching) is asked to
    shut itself. Never raises: the one watchdog thread must outlive any
    socket it cannot cut, or no deadline would hold any more."""
    try:
        if isinstance(sock, _socket.socket):
            _socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or reset
    except Exception as exc:  # noqa: BLE001 - see above
        LOG.debug("could not cut a connection at its deadline: %s",
                  type(exc).__name__)
