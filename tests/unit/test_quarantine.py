"""Quarantine with dampening: the rule as pure logic, and the worker's
dealings with a Nova double (the real Nova API is in
tests/nova/test_quarantine.py): only services trustpool disabled are
re-enabled, an operator's are never touched, every action and every
action not done is an audit event, a metric and a log line."""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest
from oslo_config import cfg

from trustpool import events
from trustpool.attestation import HostReport, TrustLevel
from trustpool.attestation.identity import ComputeNode
from trustpool.exceptions import ConfigurationError
from trustpool.metrics import service as metrics_service
from trustpool.openstack.compute import NovaAPIError
from trustpool.quarantine import REASON_PREFIX, Quarantine, is_ours, options
from trustpool.quarantine import observer as obs
from trustpool.quarantine import start as start_quarantine
from trustpool.quarantine.dampening import (
    REVOCATION,
    TRUSTED_RUN,
    UNTRUSTED_RUN,
    Dampener,
    Kind,
    worst,
)

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN


# -- the rule ----------------------------------------------------------------

def run(d: Dampener, host: str, levels):
    return [d.observe(host, level) for level in levels]


def test_quarantine_after_n_untrusted_in_a_row():
    d = Dampener(3, 2)
    first, second, third = run(d, "h", [U, U, U])
    assert first is second is None
    assert (third.kind, third.trigger, third.passes) == (
        Kind.QUARANTINE, UNTRUSTED_RUN, 3)


def test_a_trusted_pass_breaks_the_untrusted_run():
    d = Dampener(3, 2)
    assert run(d, "h", [U, U, T, U, U]) == [None] * 5
    assert d.observe("h", U).kind is Kind.QUARANTINE


def test_unknown_never_quarantines_and_neither_counts_nor_breaks():
    d = Dampener(2, 2)
    assert run(d, "h", [K] * 50) == [None] * 50
    # an outage between two untrusted answers: still two in a row
    assert run(d, "h", [U, K, K]) == [None] * 3
    assert d.observe("h", U).passes == 2
    # anything that is not a TrustLevel is unknown
    d2 = Dampener(1, 1)
    assert d2.observe("x", "untrusted") is None  # type: ignore[arg-type]


def test_due_again_until_nova_confirms():
    """A failed disable is simply due at the next untrusted pass."""
    d = Dampener(2, 2)
    run(d, "h", [U, U])
    assert d.observe("h", U).kind is Kind.QUARANTINE
    d.quarantined("h")
    assert d.observe("h", U) is None


def test_release_only_of_a_quarantined_host_after_m_trusted():
    d = Dampener(1, 3)
    assert run(d, "free", [T] * 10) == [None] * 10  # never quarantined
    d.quarantined("h")
    assert run(d, "h", [T, T]) == [None, None]
    due = d.observe("h", T)
    assert (due.kind, due.trigger, due.passes) == (Kind.RELEASE,
                                                   TRUSTED_RUN, 3)


def test_unknown_untrusted_and_revocation_break_the_trusted_run():
    d = Dampener(5, 3)
    d.quarantined("h")
    for breaker in (K, U):
        assert run(d, "h", [T, T, breaker, T, T]) == [None] * 5
        assert d.observe("h", T).kind is Kind.RELEASE
        d.quarantined("h")  # the release failed: still held
        run(d, "h", [breaker])
    run(d, "h", [T, T])
    assert d.revoked("h") is None  # held already: nothing more to do
    assert run(d, "h", [T, T]) == [None, None]
    assert d.observe("h", T).kind is Kind.RELEASE


def test_quarantined_starts_the_trusted_run_from_nothing():
    d = Dampener(1, 2)
    run(d, "h", [T, T, T])
    d.quarantined("h")  # found in Nova at start-up
    assert d.observe("h", T) is None
    assert d.observe("h", T).kind is Kind.RELEASE


def test_revocation_quarantines_at_once_when_configured():
    d = Dampener(3, 2, on_revocation=True)
    due = d.revoked("h")
    assert (due.kind, due.trigger, due.passes) == (Kind.QUARANTINE,
                                                   REVOCATION, 0)
    off = Dampener(3, 2, on_revocation=False)
    assert off.revoked("h") is None


def test_released_starts_everything_again():
    d = Dampener(2, 1)
    run(d, "h", [U])
    d.quarantined("h")
    d.released("h")
    assert d.observe("h", U) is None  # one untrusted is not two
    assert d.held() == []


def test_worst_level_of_a_service_host():
    assert worst([T, U, K]) is U
    assert worst([T, T]) is T
    assert worst([T, K]) is K
    assert worst([]) is K


def test_bad_runs_are_refused():
    with pytest.raises(ValueError):
        Dampener(0, 1)


# -- the worker against a Nova double ---------------------------------------

class Nova:
    """os-services and os-hypervisors as the compute API gives them."""

    def __init__(self, hosts, nodes=None):
        self.services = {h: {"id": str(uuidlib.uuid4()), "host": h,
                             "binary": "nova-compute", "status": "enabled",
                             "disabled_reason": None} for h in hosts}
        self.nodes = nodes or []
        self.down = False
        self.calls = []

    def _check(self):
        if self.down:
            raise NovaAPIError("Nova API GET /os-services: Unable to "
                               "establish connection")

    def compute_services(self):
        self._check()
        return [dict(s) for s in self.services.values()]

    def compute_service(self, host):
        self._check()
        s = self.services.get(host)
        return dict(s) if s else None

    def compute_nodes(self):
        self._check()
        return list(self.nodes)

    def _by_id(self, service_id):
        return next(s for s in self.services.values()
                    if s["id"] == service_id)

    def disable_service(self, service_id, reason):
        self._check()
        self.calls.append(("disable", service_id))
        self._by_id(service_id).update(status="disabled",
                                       disabled_reason=reason)

    def enable_service(self, service_id):
        self._check()
        self.calls.append(("enable", service_id))
        self._by_id(service_id).update(status="enabled",
                                       disabled_reason=None)


