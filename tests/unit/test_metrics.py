"""trustpool.metrics: what the gauges and counters say for given passes,
and the listener's own behaviour (on 127.0.0.1)."""

from __future__ import annotations

import socket
import time

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trustpool.attestation import HostReport, TrustLevel
from trustpool.exceptions import ConfigurationError
from trustpool.metrics import listener, textfile
from trustpool.metrics.families import HOST_METRICS, HostState, state_of
from trustpool.metrics.service import (
    EVENT_METRICS,
    EXPORTED,
    QUARANTINE_METRICS,
    ServiceMetrics,
)
from trustpool.trait_sync import SyncResult

NOW = 1_800_000_000.0


def report(name, level, vtime=None, reason="r"):
    return HostReport(name, TrustLevel(level), "oat", reason, vtime)


def names_in(text: str) -> set[str]:
    """Every family as PromQL sees it (counters with _total)."""
    found = set()
    for family in text_string_to_metric_families(text):
        found.add(family.name + ("_total" if family.type == "counter"
                                 else ""))
    return found


def sample(metrics: ServiceMetrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_a_verdict_dates_from_the_server_never_after_its_arrival():
    stamp = "2027-01-15T08:00:00+0000"  # 1800000000 = 2027-01-15T08:00:00Z
    assert state_of(report("a", "trusted", stamp), NOW + 5).last_verdict \
        == NOW
    # a server clock ahead of ours cannot make a verdict look newer
    assert state_of(report("a", "trusted", stamp), NOW - 5).last_verdict \
        == NOW - 5
    assert state_of(report("a", "untrusted"), NOW).last_verdict == NOW
    # unknown is no verdict: the previous one's time is kept
    before = HostState(TrustLevel.TRUSTED, NOW - 100)
    assert state_of(report("a", "unknown", stamp), NOW, before) == \
        HostState(TrustLevel.UNKNOWN, NOW - 100)
    assert state_of(report("a", "unknown"), NOW).last_verdict is None


def pass_with(hosts, added=0, removed=0, failed=None):
    return SyncResult(added=added, removed=removed, failed=failed,
                      hosts=hosts, attested_at=NOW)


def test_passes_drive_counters_and_host_gauges():
    clock = [NOW]
    m = ServiceMetrics(clock=lambda: clock[0])
    m.record_pass(pass_with({"a": report("a", "trusted"),
                             "b": report("b", "untrusted"),
                             "c": report("c", "unknown")}, added=1,
                            removed=2), 0.5)
    assert sample(m, "trustpool_trait_additions_total") == 1
    assert sample(m, "trustpool_trait_removals_total") == 2
    assert sample(m, "trustpool_hosts", level="trusted") == 1
    assert sample(m, "trustpool_hosts", level="untrusted") == 1
    assert sample(m, "trustpool_hosts", level="unknown") == 1
    assert sample(m, "trustpool_host_trusted", host="a") == 1
    assert sample(m, "trustpool_host_trusted", host="b") == 0
    assert sample(m, "trustpool_sync_last_success_timestamp_seconds") == NOW
    assert sample(m, "trustpool_sync_pass_duration_seconds_sum") == 0.5
    clock[0] = NOW + 90
    # ages are computed at the scrape
    assert sample(m, "trustpool_host_last_attestation_age_seconds",
                  host="a") == 90
    assert sample(m, "trustpool_host_last_attestation_age_seconds",
                  host="c") is None

    # a host gone from Placement leaves the gauges; c's verdict came
    m.record_pass(pass_with({"a": report("a", "unknown"),
                             "c": report("c", "trusted")}, failed="x"),
                  0.1)
    assert sample(m, "trustpool_host_trusted", host="b") is None
    assert sample(m, "trustpool_hosts", level="unknown") == 1
    assert sample(m, "trustpool_host_last_attestation_timestamp_seconds",
                  host="a") == NOW
    assert sample(m, "trustpool_sync_passes_total", outcome="failed") == 1
    # a failed pass is no success
    assert sample(m, "trustpool_sync_last_success_timestamp_seconds") == NOW

    # the compute nodes could not be listed: every known host unknown
    m.record_pass(SyncResult(failed="listing", hosts=None), 0.1)
    assert sample(m, "trustpool_hosts", level="unknown") == 2
    assert sample(m, "trustpool_hosts", level="trusted") == 0
    assert sample(m, "trustpool_host_last_attestation_timestamp_seconds",
                  host="c") == NOW


def test_exchanges_by_cause_and_a_pass_that_raises():
    m = ServiceMetrics()
    m.observe_attestation(0.2, None)
    m.observe_attestation(1.5, "timeout")
    m.observe_attestation(0.1, "nonsense")  # type: ignore[arg-type]
    assert sample(m, "trustpool_attestation_request_duration_seconds_count"
                  ) == 3
    assert sample(m, "trustpool_attestation_failures_total",
                  cause="timeout") == 1
    assert sample(m, "trustpool_attestation_failures_total",
                  cause="other") == 1
    assert sample(m, "trustpool_attestation_failures_total",
                  cause="tls") == 0  # every cause exported from the start

    def broken(*args):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        m.timed(broken)(None, None, None)
    assert sample(m, "trustpool_sync_passes_total", outcome="failed") == 1
    assert sample(m, "trustpool_sync_pass_duration_seconds_count") == 1


def test_exported_names_and_no_reason_text():
    m = ServiceMetrics()
    m.record_pass(pass_with({"a": report("a", "trusted",
                                         reason="quoted-secret-xyz")}), 0.1)
    text = generate_latest(m.registry).decode()
    assert "quoted-secret-xyz" not in text
    ours = {n for n in names_in(text) if n.startswith("trustpool_")}
    # the revocation families come with the event listener only, the
    # quarantine counter with quarantine
    assert ours == set(EXPORTED) - set(EVENT_METRICS) - set(
        QUARANTINE_METRICS)
    m.revocations()
    m.quarantine()
    text = generate_latest(m.registry).decode()
    assert {n for n in names_in(text) if n.startswith("trustpool_")} == \
        set(EXPORTED)
    # status --format prometheus prints the same host gauges
    status = textfile.render([report("a", "trusted")], now=NOW)
    assert names_in(status) == set(HOST_METRICS)


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("[::1]:9464", ("::1", 9464)),
    (" localhost:1 ", ("localhost", 1)),
])
def test_listen_values(value, expected):
    assert listener.parse(value) == expected


