"""The keylime backend: decisions from records shaped like real 6.6 and
7.14 verifiers, host/agent mapping, API discovery, bulk and fallback."""

from __future__ import annotations

import logging
import re
import time

import pytest
import requests_mock

from trustpool.attestation import (
    AttestationClient,
    AttestationError,
    ConfigurationError,
    TrustLevel,
)
from trustpool.attestation.backends import load_backend
from trustpool.attestation.backends.keylime import KeylimeBackend, decide
from trustpool.cmd import checks

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN
BASE = "https://verifier.example:8881"
NOW = 1_800_000_000

# As a 6.6 verifier answers (cloud_verifier_common.process_get_status)
RECORD_66 = {
    "operational_state": 3, "v": "c2VjcmV0LWJvb3RzdHJhcC1oYWxm",
    "ip": "127.0.0.1", "port": 9002,
    "tpm_policy": '{"23": ["0x0000"], "mask": "0x800000"}',
    "meta_data": "{}", "has_mb_refstate": 0, "has_runtime_policy": 0,
    "accept_tpm_hash_algs": ["sha256"], "accept_tpm_encryption_algs": ["rsa"],
    "accept_tpm_signing_algs": ["rsassa"], "hash_alg": "sha256",
    "enc_alg": "rsa", "sign_alg": "rsassa", "verifier_id": "default",
    "verifier_ip": "127.0.0.1", "verifier_port": 8881,
    "severity_level": None, "last_event_id": None,
    "attestation_count": 12, "last_received_quote": NOW - 2,
}
# As a 7.14 verifier answers for a pull-mode agent
RECORD_714 = {**RECORD_66, "tpm_policy": {"23": ["0x0000"]},
              "attestation_status": "PASS",
              "last_successful_attestation": NOW - 5}
# ... and for a push-mode agent
RECORD_PUSH = {**RECORD_714, "operational_state": None}


@pytest.mark.parametrize(("state", "level", "name"), [
    (3, T, "GET_QUOTE"), (4, T, "GET_QUOTE_RETRY"), (5, T, "PROVIDE_V"),
    (6, T, "PROVIDE_V_RETRY"), (7, U, "FAILED"), (9, U, "INVALID_QUOTE"),
    (10, U, "TENANT_FAILED"), (0, K, "REGISTERED"), (1, K, "START"),
    (2, K, "SAVED"), (8, K, "TERMINATED"), (42, K, "not a known state"),
])
def test_operational_state_of_older_verifiers(state, level, name):
    got, reason, vtime = decide("a1", {**RECORD_66,
                                       "operational_state": state}, NOW)
    assert got is level
    assert f"operational_state {state} ({name})" in reason
    assert vtime is None  # 6.6 reports no last_successful_attestation


@pytest.mark.parametrize(("status", "level"), [
    ("PASS", T), ("FAIL", U), ("PENDING", K), ("TIMEOUT", K), ("pass", T),
    ("WEIRD", K),
])
def test_attestation_status_wins(status, level):
    # 7.14 with a contradicting operational_state: the status is newer
    record = {**RECORD_714, "attestation_status": status,
              "operational_state": 9 if level is T else 3}
    assert decide("a1", record, NOW)[0] is level


@pytest.mark.parametrize("status", ["PASS", "FAIL", "PENDING", "TIMEOUT"])
def test_push_mode_uses_attestation_status(status):
    level, reason, vtime = decide("a1", {**RECORD_PUSH,
                                         "attestation_status": status}, NOW)
    assert level is {"PASS": T, "FAIL": U}.get(status, K)
    assert vtime == "2027-01-15T07:59:55+00:00"  # NOW - 5, in UTC


def test_record_without_any_signal_is_unknown():
    record = {**RECORD_PUSH}
    del record["attestation_status"]
    level, reason, _ = decide("a1", record, NOW)
    assert level is K and "neither" in reason


def test_freshness():
    assert decide("a1", RECORD_714, NOW, max_age=60)[0] is T
    level, reason, _ = decide("a1", RECORD_714, NOW + 100, max_age=60)
    assert level is K and reason.startswith("stale:")
    level, reason, _ = decide("a1", RECORD_66, NOW, max_age=60)
    assert level is K and "no last_successful_attestation" in reason
    # a failing agent stays untrusted, stale or not
    failed = {**RECORD_714, "attestation_status": "FAIL"}
    assert decide("a1", failed, NOW + 1000, max_age=60)[0] is U


def test_record_must_be_an_object():
    with pytest.raises(AttestationError, match="not an object"):
        decide("a1", ["nope"], NOW)


@pytest.fixture
def kconf(conf):
    conf.register_opts(KeylimeBackend.CONFIG_OPTS[0][1], group="keylime")
    conf.set_override("verifier_host", "verifier.example", "keylime")
    conf.set_override("api_version", "2.1", "keylime")
    return conf