class Counted:
    def __init__(self):
        self.actions = []

    def quarantine_action(self, action):
        self.actions.append(action)


@pytest.fixture
def qconf(conf):
    options.register_opts(conf)
    conf.set_override("enabled", True, options.GROUP)
    conf.set_override("untrusted_passes", 2, options.GROUP)
    conf.set_override("trusted_passes", 2, options.GROUP)
    conf.set_override("host_attribute", "host", "trusted_computing")
    return conf


def verdicts(**levels):
    return {h: HostReport(h, TrustLevel(level), "oat", "r")
            for h, level in levels.items()}


def make(qconf, nova):
    q = Quarantine(qconf, nova, observer=Counted(), clock=lambda: 1.8e9)
    q.scan()
    return q


def test_quarantine_and_release_with_our_reason(qconf, audit, caplog):
    nova = Nova(["cmp1", "cmp2"])
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="untrusted", cmp2="trusted"))
    svc = nova.services["cmp1"]
    assert svc["status"] == "disabled"
    assert svc["disabled_reason"] == (
        "trustpool: quarantined: 2 untrusted attestations in a row (cmp1) "
        "at 2027-01-15T08:00:00+00:00")
    assert is_ours(svc)
    reason = svc["disabled_reason"]
    assert nova.services["cmp2"]["status"] == "enabled"
    # held: more untrusted passes change nothing
    q.after_pass_now(verdicts(cmp1="untrusted", cmp2="trusted"))
    assert nova.calls == [("disable", svc["id"])]
    q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted"))
    assert nova.services["cmp1"]["status"] == "disabled"
    q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted"))
    assert nova.services["cmp1"]["status"] == "enabled"
    assert nova.services["cmp1"]["disabled_reason"] is None
    assert q.observer.actions == ["quarantine", "release"]
    written = audit()
    assert [(e["event"], e["host"], e["action"], e["trigger"])
            for e in written] == [
        (events.QUARANTINE, "cmp1", "disable", UNTRUSTED_RUN),
        (events.QUARANTINE, "cmp1", "enable", TRUSTED_RUN)]
    assert written[0]["reason"] == reason
    assert (written[0]["service_id"], written[0]["nodes"],
            written[0]["passes"]) == (svc["id"], ["cmp1"], 2)
    parsed = events.parse(written[0])
    assert isinstance(parsed, events.Quarantine)
    assert "disabled nova-compute on cmp1" in caplog.text
    assert "re-enabled nova-compute on cmp1 after 2 trusted" in caplog.text


def test_an_operator_disabled_service_is_never_touched(qconf, audit):
    nova = Nova(["cmp1", "cmp2"])
    nova.services["cmp1"].update(status="disabled",
                                 disabled_reason="maintenance")
    nova.services["cmp2"].update(status="disabled", disabled_reason=None)
    q = make(qconf, nova)
    for _ in range(5):
        q.after_pass_now(verdicts(cmp1="untrusted", cmp2="untrusted"))
    for _ in range(5):
        q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted"))
    assert nova.calls == []
    assert nova.services["cmp1"]["disabled_reason"] == "maintenance"
    assert nova.services["cmp2"]["status"] == "disabled"
    # told once per host, not at every pass
    written = audit()
    assert [(e["event"], e["host"], e["outcome"]) for e in written] == [
        (events.QUARANTINE_SKIPPED, "cmp1", "skipped"),
        (events.QUARANTINE_SKIPPED, "cmp2", "skipped")]
    assert "'maintenance'" in written[0]["why"]
    assert "no reason" in written[1]["why"]
    assert q.observer.actions == ["skipped", "skipped"]


def test_trustpool_audit_s_own_disable_is_not_quarantine_s(qconf):
    """``trustpool audit --disable-untrusted-hosts`` is an operator's
    command: its reason is not quarantine's, so never re-enabled."""
    assert not is_ours({"status": "disabled",
                        "disabled_reason": "trustpool: host not trusted"})
    assert not is_ours({"status": "enabled",
                        "disabled_reason": f"{REASON_PREFIX}: x"})
    assert is_ours({"status": "disabled", "disabled_reason": (
        f"{REASON_PREFIX}: 2 untrusted attestations in a row (n1) at "
        "2026-11-30T10:00:00+00:00")})


def test_state_lives_in_nova(qconf, audit):
    """A service disabled with trustpool's reason before this process
    started is released after M trusted passes; operator's are not."""
    nova = Nova(["cmp1", "cmp2"])
    nova.services["cmp1"].update(status="disabled", disabled_reason=(
        f"{REASON_PREFIX}: 3 untrusted attestations in a row (cmp1) at "
        "2026-11-30T10:00:00+00:00"))
    nova.services["cmp2"].update(status="disabled",
                                 disabled_reason="trustpool: host not "
                                 "trusted")
    q = make(qconf, nova)
    assert q.dampener.held() == ["cmp1"]
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted"))
    assert nova.services["cmp1"]["status"] == "enabled"
    assert nova.services["cmp2"]["status"] == "disabled"


