"""Why an exchange failed, as a cause word: each cause comes from a real
loopback server that fails that way (tests/support/faults.py), and reaches
the client's observer, the hook the service's metrics hang on."""

from __future__ import annotations

import pickle

import pytest

from trustpool.attestation import AttestationError
from trustpool.conf import GROUP, make_client
from trustpool.exceptions import CAUSES

from tests.support import faults

#: fault mode -> the cause it must be counted under
EXPECTED = {
    "refused": "connection",
    "reset": "connection",
    "hang": "timeout",
    "http_500": "http_status",
    "http_404": "http_status",
    "redirect": "http_status",
    "html_200": "malformed",
    "truncated_json": "malformed",
    "spoofed_names": "malformed",
    "deep_json": "malformed",
    "tls_wrong_ca": "tls",
    "plain_http": "tls",
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_each_failure_has_its_cause(mode, conf, pki):
    server, options, started = faults.start(mode, pki)
    try:
        for name, value in options.items():
            conf.set_override(name, value, group=GROUP)
        seen: list[tuple[float, str | None]] = []
        client = make_client(conf, observer=lambda s, c: seen.append((s, c)))
        try:
            with pytest.raises(AttestationError) as caught:
                client.attest_uncached(faults.HOSTS)
        finally:
            client.close()
    finally:
        for one in started:
            one.stop()
    assert caught.value.cause == EXPECTED[mode], str(caught.value)
    assert len(seen) == 1
    seconds, cause = seen[0]
    assert cause == EXPECTED[mode]
    assert 0 <= seconds < 10


def test_a_good_exchange_is_observed_without_a_cause(conf, pki, oat_server):
    from tests.support.config import point_at

    point_at(conf, oat_server, pki["ca"].cert_path)
    oat_server.levels = {"n1": "trusted"}
    seen: list[tuple[float, str | None]] = []
    client = make_client(conf)
    client.observer = lambda s, c: seen.append((s, c))
    try:
        assert client.attest_uncached(["n1"])["n1"].level == "trusted"
        client.levels(["n1"])   # a cache miss: one more exchange
        client.levels(["n1"])   # a cache hit: none
    finally:
        client.close()
    assert [c for _, c in seen] == [None, None]


def test_a_raising_observer_changes_no_answer(conf, pki, oat_server):
    from tests.support.config import point_at

    point_at(conf, oat_server, pki["ca"].cert_path)
    oat_server.levels = {"n1": "trusted"}

    def broken(seconds, cause):
        raise RuntimeError("observer bug")

    client = make_client(conf, observer=broken)
    try:
        assert client.level("n1").level == "trusted"
    finally:
        client.close()


def test_the_cause_is_typed_and_survives_pickling():
    error = AttestationError("x", "tls")
    assert pickle.loads(pickle.dumps(error)).cause == "tls"
    assert AttestationError("x").cause == "other"
    assert AttestationError("x", "made-up").cause == "other"  # type: ignore
    assert CAUSES == ("timeout", "tls", "http_status", "malformed",
                      "connection", "other")
