"""Quarantine against a misbehaving Nova API: a real HTTP server on
127.0.0.1 that answers os-services the way a broken Nova, a proxy or an
attacker on the path could, and trustpool's real ComputeAPI (keystoneauth1
session and adapter) talking to it.

The promise under attack: whatever Nova answers, quarantine disables or
re-enables only the one nova-compute service of the host it means, never
another, and every due action ends in an audit event; one bad record never
costs the other hosts of the pass their actions.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from typing import Any

import pytest
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session

from trustpool import events
from trustpool.attestation import HostReport, TrustLevel
from trustpool.openstack.compute import ComputeAPI
from trustpool.quarantine import Quarantine, options


def service(host: str, sid: str | None = None, **fields: Any) -> dict:
    record = {"id": sid or f"id-{host}", "host": host,
              "binary": "nova-compute", "status": "enabled",
              "disabled_reason": None}
    record.update(fields)
    return record


class FakeNova:
    """os-services over real HTTP. ``listing(query)`` gives the body (or
    raw bytes) of every GET /os-services; PUTs are recorded."""

    def __init__(self, services: list[dict]) -> None:
        self.services = services
        self.puts: list[tuple[str, dict]] = []
        self.listing = self.filtered
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = body if isinstance(body, bytes) else \
                    json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path.endswith("/os-services"):
                    self._send(200, fake.listing(query))
                else:
                    self._send(404, {"error": "no"})

            def do_PUT(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                # one path segment, decoded as a real Nova's router does
                sid = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
                fake.puts.append((sid, body))
                for record in fake.services:
                    if record.get("id") == sid:
                        record.update(body)
                        if body.get("status") == "enabled":
                            record["disabled_reason"] = None
                self._send(200, {"service": {}})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2.1"

    def filtered(self, query: dict) -> dict:
        """What a correct Nova answers."""
        hosts = query.get("host")
        return {"services": [
            s for s in self.services
            if hosts is None or s.get("host") == hosts[0]]}

    def compute(self) -> ComputeAPI:
        return ComputeAPI(ks_adapter.Adapter(
            ks_session.Session(timeout=10), endpoint_override=self.url))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def nova():
    made: list[FakeNova] = []

    def make(services: list[dict]) -> FakeNova:
        made.append(FakeNova(services))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


@pytest.fixture
def qconf(conf):
    options.register_opts(conf)
    conf.set_override("enabled", True, options.GROUP)
    conf.set_override("untrusted_passes", 1, options.GROUP)
    conf.set_override("trusted_passes", 1, options.GROUP)
    conf.set_override("host_attribute", "host", "trusted_computing")
    return conf


def untrusted(*hosts: str) -> dict[str, HostReport]:
    return {h: HostReport(h, TrustLevel.UNTRUSTED, "oat", "r") for h in hosts}


def test_a_nova_that_ignores_the_host_filter_disables_no_other_host(
        qconf, nova, audit):
    """A Nova (or a proxy) that answers every service, whatever ``host``
    asked for: the operator's cmp0, listed first, must not be disabled
    for cmp1's verdict."""
    fake = nova([service("cmp0"), service("cmp1")])
    fake.listing = lambda query: {"services": fake.services}
    q = Quarantine(qconf, fake.compute())
    q.scan()
    q.after_pass_now(untrusted("cmp1"))
    assert [sid for sid, _ in fake.puts] == ["id-cmp1"]
    assert fake.services[0]["status"] == "enabled"
    assert [e["host"] for e in audit()] == ["cmp1"]


@pytest.mark.parametrize("listed", [
    [service("cmp1", "id-a"), service("cmp1", "id-b")],
    [service("cmp1", "id-a"),
     service("cmp1", "id-a", status="disabled",
             disabled_reason="maintenance")],
], ids=["two-services", "one-service-twice-differently"])
def test_a_host_listed_with_several_services_is_not_acted_on(
        qconf, nova, audit, listed):
    """Two different nova-compute records for one host: which one is the
    host's is anybody's guess, and one may be an operator's; trustpool
    does nothing and says so."""
    fake = nova(listed)
    q = Quarantine(qconf, fake.compute())
    q.scan()
    q.after_pass_now(untrusted("cmp1"))
    assert fake.puts == []
    [event] = audit()
    assert (event["event"], event["host"], event["outcome"]) == (
        events.QUARANTINE_SKIPPED, "cmp1", "failed")


def test_one_service_listed_twice_the_same_is_one(qconf, nova, audit):
    fake = nova([service("cmp1"), service("cmp1")])
    q = Quarantine(qconf, fake.compute())
    q.scan()
    q.after_pass_now(untrusted("cmp1"))
    assert [sid for sid, _ in fake.puts] == ["id-cmp1"]