def test_someone_else_re_enables_or_relabels_while_held(qconf, audit):
    nova = Nova(["cmp1", "cmp2"])
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="untrusted", cmp2="untrusted"))
    assert q.dampener.held() == ["cmp1", "cmp2"]
    nova.services["cmp1"].update(status="enabled", disabled_reason=None)
    nova.services["cmp2"]["disabled_reason"] = "RMA ticket 42"
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted"))
    assert nova.services["cmp2"] == {**nova.services["cmp2"],
                                     "status": "disabled",
                                     "disabled_reason": "RMA ticket 42"}
    assert q.dampener.held() == []
    skipped = [e for e in audit() if e["event"] == events.QUARANTINE_SKIPPED]
    assert [(e["host"], e["action"]) for e in skipped] == [
        ("cmp1", "enable"), ("cmp2", "enable")]
    assert "re-enabled by someone else" in skipped[0]["why"]
    assert "RMA ticket 42" in skipped[1]["why"]


def test_nova_failure_is_an_event_and_tried_again(qconf, audit, caplog):
    nova = Nova(["cmp1"])
    q = make(qconf, nova)
    q.after_pass_now(verdicts(cmp1="untrusted"))
    nova.down = True
    q.after_pass_now(verdicts(cmp1="untrusted"))  # due: fails
    assert nova.services["cmp1"]["status"] == "enabled"
    nova.down = False
    q.after_pass_now(verdicts(cmp1="untrusted"))  # due again: done
    assert nova.services["cmp1"]["status"] == "disabled"
    kinds = [(e["event"], e.get("outcome")) for e in audit()]
    assert kinds == [(events.QUARANTINE_SKIPPED, "failed"),
                     (events.QUARANTINE, None)]
    assert "Unable to establish connection" in audit()[0]["why"]
    assert q.observer.actions == ["failed", "quarantine"]
    assert "did not disable nova-compute on cmp1" in caplog.text


def test_a_host_without_a_service_is_a_failure(qconf, audit):
    q = make(qconf, Nova([]))
    for _ in range(2):
        q.after_pass_now(verdicts(ghost="untrusted"))
    [event] = audit()
    assert (event["host"], event["outcome"]) == ("ghost", "failed")
    assert "lists no nova-compute service" in event["why"]


def test_unknown_and_failed_passes_never_act(qconf, audit):
    nova = Nova(["cmp1"])
    q = make(qconf, nova)
    for _ in range(10):
        q.after_pass_now(verdicts(cmp1="unknown"))
        q.after_pass_now(None)  # the pass could not list compute nodes
    assert nova.calls == [] and audit() == []
    # held, then unknown between trusted passes: never released
    nova.services["cmp1"].update(status="disabled",
                                 disabled_reason=f"{REASON_PREFIX}: x")
    q.scan()
    for _ in range(5):
        q.after_pass_now(verdicts(cmp1="trusted"))
        q.after_pass_now(verdicts(cmp1="unknown"))
    assert nova.services["cmp1"]["status"] == "disabled"
    q.after_pass_now(verdicts(cmp1="trusted"))
    q.after_pass_now(None)
    q.after_pass_now(verdicts(cmp1="trusted"))
    assert nova.services["cmp1"]["status"] == "disabled"


def test_nodename_mode_maps_nodes_to_their_service_host(qconf):
    """With host_attribute = nodename the verdicts name hypervisors; the
    service host comes from Nova's hypervisors list, and one untrusted
    node of a service host is enough."""
    qconf.set_override("host_attribute", "nodename", "trusted_computing")
    nova = Nova(["ironic1"], nodes=[
        ComputeNode("u1", "bm1.example", "ironic1"),
        ComputeNode("u2", "bm2.example", "ironic1")])
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(**{"bm1.example": "trusted",
                                     "bm2.example": "untrusted"}))
    assert nova.services["ironic1"]["status"] == "disabled"
    # the reason names the node that caused it
    assert "in a row (bm2.example) at" in \
        nova.services["ironic1"]["disabled_reason"]
    # released only when every node is trusted
    for _ in range(3):
        q.after_pass_now(verdicts(**{"bm1.example": "trusted",
                                     "bm2.example": "unknown"}))
    assert nova.services["ironic1"]["status"] == "disabled"
    for _ in range(2):
        q.after_pass_now(verdicts(**{"bm1.example": "trusted",
                                     "bm2.example": "trusted"}))
    assert nova.services["ironic1"]["status"] == "enabled"


def test_nodename_mode_nova_down_means_no_verdict(qconf, caplog):
    qconf.set_override("host_attribute", "nodename", "trusted_computing")
    nova = Nova(["cmp1"], nodes=[ComputeNode("u1", "cmp1.hv", "cmp1")])
    q = make(qconf, nova)
    nova.down = True
    for _ in range(3):
        q.after_pass_now(verdicts(**{"cmp1.hv": "untrusted"}))
    nova.down = False
    assert nova.calls == []
    assert "every host counts as unknown" in caplog.text


def test_signed_revocation_quarantines_unsigned_does_not(qconf, audit):
    nova = Nova(["cmp1", "cmp2"])
    q = make(qconf, nova)
    q.after_revocation_now("cmp1", "pcr_validation.invalid_pcr_15", True)
    q.after_revocation_now("cmp2", "ev-2", False)
    assert nova.services["cmp1"]["status"] == "disabled"
    assert nova.services["cmp1"]["disabled_reason"].startswith(
        "trustpool: quarantined: signed Keylime revocation "
        "pcr_validation.invalid_pcr_15 (cmp1) at ")
    assert nova.services["cmp2"]["status"] == "enabled"
    [event] = audit()
    assert (event["trigger"], event["event_id"]) == (
        REVOCATION, "pcr_validation.invalid_pcr_15")
    assert "passes" not in event
    # an agent that stopped answering is an outage, not a verdict
    q.after_revocation_now("cmp2", "ev-4", True, "comm_error")
    assert nova.services["cmp2"]["status"] == "enabled"
    off = make(qconf, nova)
    off.dampener.on_revocation = False
    off.after_revocation_now("cmp2", "ev-3", True)
    assert nova.services["cmp2"]["status"] == "enabled"


