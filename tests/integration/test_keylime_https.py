"""The keylime backend against a loopback HTTPS verifier stand-in that
requires client certificates, as Keylime's verifier does."""

from __future__ import annotations

import json
import threading
import time

import pytest

from trustpool.attestation import TrustLevel
from trustpool.attestation.backends.keylime import KeylimeBackend
from trustpool.conf import make_client

from tests.support import leakcheck
from tests.support.oat_server import OATServer, Response

leakcheck.register("c2VjcmV0LXYtaGFsZg==")  # an agent's V half

AGENTS = {
    "node-pass": {"operational_state": 3, "attestation_status": "PASS",
                  "v": "c2VjcmV0LXYtaGFsZg==",
                  "last_successful_attestation": int(time.time())},
    "node-fail": {"operational_state": 9, "attestation_status": "FAIL",
                  "v": "c2VjcmV0LXYtaGFsZg=="},
    "node-old": {"operational_state": 7, "v": "c2VjcmV0LXYtaGFsZg=="},
}


def verifier_responder(server):
    def respond(request):
        if request.path == "/version":
            return Response(200, json.dumps({"code": 200, "results": {
                "current_version": "2.3",
                "supported_versions": ["2.0", "2.1", "2.2", "2.3", "3.0"]}
            }).encode())
        if request.client_cert is None:  # 7.14: 403 without mTLS
            return Response(403, json.dumps({"errors": [{
                "status": "403", "title": "Forbidden",
                "detail": "Action list_agents requires admin "
                "authentication (mTLS certificate)"}]}).encode())
        if request.path == "/v2.3/agents/?bulk=True":
            return Response(200, json.dumps({"code": 200, "status":
                                             "Success", "results": AGENTS
                                             }).encode())
        return Response(500, b'{"code": 500}')
    return respond


@pytest.fixture
def verifier(pki):
    server = OATServer(pki["server"].cert, pki["server"].key,
                       client_ca=pki["ca"].cert_path,
                       client_cert_optional=True)
    server.responder = verifier_responder(server)
    server.start()
    yield server
    server.stop()


def kclient(conf, verifier, pki, **options):
    conf.set_override("backend", "keylime", "trusted_computing")
    conf.register_opts(KeylimeBackend.CONFIG_OPTS[0][1], group="keylime")
    values = {"verifier_host": "127.0.0.1", "verifier_port": verifier.port,
              "ca_file": str(pki["ca"].cert_path),
              "client_cert_file": str(pki["client"].cert),
              "client_key_file": str(pki["client"].key)}
    values.update(options)
    for key, value in values.items():
        conf.set_override(key, value, "keylime")
    return make_client(conf)


def test_mutual_tls_bulk_and_decisions(conf, verifier, pki):
    client = kclient(conf, verifier, pki)
    reports = client.levels(["node-pass", "node-fail", "node-old", "ghost"])
    assert {n: r.level.value for n, r in reports.items()} == {
        "node-pass": "trusted", "node-fail": "untrusted",
        "node-old": "untrusted", "ghost": "unknown"}
    paths = [r.path for r in verifier.requests]
    assert paths == ["/version", "/v2.3/agents/?bulk=True"]
    subject = dict(x[0] for x in verifier.requests[1].client_cert["subject"])
    assert subject["commonName"] == "nova-scheduler"


def test_without_client_certificate_the_verifier_refuses(conf, verifier,
                                                         pki):
    client = kclient(conf, verifier, pki, client_cert_file=None,
                     client_key_file=None)
    report = client.level("node-pass")
    assert report.level is TrustLevel.UNKNOWN
    assert "HTTP 403" in report.reason


def test_wrong_ca_fails_closed(conf, verifier, pki):
    client = kclient(conf, verifier, pki,
                     ca_file=str(pki["other_ca"].cert_path))
    report = client.level("node-pass")
    assert report.level is TrustLevel.UNKNOWN
    assert "TLS failure" in report.reason


def test_tls_server_name_for_certificates_without_an_ip(conf, pki):
    dns_only = pki["ca"].issue("keylime-verifier", ips=(),
                               dns=("verifier.keylime.test",))
    server = OATServer(dns_only.cert, dns_only.key,
                       client_ca=pki["ca"].cert_path,
                       client_cert_optional=True)
    server.responder = verifier_responder(server)
    server.start()
    try:
        refused = kclient(conf, server, pki)
        report = refused.level("node-pass")
        assert report.level is TrustLevel.UNKNOWN
        assert "TLS failure" in report.reason
        named = kclient(conf, server, pki,
                        tls_server_name="verifier.keylime.test")
        assert named.level("node-pass").level is TrustLevel.TRUSTED
        wrong = kclient(conf, server, pki,
                        tls_server_name="other.keylime.test")
        assert wrong.level("node-pass").level is TrustLevel.UNKNOWN
    finally:
        server.stop()


