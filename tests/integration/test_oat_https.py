"""The oat backend against a real HTTPS PollHosts server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from trustpool.attestation import TrustLevel
from trustpool.conf import make_client

from tests.support import faults, leakcheck
from tests.support.config import point_at
from tests.support.oat_server import OATServer, Response

SECRET = "blob-that-must-not-leak"
leakcheck.register(SECRET)


def client_for(conf, server, ca_file, **overrides):
    point_at(conf, server, ca_file, **overrides)
    return make_client(conf)


def test_verified_with_the_right_ca(conf, pki, oat_server):
    oat_server.levels = {"n1": "trusted", "n2": "untrusted", "n3": "unknown"}
    client = client_for(conf, oat_server, pki["ca"].cert_path)
    reports = client.levels(["n1", "n2", "n3", "n4"])
    assert {n: r.level for n, r in reports.items()} == {
        "n1": TrustLevel.TRUSTED, "n2": TrustLevel.UNTRUSTED,
        "n3": TrustLevel.UNKNOWN, "n4": TrustLevel.UNKNOWN}
    assert reports["n1"].vtime is not None
    assert oat_server.polls() == 1
    assert oat_server.requests[0].body == {"count": 4, "hosts":
                                           ["n1", "n2", "n3", "n4"]}


def test_auth_blob_is_sent_and_never_logged(conf, pki, oat_server, caplog):
    caplog.set_level(logging.DEBUG)
    oat_server.levels = {"n1": "trusted"}
    client = client_for(conf, oat_server, pki["ca"].cert_path,
                        attestation_auth_blob=SECRET)
    assert client.level("n1").level is TrustLevel.TRUSTED
    assert oat_server.requests[0].headers["x-auth-blob"] == SECRET
    oat_server.responder = lambda r: Response(401, json.dumps(
        {"error": f"bad blob {SECRET}"}).encode())
    client.invalidate()
    assert client.level("n1").level is TrustLevel.UNKNOWN
    assert "HTTP 401" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize(("server_cert", "ca", "needle"), [
    ("server", "other_ca", "TLS failure"),
    ("expired_server", "ca", "TLS failure"),
    ("wrong_name_server", "ca", "TLS failure"),
    ("server", None, "TLS failure"),  # system CAs do not know ours
])
def test_tls_failures_fail_closed(conf, pki, server_cert, ca, needle):
    server = OATServer(pki[server_cert].cert, pki[server_cert].key,
                       levels={"n1": "trusted"}).start()
    try:
        ca_file = pki[ca].cert_path if ca else None
        client = client_for(conf, server, ca_file)
        report = client.level("n1")
    finally:
        server.stop()
    assert report.level is TrustLevel.UNKNOWN
    assert needle in report.reason
    assert server.polls() == 0  # nothing was sent over a bad channel


def test_insecure_switch_skips_verification(conf, pki):
    server = OATServer(pki["server"].cert, pki["server"].key,
                       levels={"n1": "trusted"}).start()
    try:
        client = client_for(conf, server, pki["other_ca"].cert_path,
                            attestation_insecure_ssl=True)
        assert client.level("n1").level is TrustLevel.TRUSTED
    finally:
        server.stop()


def test_plain_http_only_when_named(conf, pki):
    plain = OATServer(None, None, levels={"n1": "trusted"}).start()
    try:
        # https expected, plain http answers: the handshake fails.
        point_at(conf, plain, pki["ca"].cert_path)
        conf.set_override("attestation_scheme", "https", "trusted_computing")
        client = make_client(conf)
        assert client.level("n1").level is TrustLevel.UNKNOWN
        conf.set_override("attestation_scheme", "http", "trusted_computing")
        client = make_client(conf)
        assert client.level("n1").level is TrustLevel.TRUSTED
    finally:
        plain.stop()


def test_client_certificate_presented_and_required(conf, pki):
    server = OATServer(pki["server"].cert, pki["server"].key,
                       client_ca=pki["ca"].cert_path,
                       levels={"n1": "trusted"}).start()
    try:
        without = client_for(conf, server, pki["ca"].cert_path)
        report = without.level("n1")
        assert report.level is TrustLevel.UNKNOWN
        # the server's alert or bare EOF says nothing; the reason does
        assert "probably requires a client certificate; set " \
            "client_cert_file" in report.reason

        rogue = client_for(conf, server, pki["ca"].cert_path,
                           client_cert_file=str(pki["rogue_client"].cert),
                           client_key_file=str(pki["rogue_client"].key))
        assert rogue.level("n1").level is TrustLevel.UNKNOWN

        good = client_for(conf, server, pki["ca"].cert_path,
                          client_cert_file=str(pki["client"].cert),
                          client_key_file=str(pki["client"].key))
        assert good.level("n1").level is TrustLevel.TRUSTED
    finally:
        server.stop()
    assert server.polls() == 1
    subject = dict(x[0] for x in server.requests[0].client_cert["subject"])
    assert subject["commonName"] == "nova-scheduler"


def test_key_material_never_logged(conf, pki, caplog):
    caplog.set_level(logging.DEBUG)
    server = OATServer(pki["server"].cert, pki["server"].key,
                       client_ca=pki["ca"].cert_path).start()
    try:
        client = client_for(conf, server, pki["ca"].cert_path,
                            client_cert_file=str(pki["rogue_client"].cert),
                            client_key_file=str(pki["rogue_client"].key))
        client.level("n1")
    finally:
        server.stop()
    assert "attestation" in caplog.text.lower()
    key_body = pki["rogue_client"].key_pem.decode().splitlines()[1]
    cert_body = pki["rogue_client"].pem.decode().splitlines()[1]
    assert key_body not in caplog.text
    assert cert_body not in caplog.text


def test_refused_connection_fails_fast(conf, pki):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    point_at(conf, type("S", (), {"port": port, "scheme": "https",
                                  "api_url": "/x"})(), pki["ca"].cert_path)
    client = make_client(conf)
    report = client.level("n1")
    assert report.level is TrustLevel.UNKNOWN
    assert "cannot reach" in report.reason


def test_dripping_server_is_cut_at_the_deadline(conf, pki):
    server = OATServer(pki["server"].cert, pki["server"].key).start()
    stop = threading.Event()

    class Dripper(server.handler_class):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b'{"hosts": [')
            while not stop.is_set():
                self.wfile.write(b" ")
                self.wfile.flush()
                stop.wait(0.2)  # each read succeeds within read_timeout

    server._httpd.RequestHandlerClass = Dripper
    try:
        client = client_for(conf, server, pki["ca"].cert_path,
                            connect_timeout=0.5, read_timeout=1.0)
        start = time.monotonic()
        report = client.level("n1")
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        server.stop()
    assert report.level is TrustLevel.UNKNOWN
    assert "did not finish" in report.reason
    assert elapsed < 1.5 + 1.0  # deadline plus scheduling slack


def test_reset_mid_body_fails_closed(conf, pki):
    server = OATServer(pki["server"].cert, pki["server"].key).start()

    class Resetter(server.handler_class):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b'{"hosts": [{"host_name": "n1", "trust_lvl"')
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True

    server._httpd.RequestHandlerClass = Resetter
    try:
        client = client_for(conf, server, pki["ca"].cert_path)
        report = client.level("n1")
    finally:
        server.stop()
    assert report.level is TrustLevel.UNKNOWN
    assert "attestation failed" in report.reason


def test_huge_body_is_refused_without_reading_it_all(conf, pki):
    server = OATServer(pki["server"].cert, pki["server"].key).start()
    filler = b" " * (1024 * 1024)

    class Flood(server.handler_class):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(60):  # 60 MB, no Content-Length
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(filler), filler))
            except OSError:
                pass

    server._httpd.RequestHandlerClass = Flood
    try:
        client = client_for(conf, server, pki["ca"].cert_path,
                            max_response_bytes=4 * 1024 * 1024)
        report = client.level("n1")
    finally:
        server.stop()
    assert report.level is TrustLevel.UNKNOWN
    assert "max_response_bytes" in report.reason


def test_oat_1_5_path_and_port(conf, pki):
    server = OATServer(pki["server"].cert, pki["server"].key,
                       api_url="/AttestationService/resources",
                       levels={"n1": "TRUSTED"}).start()
    try:
        client = client_for(conf, server, pki["ca"].cert_path)
        assert client.level("n1").level is TrustLevel.TRUSTED
    finally:
        server.stop()
    assert server.requests[0].path == "/AttestationService/resources/PollHosts"


def test_global_connection_class_patches_do_not_touch_our_tls(
        conf, pki, oat_server, monkeypatch):
    """Nova's functional harness (wsgi-intercept) swaps urllib3's pool
    connection classes for the whole process; ours must keep verifying."""
    import urllib3

    class Meddler(urllib3.connection.HTTPSConnection):
        def __init__(self, *args, **kwargs):
            raise AssertionError("a process-wide patch reached trustpool")

    monkeypatch.setattr(urllib3.HTTPSConnectionPool, "ConnectionCls",
                        Meddler)
    oat_server.levels = {"n1": "trusted"}
    good = client_for(conf, oat_server, pki["ca"].cert_path)
    assert good.level("n1").level is TrustLevel.TRUSTED
    wrong = client_for(conf, oat_server, pki["other_ca"].cert_path)
    report = wrong.level("n1")
    assert report.level is TrustLevel.UNKNOWN
    assert "TLS failure" in report.reason


def test_threads_share_one_request_to_a_hanging_server(conf, pki):
    """16 scheduler threads, a server that accepts and never answers: one
    request is made, every thread gets 'unknown', and none waits beyond
    the request timeout plus the client's margin."""
    server = OATServer(pki["server"].cert, pki["server"].key).start()
    server.responder = lambda r: server.stopping.wait(30) and None
    try:
        client = client_for(conf, server, pki["ca"].cert_path,
                            connect_timeout=0.5, read_timeout=0.5,
                            failure_retry_interval=30)
        results, waits = [], []

        def worker():
            start = time.monotonic()
            results.append(client.levels(["n1", "n2"]))
            waits.append(time.monotonic() - start)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert server.polls() == 1
    finally:
        server.stop()
    assert len(results) == 16
    assert all(r[n].level is TrustLevel.UNKNOWN for r in results
               for n in ("n1", "n2"))
    assert max(waits) < client.max_wait + 1.0


