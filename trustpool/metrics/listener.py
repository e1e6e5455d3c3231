# SPDX-License-Identifier: Apache-2.0
"""The ``/metrics`` listener of the service.

prometheus_client's WSGI app, behind a small WSGI app of ours, on the
standard library's threading WSGI server; not prometheus_client's
``start_http_server``, because that one answers the metrics on every path
and ``OPTIONS``, names the Python version in its ``Server`` header, lets a
silent client hold its thread forever, and fails to bind with an
``OSError`` that names neither the option nor the value. Here:

- ``GET /metrics`` (with prometheus_client's own content negotiation,
  gzip and ``name[]`` filter) is the only thing served; any other path is
  404, any other method 405. The metrics hold host names, trust levels,
  counts and times: no reason text (which can quote a server's answer),
  no option value, no secret.
- a client that sends nothing, or drips its request, is dropped a few
  seconds after it connected, and at most a few connections are served
  at once;
- a malformed value, or an address that cannot be bound (in use, not
  local, unknown name), is a :class:`ConfigurationError` naming
  ``[trustpool_traits] metrics_listen`` and the value, at start-up.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import (
    ServerHandler,
    WSGIRequestHandler,
    WSGIServer,
)

from prometheus_client import CollectorRegistry, make_wsgi_app

from trustpool.conf import TRAIT_GROUP
from trustpool.exceptions import ConfigurationError
from trustpool.serving import BoundedServerMixIn

__all__ = ["Listener", "metrics_app", "parse", "start"]

LOG = logging.getLogger(__name__)
OPTION = "metrics_listen"
PATH = "/metrics"
#: seconds a client may take for its whole request and answer
_CLIENT_TIMEOUT = 10.0
#: connections served at once; Prometheus needs one per scraper
_MAX_CONNECTIONS = 16
_FORM = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s\[\]:]+))"
                   r":(?P<port>[0-9]{1,5})")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _bad(value: str, problem: str) -> ConfigurationError:
    return ConfigurationError(OPTION, f"{value!r}: {problem}",
                              group=TRAIT_GROUP)


def parse(value: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPV6]:PORT``.

    :raises ConfigurationError: naming the option and the value.
    """
    found = _FORM.fullmatch(value.strip())
    if not found:
        raise _bad(value, "not HOST:PORT (an IPv6 address in brackets: "
                   "[::1]:9464)")
    port = int(found["port"])
    if not 1 <= port <= 65535:
        raise _bad(value, f"port {port} is not between 1 and 65535")
    return found["v6"] or found["host"], port


def metrics_app(registry: CollectorRegistry) -> WSGIApp:
    """A WSGI app serving ``registry`` at ``GET /metrics`` only."""
    inner = make_wsgi_app(registry)

    def app(environ: dict[str, Any],
            start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: the metrics are at /metrics\n"]
        if environ.get("REQUEST_METHOD") != "GET":
            start_response("405 Method Not Allowed",
                           [("Allow", "GET"),
                            ("Content-Type", "text/plain; charset=utf-8")])
            return [b"only GET\n"]
        return inner(environ, start_response)  # type: ignore[no-any-return]

    return app


class _Response(ServerHandler):
    # wsgiref's default names the Python version in every answer
    server_software = "trustpool"


class _Handler(WSGIRequestHandler):
    server_version = "trustpool"
    sys_version = ""
    timeout = _CLIENT_TIMEOUT

    def handle(self) -> None:
        """wsgiref's own, with :class:`_Response` as the handler."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        response = _Response(self.rfile,
                             self.wfile,  # type: ignore[arg-type]
                             self.get_stderr(),
                             self.get_environ(), multithread=False)
        response.request_handler = self  # type: ignore[attr-defined]
        response.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        LOG.debug("metrics listener: %s", format % args)


class _Server(BoundedServerMixIn, WSGIServer):
    """At most :data:`_MAX_CONNECTIONS` connections at once (another is
    closed at once), each cut at one absolute deadline from accept to the
    end of the answer (see :mod:`trustpool.serving`)."""

    label = "metrics listener"
    thread_name = "trustpool-metrics"
    log = LOG
    # a scraper too many is not worth more than a debug line
    refusal_level = logging.DEBUG
    error_level = logging.DEBUG


class Listener:
    """A running listener; :meth:`close` stops it."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        host, port = str(server.server_address[0]), server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}{PATH}"

    def close(self) -> None:
        self._server.stop()


def start(value: str, app: WSGIApp) -> Listener:
    """Listen on ``value`` (``HOST:PORT``) and serve ``app`` in a daemon
    thread.

    :raises ConfigurationError: naming the option and the value, when it
        is malformed or cannot be bound.
    """
    host, port = parse(value)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise _bad(value, f"cannot resolve {host!r}: "
                   f"{getattr(exc, 'strerror', None) or exc}") from None
    family, _, _, _, address = infos[0]

    class Server(_Server):
        address_family = family

    try:
        server = Server((str(address[0]), int(address[1])), _Handler,
                        max_connections=_MAX_CONNECTIONS,
                        deadline=float(_Handler.timeout or _CLIENT_TIMEOUT))
    except OSError as exc:
        raise _bad(value, f"cannot listen there: {exc.strerror or exc}"
                   ) from None
    server.set_app(app)
    server.serve_in_thread()
    listener = Listener(server)
    LOG.info("Serving Prometheus metrics on %s", listener.url)
    return listener