def envelope(results, code=200):
    return {"json": {"code": code, "status": "Success", "results": results},
            "status_code": code}


def test_bulk_one_request_and_mapping(kconf):
    kconf.set_override("agent_ids", {"node2": "d432fbb3-d2f1-4a97-9ef7"},
                       "keylime")
    backend = load_backend(kconf, "keylime")
    bulk = {"node1": RECORD_714, "d432fbb3-d2f1-4a97-9ef7": {
        **RECORD_714, "attestation_status": "FAIL"}, "other": RECORD_714}
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True", **envelope(bulk))
        reports = backend.attest(["node1", "node2", "node3", "bad name!"])
        assert m.call_count == 1
        assert "Authorization" not in m.request_history[0].headers
    assert reports["node1"].level is T
    assert reports["node2"].level is U
    assert "does not know agent node3" in reports["node3"].reason
    assert "no Keylime agent id" in reports["bad name!"].reason
    assert set(reports) == {"node1", "node2", "node3", "bad name!"}


def test_map_only_rule(kconf):
    kconf.set_override("agent_id_rule", "map-only", "keylime")
    kconf.set_override("agent_ids", {"node1": "agent-1"}, "keylime")
    backend = load_backend(kconf, "keylime")
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True",
              **envelope({"agent-1": RECORD_66, "node2": RECORD_66}))
        reports = backend.attest(["node1", "node2"])
    assert reports["node1"].level is T
    assert reports["node2"].level is K


def test_fallback_to_one_by_one_for_verifiers_without_bulk(kconf):
    backend = load_backend(kconf, "keylime")
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True",
              **envelope({"uuids": [["node1", "node2"]]}))
        m.get(f"{BASE}/v2.1/agents/node1", **envelope(RECORD_66))
        m.get(f"{BASE}/v2.1/agents/node2", status_code=404,
              json={"code": 404, "status": "agent id not found",
                    "results": {}})
        reports = backend.attest(["node1", "node2"])
        assert reports["node1"].level is T
        assert reports["node2"].level is K
        assert "does not know agent node2" in reports["node2"].reason
        first = m.call_count
        backend.attest(["node1"])  # remembered: no bulk attempt again
        assert [r.url for r in m.request_history[first:]] == [
            f"{BASE}/v2.1/agents/node1"]


@pytest.mark.parametrize(("versions", "chosen"), [
    (["1.0", "2.0", "2.1"], "2.1"),
    (["2.0", "2.1", "2.2", "2.3", "3.0"], "2.3"),   # 7.14: not 3.0
    (["2.10", "2.9"], "2.10"),
])
def test_api_version_discovery(kconf, versions, chosen):
    kconf.set_override("api_version", "auto", "keylime")
    backend = load_backend(kconf, "keylime")
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/version", **envelope(
            {"current_version": versions[-1],
             "supported_versions": versions}))
        m.get(f"{BASE}/v{chosen}/agents/?bulk=True",
              **envelope({"node1": RECORD_714}))
        assert backend.attest(["node1"])["node1"].level is T
        backend.attest(["node1"])
        assert sum(1 for r in m.request_history
                   if r.path == "/version") == 1


@pytest.mark.parametrize(("setup", "needle"), [
    ({"status_code": 410, "json": {}}, "push-mode verifier"),
    ({"json": {"code": 200, "results": {"supported_versions": ["3.0"]}}},
     "no 2.x API (3.0)"),
    ({"text": '{"code": 200, "results": {"supported_versions": ['
      + "[" * 900 + "]" * 900 + ', "9" ]}}'},
     "no 2.x API (a JSON list, 9)"),
    ({"json": {"nothing": 1}}, "without a 'results' object"),
])
def test_api_version_discovery_failures(kconf, setup, needle):
    kconf.set_override("api_version", "auto", "keylime")
    backend = load_backend(kconf, "keylime")
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/version", **setup)
        with pytest.raises(AttestationError, match=re.escape(needle)):
            backend.attest(["node1"])