def test_the_worker_keeps_order_and_never_raises_into_a_pass(qconf):
    nova = Nova(["cmp1"])
    q = Quarantine(qconf, nova).start()
    try:
        passes = []

        def one_pass(*args):
            passes.append(args)
            return type("R", (), {"hosts": verdicts(cmp1="untrusted")})()

        wrapped = q.wrap(one_pass)
        nova.down = True  # the scan fails first; the passes still run
        wrapped("a")
        nova.down = False
        wrapped("b")
        q.after_pass(object())  # no hosts attribute: unknown
        assert q.join(10)
        assert passes == [("a",), ("b",)]
        assert nova.services["cmp1"]["status"] == "disabled"
    finally:
        q.stop()


def test_a_long_reason_is_cut_to_nova_s_column():
    conf = cfg.ConfigOpts()
    from trustpool import conf as tp_conf
    tp_conf.register_opts(conf)
    conf([], project="trustpool", default_config_files=[])
    options.register_opts(conf)
    conf.set_override("untrusted_passes", 1, options.GROUP)
    conf.set_override("host_attribute", "nodename", "trusted_computing")
    names = [f"bm{i:03d}.rack.example.org" for i in range(40)]
    nova = Nova(["ironic"], nodes=[ComputeNode(str(i), n, "ironic")
                                   for i, n in enumerate(names)])
    q = Quarantine(conf, nova, clock=lambda: 1.8e9)
    q.after_pass_now(verdicts(**dict.fromkeys(names, "untrusted")))
    reason = nova.services["ironic"]["disabled_reason"]
    assert len(reason) <= 255 and reason.startswith(REASON_PREFIX)
    assert reason.endswith("...) at 2027-01-15T08:00:00+00:00"), reason


# -- options, start-up, metrics ----------------------------------------------

def test_off_by_default_and_refused_without_nova_credentials(conf):
    options.register_opts(conf)
    assert start_quarantine(conf) is None
    conf.set_override("enabled", True, options.GROUP)
    with pytest.raises(ConfigurationError) as err:
        start_quarantine(conf)
    assert str(err.value).startswith(
        "[trustpool_nova] auth_type: not set, but [trustpool_quarantine] "
        "enabled = True")


def test_check_config_reports_quarantine(conf):
    from trustpool.cmd import checks

    conf.set_override("backend", "file", "trusted_computing")
    options.register_opts(conf)
    assert not [f for f in checks.check(conf) if "quarantine" in f[1]]
    conf.set_override("enabled", True, options.GROUP)
    found = {(sev, opt): msg for sev, opt, msg in checks.check(conf)
             if "trustpool_" in opt and "traits" not in opt}
    assert found[("error", "[trustpool_nova] auth_type")].startswith(
        "not set, but [trustpool_quarantine] enabled = True")
    assert found[("info", "[trustpool_quarantine] enabled")] == (
        "on: quarantine after 3 untrusted attestation(s) in a row or one "
        "signed revocation event; release after 5 trusted in a row (acts "
        "in 'trustpool sync-traits --interval' only)")


def test_metrics_words_and_counter():
    from prometheus_client import generate_latest

    assert metrics_service.QUARANTINE_ACTIONS == obs.ACTIONS
    m = metrics_service.ServiceMetrics()
    counted = m.quarantine()
    for action in ("quarantine", "skipped", "skipped", "bogus"):
        counted.quarantine_action(action)
    text = generate_latest(m.registry).decode()
    for action, value in (("quarantine", 1), ("release", 0),
                          ("skipped", 2), ("failed", 1)):
        assert (f'trustpool_quarantine_actions_total{{action="{action}"}} '
                f"{value:.1f}") in text


def test_skipped_event_round_trip_and_report_counts():
    from trustpool.report.aggregate import Aggregator

    line = json.dumps(events.quarantine_skipped_event(
        host="cmp1", action="disable", trigger=REVOCATION,
        outcome="skipped", why="disabled by someone else", when=1.8e9))
    parsed = events.parse_line(line)
    assert isinstance(parsed, events.QuarantineSkipped)
    assert (parsed.host, parsed.outcome) == ("cmp1", "skipped")
    with pytest.raises(ValueError):
        events.quarantine_skipped_event(host="h", action="disable",
                                        trigger=None, outcome="maybe",
                                        why="")
    with pytest.raises(events.MalformedEvent):
        events.parse({**json.loads(line), "outcome": "done"})
    agg = Aggregator()
    agg.add(parsed)
    agg.add(events.parse(events.quarantine_event(
        host="cmp1", action="disable", trigger=REVOCATION, reason="r",
        when=1.8e9)))
    assert agg.quarantine_count == {"skipped": 1, "disable": 1}
    assert [r["outcome"] for r in agg.quarantine.rows] == ["skipped",
                                                          "done"]


# -- the service: start-up refusal and the wiring ----------------------------

def service_conf(tmp_path, extra=""):
    trust = tmp_path / "trust.json"
    trust.write_text('{"hosts": {}}')
    path = tmp_path / "nova.conf"
    path.write_text("[trusted_computing]\nbackend = file\nhost_attribute = "
                    f"host\n[trust_file]\npath = {trust}\n"
                    "[trustpool_quarantine]\nenabled = True\n"
                    "untrusted_passes = 2\n" + extra)
    return path