@pytest.mark.parametrize("value", ["", ":9464", "[::1]", "a:b", "1.2.3.4",
                                   "h:123456", "[::1:9464", "a b:1"])
def test_bad_listen_values_name_the_option(value):
    with pytest.raises(ConfigurationError) as caught:
        listener.parse(value)
    assert str(caught.value).startswith(
        f"[trustpool_traits] metrics_listen: {value!r}: ")


@pytest.fixture
def running(monkeypatch):
    monkeypatch.setattr(listener._Handler, "timeout", 0.5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    m = ServiceMetrics()
    served = listener.start(f"127.0.0.1:{port}",
                            listener.metrics_app(m.registry))
    yield served, port
    served.close()


def test_the_listener_serves_metrics_and_drops_silent_clients(running):
    served, port = running
    assert served.url == f"http://127.0.0.1:{port}/metrics"
    r = requests.get(served.url, timeout=5)
    assert r.status_code == 200
    assert "trustpool_hosts" in names_in(r.text)
    assert requests.get(served.url.replace("/metrics", "/"),
                        timeout=5).status_code == 404
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        started = time.monotonic()
        assert c.recv(100) == b""  # closed by the server, not by us
        assert time.monotonic() - started < 9
    assert requests.get(served.url, timeout=5).status_code == 200


def test_a_client_that_drips_its_request_is_cut_at_the_deadline(running):
    """A byte now and then restarts a per-read timeout; the deadline is
    for the whole request, so a dripping client cannot hold a thread (and,
    many times over, the process's memory) for ever."""
    served, port = running
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.settimeout(0.2)
        cut = False
        for byte in b"GET /metrics HTTP/1.1\r\nX-Drip: " + b"a" * 40:
            try:
                c.sendall(bytes([byte]))
                if c.recv(100) == b"":
                    cut = True
                    break
            except TimeoutError:
                continue                      # nothing yet: drip on
            except OSError:
                cut = True
                break
        assert cut, "a dripping client kept its connection"
    assert requests.get(served.url, timeout=5).status_code == 200


def test_connections_beyond_the_cap_are_closed(monkeypatch):
    monkeypatch.setattr(listener, "_MAX_CONNECTIONS", 1)
    monkeypatch.setattr(listener._Handler, "timeout", 8.0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served = listener.start(f"127.0.0.1:{port}",
                            listener.metrics_app(ServiceMetrics().registry))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as a:
            a.sendall(b"GET /metrics HTTP/1.0\r\n")   # holds the one slot
            with socket.create_connection(("127.0.0.1", port),
                                          timeout=10) as b:
                assert b.recv(100) == b""             # closed: no slot
            a.sendall(b"\r\n")                        # the holder is served
            assert a.recv(100).startswith(b"HTTP/1.0 200")
    finally:
        served.close()
