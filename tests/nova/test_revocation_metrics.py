"""The revocation-event metrics of the service, scraped from its real
``/metrics`` while real events arrive at its real HTTPS listener: one
``trustpool sync-traits --interval`` process (as operators run it) with
both listeners on 127.0.0.1, the real Placement service (gunicorn), a
real HTTPS attestation server, events signed, forged and oversized the
way tests/support/keylime_events.py makes them in Keylime 6.6's format.
The counts read back with prometheus_client's own parser must be what
was sent; Placement must say what the counts say."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid as uuidlib

import pytest
import requests
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from prometheus_client.parser import text_string_to_metric_families

from trustpool import metrics, revocation, trait_sync
from trustpool.attestation.backends.keylime import AgentIds
from trustpool.conf import make_client
from trustpool.openstack.placement import PlacementAPI

from tests.support import keylime_events as ke
from tests.support.placement_server import PlacementServer
from tests.support.placement_server import _free_port as free_port

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"
#: the service's time zone in the subprocess: UTC+5, a POSIX rule that
#: needs no tzdata. Keylime's event_time is the verifier's local time
#: without a zone; read as UTC, every latency would be five hours in the
#: future and left out.
ZONE, OFFSET = "TPT-5", 5 * 3600


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    server = PlacementServer(tmp_path_factory.mktemp("placement")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return ke.RevocationKey(tmp_path_factory.mktemp("revocation"))


@pytest.fixture(scope="module")
def rogue_key(tmp_path_factory):
    return ke.RevocationKey(tmp_path_factory.mktemp("rogue"), "Rogue")


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    r = requests.get(url, timeout=5)
    assert r.status_code == 200
    found = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def by_label(got, name, label):
    return {dict(k[1])[label]: v for k, v in got.items() if k[0] == name}


def value(got, name, **labels):
    return got.get((name, tuple(sorted(labels.items()))))


def until(check, what, timeout=60.0, alive=lambda: True):
    deadline = time.monotonic() + timeout
    while True:
        assert alive(), f"the service died before {what}"
        try:
            got = check()
        except requests.ConnectionError:
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.1)


def verifier_asctime(seconds_ago: float) -> str:
    """``time.asctime()`` on a verifier in the service's zone."""
    return time.asctime(time.gmtime(time.time() - seconds_ago + OFFSET))


def post(url, data, pki) -> requests.Response:
    return requests.post(url, data=data, timeout=15,
                         verify=str(pki["ca"].cert_path),
                         headers={"Content-Type": "application/json"})


@pytest.fixture
def nodes(placement):
    tag = uuidlib.uuid4().hex[:8]
    names = [f"revm-{tag}-{i}" for i in range(4)]
    made = {n: placement.create_provider(n, {"COMPUTE_NODE"}) for n in names}
    yield made
    for uuid in made.values():
        placement.session.delete(
            f"{placement.url}/resource_providers/{uuid}")


def test_the_service_counts_what_the_listener_was_sent(
        tmp_path, placement, oat_server, pki, key, rogue_key, nodes):
    names = sorted(nodes)
    agents = {n: str(uuidlib.uuid4()) for n in names}
    oat_server.levels = dict.fromkeys(names, "trusted")
    metrics_port, events_port = free_port(), free_port()
    config = tmp_path / "nova.conf"
    config.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki["ca"].cert_path}