def _only_cmp2_is_quarantined(qconf, fake, audit) -> None:
    """A pass that finds cmp1 and cmp2 untrusted, with Nova's answer for
    cmp1 unusable: cmp1 is skipped as failed, cmp2 alone is disabled."""
    q = Quarantine(qconf, fake.compute())
    q.scan()
    q.after_pass_now(untrusted("cmp1", "cmp2"))
    assert [sid for sid, _ in fake.puts] == ["id-cmp2"]
    trail = [(e["event"], e["host"], e.get("outcome")) for e in audit()]
    assert trail == [(events.QUARANTINE_SKIPPED, "cmp1", "failed"),
                     (events.QUARANTINE, "cmp2", None)]


@pytest.mark.parametrize("bad", [
    {"host": "cmp1", "binary": "nova-compute", "status": "enabled"},
    {"id": None, "host": "cmp1", "binary": "nova-compute",
     "status": "enabled"},
    {"id": "id-cmp1", "host": "cmp1", "binary": "nova-compute",
     "status": ["enabled"]},
    "cmp1",
], ids=["no-id", "null-id", "odd-status", "not-a-record"])
def test_a_bad_record_costs_only_its_own_host(qconf, nova, audit, bad):
    """cmp1's record is broken: cmp1 gets a 'failed' event, and cmp2 of
    the same pass is still quarantined."""
    fake = nova([service("cmp2")])
    good = fake.filtered
    fake.listing = lambda query: (
        {"services": [bad]} if query.get("host") == ["cmp1"]
        else good(query))
    _only_cmp2_is_quarantined(qconf, fake, audit)


@pytest.mark.parametrize("body", [
    b"<html>502 Bad Gateway</html>", b"[1, 2]", b'{"services": 7}',
    b'{"services": [' * 5000,
], ids=["html", "a-list", "services-not-a-list", "deep"])
def test_garbage_from_nova_is_a_failure_of_that_host_only(
        qconf, nova, audit, body):
    fake = nova([service("cmp2")])
    good = fake.filtered
    fake.listing = lambda query: (body if query.get("host") == ["cmp1"]
                                  else good(query))
    _only_cmp2_is_quarantined(qconf, fake, audit)


def test_a_host_name_is_sent_as_one_query_value(qconf, nova, audit):
    """A service host with query syntax in it asks Nova about that host,
    not about another one."""
    fake = nova([service("cmp1"), service("a&host=cmp1")])
    q = Quarantine(qconf, fake.compute())
    q.scan()
    q.after_pass_now(untrusted("a&host=cmp1"))
    assert [sid for sid, _ in fake.puts] == ["id-a&host=cmp1"]
    assert fake.services[0]["status"] == "enabled"


def test_a_nova_that_never_answers_blocks_no_pass_and_no_stop(qconf,
                                                              audit):
    """Nova accepts the connection and says nothing: the passes and the
    revocations hand their verdicts over and return, a stop returns, and
    the worker's request ends with the session timeout as a 'failed'
    event (the trait removal and the pass never waited for it)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                held.append(listener.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v2.1"
    compute = ComputeAPI(ks_adapter.Adapter(
        ks_session.Session(timeout=0.5), endpoint_override=url))
    q = Quarantine(qconf, compute).start()
    done = threading.Event()

    def service_side() -> None:
        wrapped = q.wrap(lambda: type("R", (), {"hosts": untrusted("c1")}))
        for _ in range(2):
            wrapped()
            q.after_revocation("c1", "ev", True)
        done.set()

    try:
        threading.Thread(target=service_side, daemon=True).start()
        assert done.wait(20), "a pass or a revocation waited for Nova"
        assert q.join(60)
    finally:
        q.stop(timeout=10)
        listener.close()
        for sock in held:
            sock.close()
    assert not q._thread.is_alive()
    failed = [e for e in audit() if e.get("outcome") == "failed"]
    assert failed and all(e["host"] == "c1" for e in failed)


def test_a_service_id_is_one_path_segment(qconf, nova, audit):
    """An id with path characters (a Nova or proxy answering oddly) is
    sent as one quoted segment of /os-services/{id}: the PUT can address
    no other resource of the Nova API."""
    fake = nova([service("cmp1", "../servers/x?y=1#z")])
    seen: list[str] = []
    handler = fake.server.RequestHandlerClass
    original = handler.do_PUT

    def record(self) -> None:
        seen.append(self.path)
        original(self)

    handler.do_PUT = record
    q = Quarantine(qconf, fake.compute())
    q.scan()
    q.after_pass_now(untrusted("cmp1"))
    assert seen == ["/v2.1/os-services/..%2Fservers%2Fx%3Fy%3D1%23z"]
