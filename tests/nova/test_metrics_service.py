"""The service's ``/metrics``, scraped over HTTP from a running
``trustpool sync-traits --interval`` (a subprocess, as operators run it)
against the real Placement service (gunicorn) and a real HTTPS
attestation server, all on 127.0.0.1; read with prometheus_client's own
parser, and checked against what the passes did in Placement."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.oat_server import Response
from tests.support.placement_server import PlacementServer
from tests.support.placement_server import _free_port as free_port

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    server = PlacementServer(tmp_path_factory.mktemp("placement")).start()
    yield server
    server.stop()


class Scraper:
    def __init__(self, url: str, proc: subprocess.Popen) -> None:
        self.url = url
        self.proc = proc

    def scrape(self) -> dict[tuple[str, tuple], float]:
        r = requests.get(self.url, timeout=5)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        found = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                found[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return found

    def until(self, check, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "the service died"
            try:
                got = self.scrape()
            except requests.ConnectionError:
                got = None
            if got is not None and check(got):
                return got
            assert time.monotonic() < deadline, f"never saw {what}: {got}"
            time.sleep(0.1)


def value(got, name, **labels):
    return got.get((name, tuple(sorted(labels.items()))))


def per_host(got, name):
    return {dict(k[1])["host"]: v for k, v in got.items() if k[0] == name}


@pytest.fixture
def service(placement, oat_server, pki, tmp_path):
    port = free_port()
    conf_path = tmp_path / "nova.conf"
    conf_path.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki['ca'].cert_path}
connect_timeout = 1
read_timeout = 2

[placement]
auth_type = admin_token
endpoint = {placement.url}
token = admin

[trustpool_traits]
metrics_listen = 127.0.0.1:{port}
""")
    log = open(tmp_path / "service.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(conf_path), "sync-traits", "--interval", "0.3"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Scraper(f"http://127.0.0.1:{port}/metrics", proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_metrics_follow_the_passes(placement, oat_server, service):
    names = [f"metrics-{i}" for i in range(6)]
    made = {n: placement.create_provider(n, {"COMPUTE_NODE"})
            for n in names}
    # a stale trait on a host that is untrusted: the first pass removes it
    placement.add_trait(made[names[4]], TRAIT)
    oat_server.levels = {n: "trusted" for n in names[:4]}
    oat_server.levels[names[4]] = "untrusted"  # names[5]: not mentioned
    started = time.time()

    def carrying():
        return {n for n, u in made.items()
                if TRAIT in placement.traits(u)[0]}

    got = service.until(lambda g: (value(g, "trustpool_sync_passes_total",
                                         outcome="ok") or 0) >= 1,
                        "a successful pass")
    assert carrying() == set(names[:4])
    # the trait additions are the hosts that became trusted, the removals
    # the one stale carrier
    assert value(got, "trustpool_trait_additions_total") == 4
    assert value(got, "trustpool_trait_removals_total") == 1
    assert {lv: value(got, "trustpool_hosts", level=lv)
            for lv in ("trusted", "untrusted", "unknown")} == {
        "trusted": 4, "untrusted": 1, "unknown": 1}
    assert per_host(got, "trustpool_host_trusted") == {
        n: (1 if n in names[:4] else 0) for n in names}
    ages = per_host(got, "trustpool_host_last_attestation_age_seconds")
    assert set(ages) == set(names[:5])  # names[5] never had a verdict
    assert all(0 <= a < 30 for a in ages.values())
    stamps = per_host(got,
                      "trustpool_host_last_attestation_timestamp_seconds")
    assert all(started - 2 <= s <= time.time() for s in stamps.values())
    passes = sum(value(got, "trustpool_sync_passes_total", outcome=o)
                 for o in ("ok", "failed"))
    assert value(got, "trustpool_sync_passes_total", outcome="failed") == 0
    assert value(got, "trustpool_sync_pass_duration_seconds_count") == passes
    # one attestation exchange per pass (a pass may be between the two)
    exchanges = value(got,
                      "trustpool_attestation_request_duration_seconds_count")
    assert passes <= exchanges <= passes + 1
    assert all(value(got, "trustpool_attestation_failures_total", cause=c)
               == 0 for c in ("timeout", "tls", "http_status", "malformed",
                              "connection", "other"))
    assert started - 1 <= value(
        got, "trustpool_sync_last_success_timestamp_seconds") <= time.time()

    # a host loses trust
    oat_server.levels[names[0]] = "untrusted"
    got = service.until(lambda g: per_host(g, "trustpool_host_trusted")
                        .get(names[0]) == 0, "the flip")
    assert value(got, "trustpool_trait_removals_total") == 2
    assert value(got, "trustpool_trait_additions_total") == 4
    assert value(got, "trustpool_hosts", level="trusted") == 3
    assert names[0] not in carrying()

    # the attestation service fails: every host unknown, counted by cause
    oat_server.responder = lambda r: Response(503, b'{"error": "down"}')
    got = service.until(lambda g: value(g, "trustpool_hosts",
                                        level="unknown") == 6,
                        "the failure")
    assert value(got, "trustpool_attestation_failures_total",
                 cause="http_status") >= 1
    assert value(got, "trustpool_attestation_failures_total",
                 cause="timeout") == 0
    assert value(got, "trustpool_sync_passes_total", outcome="failed") >= 1
    assert value(got, "trustpool_trait_removals_total") == 5
    assert carrying() == set()
    # the verdicts' times are kept, so their ages go on growing
    assert set(per_host(got, "trustpool_host_last_attestation_age_seconds")
               ) == set(names[:5])
    last_ok = value(got, "trustpool_sync_last_success_timestamp_seconds")
    got = service.until(lambda g: value(
        g, "trustpool_sync_passes_total", outcome="failed") >= 3,
        "more failed passes")
    assert value(got, "trustpool_sync_last_success_timestamp_seconds") \
        == last_ok
    for uuid in made.values():
        placement.session.delete(
            f"{placement.url}/resource_providers/{uuid}")


def test_the_listener_answers_nothing_else(service):
    service.until(lambda g: True, "the listener")
    base = service.url.rsplit("/", 1)[0]
    for path in ("/", "/metrics/", "/favicon.ico", "/metricsx",
                 "/METRICS", "/metrics/x"):
        r = requests.get(base + path, timeout=5)
        assert r.status_code == 404, path
        assert "trustpool_" not in r.text
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = requests.request(method, service.url, timeout=5)
        assert r.status_code == 405, method
        assert "trustpool_" not in r.text
    r = requests.get(service.url, timeout=5)
    assert r.headers["Server"] == "trustpool"  # no Python version shown
    # the service's own configuration is not in the metrics
    assert "admin" not in r.text.replace("trustpool", "")