[placement]
auth_type = admin_token
endpoint = {placement.url}
token = admin
[trustpool_traits]
metrics_listen = 127.0.0.1:{metrics_port}
[keylime]
agent_id_rule = map-only
agent_ids = {",".join(f"{n}:{a}" for n, a in agents.items())}
[trustpool_events]
listen = 127.0.0.1:{events_port}
cert_file = {pki["server"].cert}
key_file = {pki["server"].key}
revocation_cert_file = {key.cert_path}
max_body_bytes = 4096
""")
    log = open(tmp_path / "service.log", "wb")  # noqa: SIM115
    # one pass at start-up, then none within the test: what the events do
    # to the trait is theirs alone
    process = subprocess.Popen(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(config), "sync-traits", "--interval", "3600"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TZ": ZONE})
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    events_url = f"https://127.0.0.1:{events_port}/"

    def alive():
        return process.poll() is None

    def carrying():
        return {n for n, u in nodes.items()
                if TRAIT in placement.traits(u)[0]}

    try:
        got = until(lambda: (g := scrape(metrics_url)) and value(
            g, "trustpool_sync_passes_total", outcome="ok") == 1 and g,
            "the first pass", alive=alive)
        assert carrying() == set(names)
        # both sides in one registry, the event side from zero
        assert by_label(got, "trustpool_revocation_events_total",
                        "outcome") == dict.fromkeys(revocation.observer
                                                    .OUTCOMES, 0)
        assert by_label(got, "trustpool_revocation_events_refused_total",
                        "reason") == dict.fromkeys(revocation.observer
                                                   .REFUSALS, 0)
        assert value(got, "trustpool_revocation_latency_seconds_count") == 0
        assert value(
            got, "trustpool_revocation_last_event_timestamp_seconds") == 0

        first_sent = time.time()
        victims = names[:3]
        for name in victims:  # the verifier saw it 2 s ago
            r = post(events_url, ke.signed_body(
                key, agents[name], event_time=verifier_asctime(2)), pki)
            assert r.json() == {"result": "removed"}
        # Keylime retries one; an agent no host maps to; a time no one
        # can read
        retry = ke.signed_body(key, agents[victims[0]],
                               event_time=verifier_asctime(2))
        assert post(events_url, retry, pki).json() == {"result": "no-trait"}
        r = post(events_url, ke.signed_body(key, str(uuidlib.uuid4())), pki)
        assert r.json() == {"result": "unknown-agent"}
        assert carrying() == {names[3]}

        msg = ke.message(agents[names[3]])
        forged = [
            ke.body(msg, rogue_key.sign(msg)),
            ke.body(msg, key.sign(ke.message(agents[names[3]],
                                             event_id="other"))),
        ]
        for data in forged:
            assert post(events_url, data, pki).status_code == 403
        assert post(events_url, ke.body(msg, ""), pki).status_code == 401
        oversize = ke.signed_body(key, agents[names[3]],
                                  meta_data=json.dumps({"pad": "x" * 5000}))
        assert post(events_url, oversize, pki).status_code == 413
        for data in (b"not json", json.dumps({"signature": ""}).encode()):
            assert post(events_url, data, pki).status_code == 400
        assert requests.get(events_url, timeout=15, verify=str(
            pki["ca"].cert_path)).status_code == 405
        last_sent = time.time()
        assert carrying() == {names[3]}  # no refused event changed a thing

        want_events = {"removed": 3, "no_trait": 1, "unknown_agent": 1,
                       "failed": 0}
        want_refused = {"unsigned": 1, "bad_signature": 2, "malformed": 2,
                        "too_large": 1, "method": 1, "other": 0}

        def counted():
            g = scrape(metrics_url)
            return g if (by_label(g, "trustpool_revocation_events_total",
                                  "outcome") == want_events
                         and by_label(
                             g, "trustpool_revocation_events_refused_total",
                             "reason") == want_refused) else None

        got = until(counted, "the counts of what was sent", timeout=15,
                    alive=alive)
        # a latency for each removal: at least the verifier's 2 s (whole
        # seconds, rounded down), read in the service's zone
        assert value(got, "trustpool_revocation_latency_seconds_count") == 3
        assert value(got, "trustpool_revocation_latency_seconds_bucket",
                     le="1.0") == 0
        total = value(got, "trustpool_revocation_latency_seconds_sum")
        assert 3 * 2 <= total <= 3 * (2 + 1) + (last_sent - first_sent) + 3
        # every verified event's handling, none of the refused
        assert value(got, "trustpool_revocation_handling_duration_seconds"
                     "_count") == 5
        assert first_sent <= value(
            got, "trustpool_revocation_last_event_timestamp_seconds"
        ) <= last_sent
        # the periodic side is still counted in the same registry
        assert value(got, "trustpool_trait_additions_total") == 4
        assert value(got, "trustpool_sync_passes_total", outcome="ok") == 1
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        log.close()


def adapter_for(url: str) -> ks_adapter.Adapter:
    return ks_adapter.Adapter(
        ks_session.Session(), endpoint_override=url,
        additional_headers={"X-Auth-Token": "admin"})


def test_placement_down_counts_failed_then_the_retry_removed(
        conf, placement, oat_server, pki, key, nodes):
    """In-process, through the same wiring function as the command
    (``metrics.serve`` handed the listener's ``observe``): an event while
    Placement is down is ``failed`` (5xx); the verifier's retry, once
    Placement is back, ``removed`` with its latency."""
    victim = sorted(nodes)[0]
    placement.add_trait(nodes[victim], TRAIT)
    trait_sync.register_opts(conf)
    revocation.register_opts(conf)
    AgentIds(conf)
    metrics_port = free_port()
    conf.set_override("metrics_listen", f"127.0.0.1:{metrics_port}",
                      "trustpool_traits")
    conf.set_override("attestation_server", "127.0.0.1",
                      "trusted_computing")
    for name, value_ in {"listen": f"127.0.0.1:{free_port()}",
                         "cert_file": str(pki["server"].cert),
                         "key_file": str(pki["server"].key),
                         "revocation_cert_file": str(key.cert_path)}.items():
        conf.set_override(name, value_, revocation.options.GROUP)
    adapter = adapter_for(f"http://127.0.0.1:{free_port()}")  # nobody
    service = revocation.start(conf, PlacementAPI(adapter))
    client = make_client(conf)
    try:
        assert metrics.serve(conf, client, service.sync_pass(),
                             service.observe) is not None
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        data = ke.signed_body(key, victim, event_time=time.asctime())
        assert post(service.url, data, pki).status_code == 503
        adapter.endpoint_override = placement.url  # Placement is back
        assert post(service.url, data, pki).json() == {"result": "removed"}
        assert TRAIT not in placement.traits(nodes[victim])[0]

        def counted():
            g = scrape(url)
            return g if value(g, "trustpool_revocation_events_total",
                              outcome="removed") == 1 else None

        got = until(counted, "the retry counted", timeout=15)
        assert by_label(got, "trustpool_revocation_events_total",
                        "outcome") == {"removed": 1, "failed": 1,
                                       "no_trait": 0, "unknown_agent": 0}
        assert value(got, "trustpool_revocation_handling_duration_seconds"
                     "_count") == 2
        # the latency runs from the verifier's time to the removal the
        # retry made: the failed try is in it
        assert value(got, "trustpool_revocation_latency_seconds_count") == 1
    finally:
        client.close()
        service.stop()


def test_events_without_metrics_need_no_prometheus_client(
        tmp_path, placement, oat_server, pki, key, nodes):
    victim = sorted(nodes)[0]
    placement.add_trait(nodes[victim], TRAIT)
    oat_server.levels = dict.fromkeys(nodes, "untrusted")
    port = free_port()
    config = tmp_path / "nova.conf"
    config.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki["ca"].cert_path}
[placement]
auth_type = admin_token
endpoint = {placement.url}
token = admin
[trustpool_events]
listen = 127.0.0.1:{port}
cert_file = {pki["server"].cert}
key_file = {pki["server"].key}
revocation_cert_file = {key.cert_path}
""")
    code = ("import runpy, sys; sys.modules['prometheus_client'] = None; "
            "sys.argv = ['trustpool'] + sys.argv[1:]; "
            "runpy.run_module('trustpool.cmd.main', run_name='__main__')")
    log = open(tmp_path / "service.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--config-file", str(config),
         "sync-traits", "--interval", "3600"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # the start-up pass removes the trait (untrusted); the event
        # listener answers beside it
        r = until(lambda: post(f"https://127.0.0.1:{port}/",
                               ke.signed_body(key, victim), pki),
                  "the listener", alive=lambda: process.poll() is None)
        assert r.status_code == 200
        assert r.json()["result"] in ("removed", "no-trait")
        assert TRAIT not in placement.traits(nodes[victim])[0]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        log.close()
    text = (tmp_path / "service.log").read_text()
    assert "prometheus" not in text.lower()