def test_the_service_refuses_to_start_without_nova_credentials(
        tmp_path, capsys, monkeypatch):
    from trustpool import trait_sync
    from trustpool.cmd import main as cli

    ran = []
    monkeypatch.setattr(trait_sync, "run_forever",
                        lambda *a, **k: ran.append(a))
    code = cli.main(["--config-file", str(service_conf(tmp_path)),
                     "sync-traits", "--interval", "5"],
                    placement_api=object())
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "trustpool: [trustpool_nova] auth_type: not set, but "
        "[trustpool_quarantine] enabled = True: quarantine disables and "
        "re-enables nova-compute services through the Nova API, which "
        "needs credentials in [trustpool_nova] (auth_type, auth_url, "
        "username, password, project_name, user_domain_name, "
        "project_domain_name)")
    assert ran == []
    check = cli.main(["--config-file", str(service_conf(tmp_path)),
                      "check-config"])
    out = capsys.readouterr().out
    assert check == 1
    assert "ERROR: [trustpool_nova] auth_type: not set, but " in out
    assert "INFO: [trustpool_quarantine] enabled: on: quarantine after 2 " \
        "untrusted" in out


def test_the_service_hands_every_pass_to_quarantine(tmp_path, monkeypatch):
    """sync-traits --interval: each pass's verdicts reach quarantine (in
    its thread), and the pass's result is untouched."""
    import time

    from trustpool import trait_sync
    from trustpool.cmd import main as cli

    nova = Nova(["cmp1"])
    results = []

    def fake_sync(*args, **kwargs):
        return trait_sync.SyncResult(hosts=verdicts(cmp1="untrusted"))

    def two_passes(conf, placement, client, interval, compute=None,
                   pass_=None):
        for _ in range(2):
            results.append(pass_(conf, placement, client))
        # the service runs on while the worker acts (a stop drops what
        # is still queued)
        deadline = time.monotonic() + 10
        while nova.services["cmp1"]["status"] != "disabled" and \
                time.monotonic() < deadline:
            time.sleep(0.02)

    monkeypatch.setattr(trait_sync, "sync", fake_sync)
    monkeypatch.setattr(trait_sync, "run_forever", two_passes)
    code = cli.main(["--config-file", str(service_conf(tmp_path)),
                     "sync-traits", "--interval", "5"],
                    placement_api=object(), compute_api=nova)
    assert code == 0
    assert [r.hosts["cmp1"].level for r in results] == [U, U]
    assert nova.services["cmp1"]["disabled_reason"].startswith(
        "trustpool: quarantined: 2 untrusted attestations in a row (cmp1)")


def test_a_service_re_enabled_by_someone_else_is_quarantined_again(
        qconf, audit):
    """An operator re-enables a service trustpool quarantined while the
    host is still untrusted: trustpool lets go of it, and a full new run
    of untrusted attestations quarantines it again (it must not go on
    believing it holds a service that takes new instances)."""
    nova = Nova(["cmp1"])
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="untrusted"))
    assert nova.services["cmp1"]["status"] == "disabled"
    nova.services["cmp1"].update(status="enabled", disabled_reason=None)
    q.after_pass_now(verdicts(cmp1="untrusted"))
    assert q.dampener.held() == []
    assert nova.services["cmp1"]["status"] == "enabled"  # one is not two
    q.after_pass_now(verdicts(cmp1="untrusted"))
    assert nova.services["cmp1"]["status"] == "disabled"
    assert is_ours(nova.services["cmp1"])
    trail = [(e["event"], e["action"], e.get("outcome")) for e in audit()]
    assert trail == [(events.QUARANTINE, "disable", None),
                     (events.QUARANTINE_SKIPPED, "enable", "skipped"),
                     (events.QUARANTINE, "disable", None)]
    assert "re-enabled by someone else" in audit()[1]["why"]
    assert isinstance(events.parse(audit()[1]), events.QuarantineSkipped)


def test_a_signed_revocation_quarantines_a_service_someone_re_enabled(
        qconf, audit):
    """trustpool quarantined cmp1, an operator re-enabled it; a signed
    revocation must disable it again, not be swallowed because trustpool
    still thinks it holds the service."""
    nova = Nova(["cmp1"])
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="untrusted"))
    nova.services["cmp1"].update(status="enabled", disabled_reason=None)
    q.after_revocation_now("cmp1", "ev-1", signed=True)
    svc = nova.services["cmp1"]
    assert svc["status"] == "disabled"
    assert "signed Keylime revocation ev-1" in svc["disabled_reason"]
    assert [(e["action"], e["trigger"]) for e in audit()
            if e["event"] == events.QUARANTINE] == [
        ("disable", UNTRUSTED_RUN), ("disable", REVOCATION)]
    # an operator's own disable of a held host is still never touched
    nova.services["cmp1"].update(status="disabled",
                                 disabled_reason="forensics")
    q.after_revocation_now("cmp1", "ev-2", signed=True)
    assert nova.services["cmp1"]["disabled_reason"] == "forensics"


@pytest.mark.parametrize("reason", [
    "trustpool: quarantined",
    "trustpool: quarantined by ops, keep it off",
    "trustpool: quarantinedX",
    "trustpool: quarantined: manual, ticket 42",
    "trustpool: quarantined: 3 untrusted attestations in a row (n1) at "
    "2026-12-01T18:31:00+00:00 -- ops: keep disabled",
], ids=["bare-prefix", "prose", "glued", "own-words", "appended-note"])
def test_a_reason_that_only_imitates_trustpool_s_is_an_operator_s(
        qconf, audit, reason):
    """An operator who writes a reason that starts like trustpool's (or
    edits trustpool's to add a note) owns the service: trustpool never
    re-enables it, however trusted the host."""
    assert not is_ours({"status": "disabled", "disabled_reason": reason})
    nova = Nova(["cmp1"])
    nova.services["cmp1"].update(status="disabled", disabled_reason=reason)
    q = make(qconf, nova)
    for _ in range(4):
        q.after_pass_now(verdicts(cmp1="trusted"))
    assert nova.calls == []
    assert nova.services["cmp1"]["disabled_reason"] == reason