@pytest.mark.parametrize("mode", ["drip", "drip_headers", "drip_chunk_size",
                                  "hang"])
def test_one_absolute_deadline_in_native_threads(conf, pki, mode):
    """However the peer paces its bytes (status line, headers, a chunk's
    size line, the body), the exchange ends at connect_timeout +
    read_timeout, the failure is remembered, and a second thread that
    waited does not pay again. Native threads: Nova is moving to them."""
    server, options, started = faults.start(mode, pki)
    try:
        options.update(connect_timeout=0.5, read_timeout=1.0,
                       failure_retry_interval=30)
        for name, value in options.items():
            conf.set_override(name, value, "trusted_computing")
        client = make_client(conf)
        waits = []

        def ask():
            start = time.monotonic()
            waits.append((client.levels(faults.HOSTS),
                          time.monotonic() - start))

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        start = time.monotonic()
        again = client.levels(faults.HOSTS)
        fast = time.monotonic() - start
    finally:
        for s in started:
            s.stop()
    assert len(waits) == 4
    for reports, elapsed in waits:
        assert all(r.level is TrustLevel.UNKNOWN for r in reports.values())
        assert elapsed < 1.5 + 1.0, elapsed
    assert all(r.level is TrustLevel.UNKNOWN for r in again.values())
    assert fast < 0.2
    assert server.polls() == 1
    assert client.stats.failures == 1
    # the socket was cut at the deadline (the client's own abandonment of
    # the call is only the second line of defence): the reason is the
    # transport's, and no worker thread is left reading
    assert faults.FAULTS[mode].needle in again["node-a"].reason
    assert client._stray is None


