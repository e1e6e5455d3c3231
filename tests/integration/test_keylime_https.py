"""The keylime backend against a loopback HTTPS verifier stand-in that
requires client certificates, as Keylime's verifier does."""

from __future__ import annotations

import json
import time

import pytest

from trustpool.attestation import AttestationClient, TrustLevel
from trustpool.attestation.backends.keylime import KeylimeBackend

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
    return AttestationClient.from_config(conf)


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