def test_every_reason_trustpool_writes_is_its_own():
    """Whatever the cause, the nodes and the cut to 255 characters, the
    reason trustpool writes is recognised as its own (or it could never
    release what it quarantined)."""
    conf = cfg.ConfigOpts()
    from trustpool import conf as tp_conf
    tp_conf.register_opts(conf)
    conf([], project="trustpool", default_config_files=[])
    q = Quarantine(conf, Nova([]), clock=lambda: 1.8e9)
    from trustpool.quarantine.dampening import Due
    long_names = [f"bm{i:03d}.rack.example.org" for i in range(40)]
    for due, nodes, event_id in [
            (Due("h", Kind.QUARANTINE, UNTRUSTED_RUN, 3), ["n1"], None),
            (Due("h", Kind.QUARANTINE, UNTRUSTED_RUN, 3), long_names, None),
            (Due("h", Kind.QUARANTINE, REVOCATION, 0), ["n1"], None),
            (Due("h", Kind.QUARANTINE, REVOCATION, 0), ["n1"],
             "pcr_validation.invalid_pcr_15"),
            (Due("h", Kind.QUARANTINE, REVOCATION, 0), ["n1"], "x" * 400),
            (Due("h", Kind.QUARANTINE, REVOCATION, 0), ["n1"], "a\nb (c)")]:
        reason = q._reason(due, nodes, event_id)
        assert len(reason) <= 255
        assert is_ours({"status": "disabled", "disabled_reason": reason}), \
            reason


def test_a_revocation_quarantine_that_failed_is_tried_again(qconf, audit):
    """Nova was down when a signed revocation came (the verifier got its
    200 from the trait removal and sends no more): the quarantine is due
    again at the next untrusted pass, with the event's id, not lost until
    a whole untrusted run has passed. A trusted pass ends it."""
    nova = Nova(["cmp1", "cmp2"])
    q = make(qconf, nova)
    nova.down = True
    q.after_revocation_now("cmp1", "ev-1", True)
    q.after_revocation_now("cmp2", "ev-2", True)
    nova.down = False
    q.after_pass_now(verdicts(cmp1="untrusted", cmp2="trusted"))
    svc = nova.services["cmp1"]
    assert svc["status"] == "disabled"
    assert "signed Keylime revocation ev-1" in svc["disabled_reason"]
    assert nova.services["cmp2"]["status"] == "enabled"
    q.after_pass_now(verdicts(cmp1="untrusted", cmp2="untrusted"))
    assert nova.services["cmp2"]["status"] == "enabled"  # 1 is not N
    trail = [(e["event"], e["host"], e.get("outcome"), e["trigger"],
              e["event_id"]) for e in audit()]
    assert trail == [
        (events.QUARANTINE_SKIPPED, "cmp1", "failed", REVOCATION, "ev-1"),
        (events.QUARANTINE_SKIPPED, "cmp2", "failed", REVOCATION, "ev-2"),
        (events.QUARANTINE, "cmp1", None, REVOCATION, "ev-1")]


def test_an_unsigned_revocation_never_quarantines_later_either(qconf,
                                                               audit):
    """An unsigned event only ends a trusted run: it leaves no quarantine
    due for a later pass to carry out."""
    nova = Nova(["cmp1"])
    q = make(qconf, nova)
    q.after_revocation_now("cmp1", "forged", False)
    q.after_pass_now(verdicts(cmp1="untrusted"))
    assert nova.services["cmp1"]["status"] == "enabled"
    assert nova.calls == [] and audit() == []


# -- the worker under load ------------------------------------------------

class Gate:
    """A job that holds the worker until opened."""

    def __init__(self):
        import threading
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self):
        self.entered.set()
        assert self.opened.wait(30)


def result(**levels):
    return type("R", (), {"hosts": verdicts(**levels)})()


def test_stop_ends_the_worker_even_with_a_full_queue(qconf, monkeypatch):
    """A Nova slower than the passes fills the queue; stopping the service
    must still end the worker after the job at hand, not after every job
    queued (each a round of Nova calls after the service was stopped)."""
    from trustpool.quarantine import service as q_service
    monkeypatch.setattr(q_service, "_QUEUE", 8)
    nova = Nova(["cmp1"])
    q = Quarantine(qconf, nova).start()
    gate = Gate()
    q._submit(gate, "a gate")
    assert gate.entered.wait(10)
    for _ in range(20):
        q.after_pass(result(cmp1="untrusted"))
    q.stop(timeout=0)
    gate.opened.set()
    q._thread.join(10)
    assert not q._thread.is_alive()
    assert nova.calls == []  # nothing queued ran after the stop


