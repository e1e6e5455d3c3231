"""A fault-injecting PollHosts server: one named mode per fault.

Every mode is a real HTTPS (or deliberately not) server on 127.0.0.1 that
misbehaves in one way an attestation server, a proxy or an attacker on the
path could. :func:`start` returns the server and the ``[trusted_computing]``
overrides that point trustpool at it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

from tests.support.oat_server import OATServer, Request, Response, vtime_now

HOSTS = ["node-a", "node-b", "node-c"]


@dataclasses.dataclass(frozen=True)
class Fault:
    description: str
    #: words of the reason trustpool must log for this fault
    needle: str
    #: hosts a trusted request may still pass: the fault leaves valid data
    #: for them. Empty for every mode here.
    may_pass: frozenset[str] = frozenset()
    #: extra [trusted_computing] options the mode is run with
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode())


def _trusted(names: list[str], vtime: str | None = None) -> list[dict]:
    return [{"host_name": n, "trust_lvl": "trusted",
             "vtime": vtime or vtime_now()} for n in names]


def _asked(request: Request) -> list[str]:
    body = request.body
    return list(body.get("hosts", [])) if isinstance(body, dict) else []


def _raw(request: Request, head: bytes, parts: list[bytes],
         pause: float = 0.0, reset: bool = False) -> None:
    handler = request.handler
    handler.close_connection = True
    try:
        handler.wfile.write(head)
        for part in parts:
            handler.wfile.write(part)
            handler.wfile.flush()
            if pause and request.handler.oat_server.stopping.wait(pause):
                return
        if reset:
            # let the client read the head first: a reset that arrives
            # before it reads discards what was already received
            request.handler.oat_server.stopping.wait(0.3)
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
    except OSError:
        pass


def _hang(request: Request) -> None:
    request.handler.close_connection = True
    request.handler.oat_server.stopping.wait(30)


def _drip(request: Request) -> None:
    body = json.dumps({"hosts": _trusted(_asked(request))}).encode()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    _raw(request, head, [bytes([b]) for b in body], pause=0.25)


def _reset(request: Request) -> None:
    body = json.dumps({"hosts": _trusted(_asked(request))}).encode()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    _raw(request, head, [body[: len(body) // 2]], reset=True)


def _huge(request: Request) -> None:
    # 60 MB of valid-looking JSON, announced honestly
    entry = json.dumps(_trusted(["padding-host"])[0]).encode() + b","
    count = 60 * 1024 * 1024 // len(entry) + 1
    tail = json.dumps(_trusted(_asked(request))).encode()[1:]
    total = len(b'{"hosts": [') + len(entry) * count + len(tail) + 1
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % total)
    chunk = entry * 4096
    parts = [b'{"hosts": ['] + [chunk] * (count // 4096) + \
        [entry * (count % 4096), tail, b"}"]
    _raw(request, head, parts)


def _drip_headers(request: Request) -> None:
    # each byte arrives well within read_timeout: only an absolute
    # deadline ends this
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: abcdefgh\r\n" * 500
    _raw(request, b"", [bytes([b]) for b in head], pause=0.2)


def _drip_chunk_size(request: Request) -> None:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    # a chunk-size line with an extension that never ends
    _raw(request, head, [b"5;"] + [b"x"] * 5000, pause=0.2)


def _deep_json(request: Request) -> Response:
    return Response(200, b"[" * 200_000 + b"]" * 200_000)


def _duplicate_keys(request: Request) -> Response:
    # last-wins parsing would read every host as trusted
    entries = ",".join(
        f'{{"host_name": "{n}", "trust_lvl": "untrusted", '
        f'"trust_lvl": "trusted"}}' for n in _asked(request))
    return Response(200, f'{{"hosts": [{entries}]}}'.encode())


def _status(code: int) -> Callable[[Request], Response]:
    return lambda r: _json({"error": "nope"}, code)


RESPONDERS: dict[str, Callable[[Request], Response | None]] = {
    "hang": _hang,
    "drip": _drip,
    "reset": _reset,
    "http_500": _status(500),
    "http_502": _status(502),
    "http_503": _status(503),
    "http_401": _status(401),
    "http_403": _status(403),
    "http_404": _status(404),
    "html_200": lambda r: Response(
        200, b"<html><body>Please log in</body></html>",
        {"Content-Type": "text/html"}),
    "truncated_json": lambda r: Response(
        200, json.dumps({"hosts": _trusted(_asked(r))}).encode()[:-7]),
    "hosts_not_list": lambda r: _json({"hosts": {n: "trusted"
                                                 for n in _asked(r)}}),
    "missing_trust_lvl": lambda r: _json({"hosts": [
        {"host_name": n, "vtime": vtime_now()} for n in _asked(r)]}),
    "numbers_as_names": lambda r: _json({"hosts": [
        {"host_name": i, "trust_lvl": "trusted"}
        for i, _ in enumerate(_asked(r))]}),
    "spoofed_names": lambda r: _json({"hosts": _trusted(
        _asked(r) + ["intruder-host"])}),
    "conflicting_duplicate": lambda r: _json({"hosts": _trusted(_asked(r)) + [
        {"host_name": _asked(r)[0], "trust_lvl": "untrusted"}]}),
    "vtime_future": lambda r: _json({"hosts": _trusted(
        _asked(r), _stamp(days=+3))}),
    "vtime_past": lambda r: _json({"hosts": _trusted(
        _asked(r), _stamp(days=-400))}),
    "huge_body": _huge,
    "drip_headers": _drip_headers,
    "drip_chunk_size": _drip_chunk_size,
    "deep_json": _deep_json,
    "duplicate_keys": _duplicate_keys,
    "vtime_overflow": lambda r: _json({"hosts": _trusted(
        _asked(r), "9999-12-31T23:59:59-23:59")}),
    "vtime_missing": lambda r: _json({"hosts": [
        {"host_name": n, "trust_lvl": "trusted"} for n in _asked(r)]}),
    "vtime_not_text": lambda r: _json({"hosts": [
        {"host_name": n, "trust_lvl": "trusted", "vtime": [1700000000]}
        for n in _asked(r)]}),
}

AGE = {"max_report_age": 300}

FAULTS: dict[str, Fault] = {
    "refused": Fault("connection refused: nothing listens",
                     "cannot reach"),
    "hang": Fault("accepts, reads the request, never answers", "timed out"),
    "drip": Fault("a valid answer, one byte every 0.25 s",
                  "did not finish its answer"),
    "reset": Fault("connection reset in the middle of the body",
                   "connection broke while reading"),
    "http_500": Fault("HTTP 500", "answered HTTP 500"),
    "http_502": Fault("HTTP 502 from a proxy", "answered HTTP 502"),
    "http_503": Fault("HTTP 503", "answered HTTP 503"),
    "http_401": Fault("HTTP 401: auth blob refused", "answered HTTP 401"),
    "http_403": Fault("HTTP 403", "answered HTTP 403"),
    "http_404": Fault("HTTP 404: wrong API path", "answered HTTP 404"),
    "html_200": Fault("200 with an HTML login page",
                      "not JSON (text/html)"),
    "truncated_json": Fault("200 with JSON cut short", "not JSON"),
    "hosts_not_list": Fault("'hosts' is an object, not a list",
                            "'hosts' list"),
    "missing_trust_lvl": Fault("entries without trust_lvl",
                               "no string trust_lvl"),
    "numbers_as_names": Fault("host names that are numbers",
                              "host_name is not a non-empty string"),
    "spoofed_names": Fault("every asked host trusted, plus one not asked",
                           "not asked about: 'intruder-host'"),
    "conflicting_duplicate": Fault("one host twice: trusted, untrusted",
                                   "twice, as 'trusted' and 'untrusted'"),
    "vtime_future": Fault("all trusted, vtime 3 days ahead (clock skew), "
                          "max_report_age = 300", "ahead of ours",
                          options=AGE),
    "vtime_past": Fault("all trusted, vtime 400 days old, "
                        "max_report_age = 300", "stale:", options=AGE),
    "huge_body": Fault("a 60 MB answer (over max_response_bytes)",
                       "max_response_bytes"),
    "drip_headers": Fault("response headers, one byte every 0.2 s",
                          "did not finish its answer"),
    "drip_chunk_size": Fault("a chunked body whose size line drips, one "
                             "byte every 0.2 s", "did not finish its answer"),
    "deep_json": Fault("200,000 nested lists (RecursionError in a JSON "
                       "parser)", "nested too deeply"),
    "duplicate_keys": Fault("each entry says trust_lvl twice: untrusted, "
                            "then trusted", "appears twice in one object"),
    "vtime_overflow": Fault("all trusted, vtime 9999-12-31T23:59:59-23:59 "
                            "(past the last representable year in UTC), "
                            "max_report_age = 300", "cannot be read",
                            options=AGE),
    "vtime_missing": Fault("all trusted, no vtime, max_report_age = 300",
                           "gave no time", options=AGE),
    "vtime_not_text": Fault("all trusted, vtime a list, "
                            "max_report_age = 300", "gave no time",
                            options=AGE),
    "tls_wrong_ca": Fault("certificate from a CA trustpool does not trust",
                          "certificate verify failed"),
    "tls_expired": Fault("expired server certificate",
                         "certificate has expired"),
    "tls_wrong_name": Fault("certificate for another host name",
                            "mismatch"),
    "plain_http": Fault("plain HTTP where HTTPS is expected",
                        "TLS failure"),
    "redirect": Fault("307 to another server that says every host is "
                      "trusted", "HTTP 307"),
}


def _stamp(days: int) -> str:
    when = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(days=days)
    return when.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def start(mode: str, pki: dict) -> tuple[OATServer, dict[str, Any],
                                         list[OATServer]]:
    """Start the server for ``mode``.

    :returns: the server, the options that point trustpool at it (with
        the mode's own options), and every server started (to stop).
    """
    cert = {"tls_expired": "expired_server",
            "tls_wrong_name": "wrong_name_server"}.get(mode, "server")
    if mode == "plain_http":
        server = OATServer(None, None)
    else:
        server = OATServer(pki[cert].cert, pki[cert].key)
    started = [server]
    server.levels = {n: "trusted" for n in HOSTS}
    responder = RESPONDERS.get(mode)
    if responder is not None:
        server.responder = responder
    if mode == "redirect":
        elsewhere = OATServer(pki["server"].cert, pki["server"].key,
                              levels={n: "trusted" for n in HOSTS}).start()
        started.append(elsewhere)
        server.responder = lambda r: Response(
            307, b"", {"Location": f"{elsewhere.url}/PollHosts"})
    server.start()
    if mode == "refused":
        server.stop()
    ca = pki["other_ca" if mode == "tls_wrong_ca" else "ca"].cert_path
    options = {"attestation_server": "127.0.0.1",
               "attestation_port": server.port,
               "attestation_scheme": "https",
               "attestation_server_ca_file": str(ca),
               "connect_timeout": 1.0, "read_timeout": 1.5,
               "max_response_bytes": 8 * 1024 * 1024}
    options.update(FAULTS[mode].options)
    return server, options, started