@pytest.mark.parametrize(("setup", "needle"), [
    ({"status_code": 403, "json": {"errors": [{"status": "403"}]}},
     "HTTP 403"),
    ({"text": "{", "status_code": 200}, "not JSON"),
    ({"json": {"code": 200, "results": ["node1"]}}, "not an object"),
    ({"json": {"code": 200, "results": {"node1": "GET_QUOTE"}}},
     "not an object"),
    ({"status_code": 404, "json": {}}, "check [keylime] api_version"),
])
def test_bad_answers_fail_closed(kconf, setup, needle):
    backend = load_backend(kconf, "keylime")
    client = AttestationClient(backend, ttl=60)
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True", **setup)
        with pytest.raises(AttestationError) as err:
            backend.attest(["node1"])
        assert needle in str(err.value)
        assert client.level("node1").level is K
    assert "c2VjcmV0" not in str(err.value)  # the agent's V never leaks


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("verifier_host", None, "verifier_host"),
    ("api_version", "latest", "api_version"),
    ("agent_ids", {"node1": "bad id!"}, "agent_ids"),
    ("client_key_file", "/k.pem", "client_key_file"),
])
def test_configuration_errors_name_the_option(kconf, option, value, needle):
    kconf.set_override(option, value, "keylime")
    with pytest.raises(ConfigurationError) as err:
        load_backend(kconf, "keylime")
    assert f"[keylime] {needle}" in str(err.value)


def test_vtime_is_last_successful_attestation(kconf):
    backend = load_backend(kconf, "keylime")
    now = time.time()
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True", **envelope(
            {"node1": {**RECORD_714, "last_successful_attestation": now}}))
        report = backend.attest(["node1"])["node1"]
    assert abs(report.vtime.timestamp() - now) < 1


# -- times that cannot prove freshness ----------------------------------


@pytest.mark.parametrize("last", [
    1e300, 10**400, float("inf"), float("nan"), -5, True, "1800000000",
    [NOW], {"t": NOW}, 1e20,
], ids=["1e300", "10**400", "inf", "nan", "negative", "true", "string",
        "list", "object", "past-year-9999"])
def test_an_unreadable_last_successful_attestation_is_unknown(last):
    record = {**RECORD_714, "last_successful_attestation": last}
    level, reason, vtime = decide("a1", record, NOW, max_age=300)
    assert level is K
    assert "unreadable time in last_successful_attestation" in reason
    assert vtime is None
    # without an age limit the time is only data: no time, same decision
    assert decide("a1", record, NOW) == (
        T, "Keylime agent a1: attestation_status PASS", None)


@pytest.mark.parametrize("last", [None, 0])
def test_a_missing_last_successful_attestation_is_unknown(last):
    record = {**RECORD_714, "last_successful_attestation": last}
    level, reason, _ = decide("a1", record, NOW, max_age=300)
    assert level is K and "no last_successful_attestation" in reason


@pytest.mark.parametrize(("ahead", "max_age", "level"), [
    (365 * 86400, 300, K),  # a year ahead: not fresh, unknown
    (61, 300, K),           # over the fixed 60 s of skew
    (59, 300, T),
    (11, 10, K),            # a small age limit allows less skew
    (9, 10, T),
    (0, 10, T),
])
def test_a_time_in_the_future_beyond_the_allowed_skew_is_unknown(
        ahead, max_age, level):
    record = {**RECORD_714, "last_successful_attestation": NOW + ahead}
    got, reason, vtime = decide("a1", record, NOW, max_age=max_age)
    assert got is level
    assert vtime is not None
    if level is K:
        assert f"{ahead}s in the future" in reason


def test_a_future_time_does_not_make_a_failed_agent_anything_else():
    record = {**RECORD_714, "attestation_status": "FAIL",
              "last_successful_attestation": NOW + 86400}
    assert decide("a1", record, NOW, max_age=60)[0] is U


ODD_VALUES = [None, True, 0, -1, 10**4000, 1e300, float("inf"),
              float("nan"), "", "PASS\n\x1b[31m" * 50, "x" * 10_000, [],
              [3], {}, {"PASS": 1}]


@pytest.mark.parametrize("field", ["attestation_status",
                                   "operational_state",
                                   "last_successful_attestation"])
@pytest.mark.parametrize("max_age", [0, 300])
def test_decide_is_total_over_odd_values(field, max_age):
    # a record is data from the network: any value of any field gives a
    # level and a short one-line reason, never an exception
    for value in ODD_VALUES:
        for base in (RECORD_66, RECORD_714, RECORD_PUSH):
            level, reason, vtime = decide("a1", {**base, field: value},
                                          NOW, max_age=max_age)
            assert level in (T, U, K)
            assert len(reason) < 250 and reason.isprintable()
            assert "c2VjcmV0" not in reason  # the record's V never shows
    record = {**RECORD_66, "operational_state": 10**4000}
    assert "a huge number" in decide("a1", record, NOW)[1]


# -- the list answer is told by its shape -------------------------------


def test_an_agent_named_uuids_in_a_bulk_answer_stays_bulk(kconf):
    backend = load_backend(kconf, "keylime")
    bulk = {"uuids": RECORD_714,
            "node1": {**RECORD_714, "attestation_status": "FAIL"}}
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True", **envelope(bulk))
        for _ in range(2):
            reports = backend.attest(["uuids", "node1"])
            assert reports["uuids"].level is T
            assert reports["node1"].level is U
        # one bulk request per call, never agent by agent
        assert [r.url for r in m.request_history] == [
            f"{BASE}/v2.1/agents/?bulk=True"] * 2