def test_a_pass_dropped_by_a_full_queue_breaks_a_trusted_run(
        qconf, monkeypatch, audit):
    """M = 2 trusted in a row. The worker is behind, and an untrusted pass
    between two trusted ones is dropped: the two trusted ones are not in
    a row, so no release."""
    from trustpool.quarantine import service as q_service
    monkeypatch.setattr(q_service, "_QUEUE", 1)
    monkeypatch.setattr(q_service, "_PASSES", 1, raising=False)
    nova = Nova(["cmp1"])
    nova.services["cmp1"].update(status="disabled", disabled_reason=(
        f"{REASON_PREFIX}: 2 untrusted attestations in a row (cmp1) at "
        "2026-11-30T10:00:00+00:00"))
    q = Quarantine(qconf, nova).start()
    try:
        assert q.join(10)
        gate = Gate()
        q._submit(gate, "a gate")
        assert gate.entered.wait(10)
        q.after_pass(result(cmp1="trusted"))
        q.after_pass(result(cmp1="untrusted"))  # no room: dropped
        gate.opened.set()
        assert q.join(10)
        q.after_pass(result(cmp1="trusted"))
        assert q.join(10)
        assert nova.services["cmp1"]["status"] == "disabled"
        assert nova.calls == []
    finally:
        q.stop()


def test_passes_waiting_for_the_worker_are_few(qconf, monkeypatch):
    """Each queued pass holds the verdicts of the whole fleet: with 10,000
    hosts and a Nova behind, a queue of 1,024 passes is 10 million
    reports. Only a few passes wait; the rest are dropped (a gap)."""
    from trustpool.quarantine import service as q_service
    nova = Nova([])
    q = Quarantine(qconf, nova).start()
    try:
        gate = Gate()
        q._submit(gate, "a gate")
        assert gate.entered.wait(10)
        fleet = result(**{f"h{i}": "untrusted" for i in range(10000)})
        for _ in range(50):
            q.after_pass(fleet)
        assert q._queue.qsize() <= getattr(q_service, "_PASSES", 1024)
        assert q._queue.qsize() <= 8
        gate.opened.set()
        # the few passes left still write an event per host (Nova lists
        # none): tens of thousands of lines, slow on a loaded machine
        assert q.join(180)
    finally:
        q.stop()


def test_a_revocation_dropped_by_a_full_queue_is_an_audit_event(
        qconf, monkeypatch, audit):
    from trustpool.quarantine import service as q_service
    monkeypatch.setattr(q_service, "_QUEUE", 1)
    nova = Nova(["cmp1"])
    q = Quarantine(qconf, nova).start()
    try:
        assert q.join(10)
        gate = Gate()
        q._submit(gate, "a gate")
        assert gate.entered.wait(10)
        q._submit(lambda: None, "a filler")  # the queue is full now
        q.after_revocation("cmp1", "ev-9", True)
        q.after_revocation("cmp1", "ev-10", False)  # nothing was due
        gate.opened.set()
        assert q.join(10)
    finally:
        q.stop()
    [event] = audit()
    assert (event["event"], event["host"], event["action"],
            event["trigger"], event["outcome"], event["event_id"]) == (
        events.QUARANTINE_SKIPPED, "cmp1", "disable", REVOCATION,
        "failed", "ev-9")
    assert isinstance(events.parse(event), events.QuarantineSkipped)


def test_hosts_gone_from_the_passes_leave_no_state(qconf):
    """Hosts come and go (renamed, rebuilt, Ironic nodes moving): the
    state of a host with nothing in its runs is not kept for ever."""
    nova = Nova([])
    q = make(qconf, nova)
    for i in range(100):
        q.after_pass_now(verdicts(**{f"gone{i}": "trusted"}))
    q.after_pass_now(verdicts(x="trusted"))
    assert q.dampener.hosts() == ["x"]


def test_the_report_reads_every_quarantine_event(qconf, audit, tmp_path,
                                                 capsys):
    """Every kind of event quarantine writes (done, skipped, failed, a
    let-go with no trigger) is read by ``trustpool report`` into the
    right counts and rows, none taken as malformed."""
    from trustpool.cmd import main as cli

    nova = Nova(["cmp1", "cmp2", "cmp3"])
    nova.services["cmp3"].update(status="disabled", disabled_reason="ops")
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="untrusted", cmp2="untrusted",
                                  cmp3="untrusted"))
    nova.services["cmp2"].update(status="enabled", disabled_reason=None)
    q.after_pass_now(verdicts(cmp1="untrusted", cmp2="untrusted",
                              cmp3="untrusted"))  # cmp2 let go of
    nova.down = True
    q.after_revocation_now("cmp2", "ev-1", True)
    nova.down = False
    q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted",
                              cmp3="trusted"))
    q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted",
                              cmp3="trusted"))
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in audit()))
    code = cli.main(["report", "--format", "json", str(log)])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    rows = [r for r in report["records"] if r["record"] == "quarantine"]
    assert [(r["host"], r["action"], r["outcome"], r["trigger"])
            for r in rows] == [
        ("cmp1", "disable", "done", UNTRUSTED_RUN),
        ("cmp2", "disable", "done", UNTRUSTED_RUN),
        ("cmp3", "disable", "skipped", UNTRUSTED_RUN),
        ("cmp2", "enable", "skipped", None),
        ("cmp2", "disable", "failed", REVOCATION),
        ("cmp1", "enable", "done", TRUSTED_RUN)]
    summary = json.dumps(report)
    assert '"malformed_lines": 0' in summary
    assert '"unknown_events": 0' in summary


def test_a_revocation_of_a_held_host_nova_cannot_confirm_is_kept(
        qconf, audit):
    """cmp1 is held, an operator re-enabled it, a signed revocation comes
    while Nova cannot be asked (so trustpool takes cmp1 as still held):
    when the next pass finds cmp1 re-enabled, the revocation quarantines
    it then, rather than being forgotten with the hold."""
    nova = Nova(["cmp1"])
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="untrusted"))
    nova.services["cmp1"].update(status="enabled", disabled_reason=None)
    nova.down = True
    q.after_revocation_now("cmp1", "ev-7", True)
    nova.down = False
    q.after_pass_now(verdicts(cmp1="untrusted"))
    svc = nova.services["cmp1"]
    assert svc["status"] == "disabled"
    assert "signed Keylime revocation ev-7" in svc["disabled_reason"]


