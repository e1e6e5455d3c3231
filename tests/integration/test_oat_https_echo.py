"""A real HTTPS PollHosts server on 127.0.0.1 that echoes the auth blob
back inside its answer, where the client quotes the answer (a stranger's
host name, a host named twice, the server's time): no host is trusted,
and no part of the blob shows in a reason or a log line."""

from __future__ import annotations

import json
import logging

import pytest

from trustpool.attestation import TrustLevel
from trustpool.conf import make_client

from tests.support import leakcheck
from tests.support.config import point_at
from tests.support.oat_server import Response

SECRET = "echoed-blob-0123456789abcdef"
leakcheck.register(SECRET)


def _answer(*entries):
    return lambda request: Response(200, json.dumps(
        {"hosts": list(entries)}).encode())


@pytest.mark.parametrize(("responder", "max_age"), [
    (_answer({"host_name": "n1", "trust_lvl": "trusted"},
             {"host_name": "x" * 70 + SECRET, "trust_lvl": "trusted"}), 0),
    (_answer({"host_name": "n1", "trust_lvl": "trusted"},
             {"host_name": "n1", "trust_lvl": "x" * 70 + SECRET}), 0),
    (_answer({"host_name": "n1", "trust_lvl": "trusted",
              "vtime": "x" * 70 + SECRET}), 600),
], ids=["a-stranger", "a-host-twice", "the-server-time"])
def test_an_echoed_blob_shows_nowhere_and_trusts_nothing(
        conf, pki, oat_server, caplog, responder, max_age):
    caplog.set_level(logging.DEBUG)
    oat_server.responder = responder
    point_at(conf, oat_server, pki["ca"].cert_path,
             attestation_auth_blob=SECRET)
    conf.set_override("max_report_age", max_age, "trusted_computing")
    client = make_client(conf)
    try:
        assert client.trust_in_order(["n1", "n2"]) == [TrustLevel.UNKNOWN] * 2
        reports = client.levels_in_order(["n1", "n2"])
        assert {r.level for r in reports} == {TrustLevel.UNKNOWN}
        assert oat_server.requests[0].headers["x-auth-blob"] == SECRET
        shown = caplog.text + "".join(r.reason for r in reports)
        assert "***" in shown
        assert SECRET[:8] not in shown and SECRET[-8:] not in shown
    finally:
        client.close()