@pytest.mark.parametrize("listing", [
    {"uuids": [["node1", "node2"]]},
    {"uuids": ["node1", "node2"]},
    {"uuids": []},
])
def test_the_id_list_form_is_recognised_by_shape(kconf, listing):
    backend = load_backend(kconf, "keylime")
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True", **envelope(listing))
        m.get(f"{BASE}/v2.1/agents/node1", **envelope(RECORD_66))
        assert backend.attest(["node1"])["node1"].level is T
        assert m.request_history[-1].url == f"{BASE}/v2.1/agents/node1"


@pytest.mark.parametrize("results", [
    {"uuids": "node1"},
    {"uuids": [["node1", 7]]},
    {"node1": RECORD_714, "node2": [["x"]]},
    {"uuids": [["node1"]], "node2": RECORD_714},
    {"node1": [["node1"]]},
])
def test_neither_form_is_refused_whole(kconf, results):
    backend = load_backend(kconf, "keylime")
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True", **envelope(results))
        with pytest.raises(AttestationError,
                           match="not an object of agent records"):
            backend.attest(["node1"])
        # and the backend still asks in bulk: nothing odd switches it to
        # one request per agent
        with pytest.raises(AttestationError):
            backend.attest(["node1"])
        assert [r.url for r in m.request_history] == [
            f"{BASE}/v2.1/agents/?bulk=True"] * 2


@pytest.mark.parametrize(("results", "hosts"), [
    ({"uuids": [["node1", "uuids"]]}, ["node1", "uuids"]),
    ({"uuids": RECORD_714, "node1": RECORD_66}, ["node1", "uuids"]),
])
def test_list_hosts_reads_either_form(kconf, results, hosts):
    backend = load_backend(kconf, "keylime")
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/", **envelope(results))
        assert backend.list_hosts() == hosts


def test_duplicate_keys_in_an_answer_are_refused(kconf):
    backend = load_backend(kconf, "keylime")
    body = ('{"code": 200, "results": {"node1": {"attestation_status": '
            '"FAIL", "attestation_status": "PASS"}}}')
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v2.1/agents/?bulk=True", text=body)
        with pytest.raises(AttestationError, match="appears twice"):
            backend.attest(["node1"])


# -- plain http is said out loud ----------------------------------------


def transport_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "forge" in r.getMessage()]


@pytest.mark.parametrize(("scheme", "insecure", "needle"), [
    ("http", False, "travel in plain text (attestation_scheme = http)"),
    ("https", True, "TLS verification of the Keylime verifier"),
    ("https", False, None),
])
def test_start_up_warns_about_unprotected_transport(kconf, caplog, scheme,
                                                     insecure, needle):
    caplog.set_level(logging.WARNING, "trustpool")
    kconf.set_override("attestation_scheme", scheme, "trusted_computing")
    kconf.set_override("attestation_insecure_ssl", insecure,
                       "trusted_computing")
    backend = load_backend(kconf, "keylime")
    warnings = transport_warnings(caplog)
    if needle is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and needle in warnings[0]
        assert backend.base.split(":")[0] in warnings[0]


@pytest.mark.parametrize(("backend", "scheme", "warned"), [
    ("keylime", "http", True), ("oat", "http", True),
    ("keylime", "https", False), ("file", "http", False),
])
def test_check_config_warns_about_plain_http(kconf, backend, scheme,
                                             warned):
    kconf.set_override("backend", backend, "trusted_computing")
    kconf.set_override("attestation_server", "oat.example",
                       "trusted_computing")
    kconf.set_override("attestation_scheme", scheme, "trusted_computing")
    findings = checks.check(kconf)
    plain = [f for f in findings
             if f[1] == "[trusted_computing] attestation_scheme"]
    if warned:
        assert plain == [("warning", "[trusted_computing] attestation_scheme",
                          f"http with the '{backend}' backend: trust answers"
                          " travel in plain text and can be forged by anyone"
                          " on the network path")]
    else:
        assert plain == []


@pytest.mark.parametrize("status", [1, True, ["PASS"], {"PASS": 1},
                                    " PASS", "PASS\t", "\uff30ASS", "PAS"])
def test_a_garbled_verdict_is_not_outvoted_by_the_state(status):
    """Found by the fuzz tier: a non-string attestation_status fell back to
    operational_state, and a padded 'PASS' was read as PASS."""
    level, _, _ = decide("a1", {"attestation_status": status,
                                "operational_state": 3}, time.time())
    assert level is TrustLevel.UNKNOWN