def test_an_operator_who_disables_while_the_action_waits_wins(qconf, audit):
    """The verdicts were queued while the worker was busy; meanwhile an
    operator disabled the service with a reason of their own. Nova is
    read when the action is done, not when it was queued: untouched."""
    nova = Nova(["cmp1"])
    q = Quarantine(qconf, nova).start()
    try:
        assert q.join(10)
        gate = Gate()
        q._submit(gate, "a gate")
        assert gate.entered.wait(10)
        q.after_pass(result(cmp1="untrusted"))
        q.after_pass(result(cmp1="untrusted"))
        nova.services["cmp1"].update(status="disabled",
                                     disabled_reason="forensics")
        gate.opened.set()
        assert q.join(10)
    finally:
        q.stop()
    assert nova.calls == []
    assert nova.services["cmp1"]["disabled_reason"] == "forensics"
    [event] = audit()
    assert event["outcome"] == "skipped" and "forensics" in event["why"]


def test_no_nova_password_in_events_or_logs(conf, audit, caplog):
    """A Nova error that quotes the configured [trustpool_nova] password
    (a proxy echoing a request, a URL with credentials) reaches neither
    the audit event nor the log."""
    from keystoneauth1 import loading as ks_loading

    from trustpool.openstack import compute as compute_api
    compute_api.register_opts(conf)
    conf.set_override("auth_type", "password", compute_api.GROUP)
    ks_loading.register_auth_conf_options(conf, compute_api.GROUP)
    conf.register_opts(ks_loading.get_auth_plugin_conf_options("password"),
                       group=compute_api.GROUP)
    conf.set_override("password", "hunter2-nova-pw", compute_api.GROUP)
    options.register_opts(conf)
    conf.set_override("untrusted_passes", 1, options.GROUP)
    conf.set_override("host_attribute", "host", "trusted_computing")

    class Leaky(Nova):
        def compute_service(self, host):
            raise NovaAPIError("Nova API GET /os-services: refused for "
                               "http://admin:hunter2-nova-pw@nova/")

    q = Quarantine(conf, Leaky(["cmp1"]))
    q.after_pass_now(verdicts(cmp1="untrusted"))
    [event] = audit()
    assert event["outcome"] == "failed"
    assert "hunter2-nova-pw" not in json.dumps(event)
    assert "hunter2-nova-pw" not in caplog.text


def test_a_held_service_missing_from_a_listing_is_still_held(qconf, audit):
    """Nova omits the services of a cell it cannot reach: a held service
    missing from one listing was not re-enabled by anyone; trustpool
    keeps holding it (no 'let go' event) and releases it in time."""
    nova = Nova(["cmp1", "cmp2"])
    q = make(qconf, nova)
    for _ in range(2):
        q.after_pass_now(verdicts(cmp1="untrusted", cmp2="trusted"))
    assert q.dampener.held() == ["cmp1"]
    listing = nova.compute_services
    nova.compute_services = lambda: [s for s in listing()
                                     if s["host"] != "cmp1"]
    q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted"))
    assert q.dampener.held() == ["cmp1"]
    nova.compute_services = listing
    q.after_pass_now(verdicts(cmp1="trusted", cmp2="trusted"))
    assert nova.services["cmp1"]["status"] == "enabled"
    assert [(e["event"], e["action"]) for e in audit()] == [
        (events.QUARANTINE, "disable"), (events.QUARANTINE, "enable")]


def test_a_signed_revocation_of_a_node_nova_does_not_list_is_an_event(
        qconf, audit):
    """host_attribute = nodename: the revoked node is in no hypervisor
    record (just deleted, renamed, or a stale agent map): the quarantine
    that was due cannot be done, and the audit trail says so."""
    qconf.set_override("host_attribute", "nodename", "trusted_computing")
    nova = Nova(["ironic1"], nodes=[
        ComputeNode("u1", "bm1.example", "ironic1")])
    q = make(qconf, nova)
    q.after_revocation_now("bm9.example", "ev-5", True)
    [event] = audit()
    assert (event["event"], event["host"], event["outcome"],
            event["trigger"], event["event_id"]) == (
        events.QUARANTINE_SKIPPED, "bm9.example", "failed", REVOCATION,
        "ev-5")
    q.after_revocation_now("bm9.example", "ev-6", False)  # nothing due
    q.after_revocation_now("bm9.example", "ev-7", True, "comm_error")
    assert len(audit()) == 1


def test_a_pass_that_raised_breaks_a_trusted_run(qconf):
    """A pass that raised (run_forever survives it) gave no verdict: the
    trusted passes either side of it are not in a row."""
    nova = Nova(["cmp1"])
    nova.services["cmp1"].update(status="disabled", disabled_reason=(
        f"{REASON_PREFIX}: 2 untrusted attestations in a row (cmp1) at "
        "2026-11-30T10:00:00+00:00"))
    q = Quarantine(qconf, nova).start()
    try:
        outcomes = iter(["trusted", RuntimeError("Placement went away"),
                         "trusted"])

        def one_pass():
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return result(cmp1=outcome)

        wrapped = q.wrap(one_pass)
        wrapped()
        with pytest.raises(RuntimeError):
            wrapped()
        wrapped()
        assert q.join(10)
        assert nova.services["cmp1"]["status"] == "disabled"
    finally:
        q.stop()