def old_verifier_responder(server, agents, delay=0.0):
    """A verifier before 5.8.2: ``?bulk=True`` is ignored and the answer is
    the id list, so every record takes a request of its own, each answered
    after ``delay`` seconds."""
    prefix = "/v2.3/agents/"

    def respond(request):
        if request.path == "/version":
            return Response(200, json.dumps({"code": 200, "results": {
                "supported_versions": ["2.3"]}}).encode())
        if request.path in (prefix, prefix + "?bulk=True"):
            return Response(200, json.dumps({"code": 200, "results": {
                "uuids": [sorted(agents)]}}).encode())
        if request.path.startswith(prefix):
            server.stopping.wait(delay)
            agent = request.path[len(prefix):]
            if agent not in agents:
                return Response(404, b'{"code": 404, "results": {}}')
            return Response(200, json.dumps({
                "code": 200, "results": agents[agent]}).encode())
        return Response(500, b'{"code": 500}')
    return respond


@pytest.fixture
def old_verifier(pki):
    server = OATServer(pki["server"].cert, pki["server"].key,
                       client_ca=pki["ca"].cert_path,
                       client_cert_optional=True)
    yield server
    server.stop()


def agent_requests(server):
    return [r for r in list(server.requests)
            if r.path.startswith("/v2.3/agents/a")]


def test_agent_by_agent_mode_answers(conf, old_verifier, pki):
    agents = {f"a{i}": AGENTS["node-pass"] for i in range(6)}
    agents["a5"] = AGENTS["node-fail"]
    old_verifier.responder = old_verifier_responder(old_verifier, agents,
                                                    delay=0.02)
    old_verifier.start()
    client = kclient(conf, old_verifier, pki, per_agent_concurrency=2)
    reports = client.levels([*agents, "a-ghost"])
    assert {n: r.level.value for n, r in reports.items()} == {
        **{f"a{i}": "trusted" for i in range(5)}, "a5": "untrusted",
        "a-ghost": "unknown"}
    assert len(agent_requests(old_verifier)) == 7


def keylime_threads():
    return [t for t in threading.enumerate()
            if t.name.startswith("trustpool-keylime")]


def test_agent_by_agent_mode_keeps_one_deadline_for_the_whole_call(
        conf, old_verifier, pki):
    # 40 agents, 2 at a time, 0.6 s each: 12 s unbounded; the budget is
    # 2 s, and requests start at 0, 0.6, 1.2 and 1.8 s, so the last ones
    # would run to 2.4 s if they had only their own timeouts
    agents = {f"a{i:02}": AGENTS["node-pass"] for i in range(40)}
    old_verifier.responder = old_verifier_responder(old_verifier, agents,
                                                    delay=0.6)
    old_verifier.start()
    conf.set_override("connect_timeout", 1.0, "trusted_computing")
    conf.set_override("read_timeout", 1.0, "trusted_computing")
    client = kclient(conf, old_verifier, pki, per_agent_concurrency=2,
                     api_version="2.3")
    assert client.backend.timeout == 2.0
    started = time.monotonic()
    reports = client.levels(list(agents))
    took = time.monotonic() - started
    assert 1.5 < took < 2.0 + 0.5
    assert {r.level for r in reports.values()} == {TrustLevel.UNKNOWN}
    reason = reports["a00"].reason
    assert "did not answer for" in reason
    assert "of 40 agents within 2s (connect_timeout + read_timeout)" in \
        reason
    # the requests in flight were cut at the deadline, not left to run to
    # their own timeouts
    ended = time.monotonic() + 0.25
    while keylime_threads() and time.monotonic() < ended:
        time.sleep(0.01)
    assert keylime_threads() == []
    # queued requests were dropped, not sent after the call gave up
    sent = len(agent_requests(old_verifier))
    assert sent <= 8
    time.sleep(0.7)
    assert len(agent_requests(old_verifier)) == sent


def test_an_agent_named_uuids_over_https_stays_bulk(conf, verifier, pki):
    agents = {"uuids": AGENTS["node-pass"], "node-fail": AGENTS["node-fail"]}

    def respond(request):
        if request.path == "/v2.3/agents/?bulk=True":
            return Response(200, json.dumps({"code": 200,
                                             "results": agents}).encode())
        return verifier_responder(verifier)(request)

    verifier.responder = respond
    client = kclient(conf, verifier, pki, api_version="2.3")
    for _ in range(2):
        levels = {n: r.level.value
                  for n, r in client.backend.attest(list(agents)).items()}
        assert levels == {"uuids": "trusted", "node-fail": "untrusted"}
    assert [r.path for r in verifier.requests] == [
        "/v2.3/agents/?bulk=True"] * 2


def test_a_handshake_refused_for_want_of_a_certificate_names_the_option(
        conf, pki):
    # as Keylime 6.6 does: no client certificate, no TLS session
    server = OATServer(pki["server"].cert, pki["server"].key,
                       client_ca=pki["ca"].cert_path)
    server.responder = verifier_responder(server)
    server.start()
    try:
        client = kclient(conf, server, pki, client_cert_file=None,
                         client_key_file=None, api_version="2.3")
        report = client.level("node-pass")
    finally:
        server.stop()
    assert report.level is TrustLevel.UNKNOWN
    assert "probably requires a client certificate" in report.reason
    assert "set [keylime] client_cert_file" in report.reason