def _raw_answer(head: bytes, body: bytes):
    def respond(request):
        faults._raw(request, head, [body])
    return respond


_BODY = json.dumps({"hosts": [{"host_name": "n1", "trust_lvl": "trusted",
                               "vtime": "2026-11-23T10:00:00Z"}]}).encode()


def test_a_chunked_answer_with_trailer_fields_is_read(conf, pki):
    """The strict end of a chunked body still reads what the grammar
    allows: field lines in the trailer section, then CRLF."""
    server = OATServer(pki["server"].cert, pki["server"].key).start()
    server.responder = _raw_answer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n0\r\nX-Sum: 1\r\nX-Done:\r\n\r\n"
        % (len(_BODY), _BODY))
    try:
        report = client_for(conf, server, pki["ca"].cert_path).level("n1")
    finally:
        server.stop()
    assert report.level is TrustLevel.TRUSTED, report.reason


@pytest.mark.parametrize(("head", "body", "needle"), [
    (b"HTTP/1.1 +200 OK\r\nContent-Length: %d\r\n\r\n" % len(_BODY), _BODY,
     "BadStatusLine"),
    (b"HTTP/1.1 200 OK\x00x\r\nContent-Length: %d\r\n\r\n" % len(_BODY),
     _BODY, "BadStatusLine"),
    (b"HTTP/1.1 205 Reset Content\r\nContent-Length: %d\r\n\r\n"
     % len(_BODY), _BODY, "HTTP 205"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: +%d\r\n\r\n" % len(_BODY), _BODY,
     "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nX-Nul: a\x00b\r\nContent-Length: %d\r\n\r\n"
     % len(_BODY), _BODY, "malformed headers"),
    (b"HTTP/1.1 200 OK\r\nbroken line\r\nContent-Length: %d\r\n\r\n"
     % len(_BODY), _BODY, "malformed headers"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"0x%x\r\n%s\r\n0\r\n\r\n" % (len(_BODY), _BODY), "connection broke"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"%x\r\n%sXX0\r\n\r\n" % (len(_BODY), _BODY), "connection broke"),
    (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"%x\r\n%s\r\n0\r\n\r\n" % (len(_BODY), _BODY), "malformed headers"),
    # the trailer section: cut short before its final CRLF (the long fuzz
    # profile found it trusted), ended by a bare LF, or a line that is no
    # field line
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"%x\r\n%s\r\n0\r\n" % (len(_BODY), _BODY), "connection broke"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"%x\r\n%s\r\n0\r\nX-Sum: 1\r\n" % (len(_BODY), _BODY),
     "connection broke"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"%x\r\n%s\r\n0\r\n\n" % (len(_BODY), _BODY), "connection broke"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"%x\r\n%s\r\n0\r\nno colon here\r\n\r\n" % (len(_BODY), _BODY),
     "connection broke"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
     % len(_BODY.decode().encode("utf-16")), _BODY.decode().encode("utf-16"),
     "not UTF-8"),
])
def test_framing_two_parsers_could_read_two_ways_is_refused(
        conf, pki, head, body, needle):
    """Found by the fuzz tier: answers whose framing http.client or
    json.loads read leniently (int() on a status or a chunk size, a header
    line it cannot parse, UTF-16) were trusted."""
    server = OATServer(pki["server"].cert, pki["server"].key).start()
    server.responder = _raw_answer(head, body)
    try:
        client = client_for(conf, server, pki["ca"].cert_path)
        report = client.level("n1")
    finally:
        server.stop()
    assert report.level is TrustLevel.UNKNOWN
    assert needle in report.reason, report.reason
