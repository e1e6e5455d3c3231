"""Keylime revocation events into ``sync-traits --interval``'s listener:
a real HTTPS listener on 127.0.0.1 (certificates from the test PKI), a
real Placement (gunicorn, sqlite), events signed the way Keylime 6.6 signs
them with keys this test makes. The real Keylime verifier's own webhook is
the next step (issue 16, item 3)."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid as uuidlib

import pytest
import requests
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session

from trustpool import revocation, trait_sync
from trustpool.attestation.backends.keylime import AgentIds
from trustpool.conf import make_client
from trustpool.openstack.placement import PlacementAPI

from tests.support import keylime_events as ke
from tests.support import leakcheck
from tests.support.config import point_at
from tests.support.placement_server import PlacementServer
from tests.support.placement_server import _free_port as free_port

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"
KEEP = "CUSTOM_KEEP_ME"


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


def adapter_for(url: str) -> ks_adapter.Adapter:
    return ks_adapter.Adapter(
        ks_session.Session(), endpoint_override=url,
        additional_headers={"X-Auth-Token": "admin"})


class Hosts:
    """Compute node providers carrying the trust trait and another; two
    requests each to make, one to read, one to delete (the burst makes a
    hundred on a shared machine)."""

    def __init__(self, placement: PlacementServer, count: int) -> None:
        tag = uuidlib.uuid4().hex[:8]
        self.placement = placement
        for trait in (TRAIT, KEEP):
            placement.session.put(f"{placement.url}/traits/{trait}")
        self.uuids = {}
        for i in range(count):
            name, uuid = f"ev-{tag}-{i}", str(uuidlib.uuid4())
            placement.session.post(
                f"{placement.url}/resource_providers",
                json={"name": name, "uuid": uuid}).raise_for_status()
            placement.put_traits(uuid, {"COMPUTE_NODE", TRAIT, KEEP},
                                 0).raise_for_status()
            self.uuids[name] = uuid
        self.names = sorted(self.uuids)

    def state(self) -> dict[str, tuple[set[str], int]]:
        """Every provider's traits and generation."""
        return {n: self.placement.traits(u) for n, u in self.uuids.items()}

    def carrying(self) -> set[str]:
        return {n for n, (traits, _) in self.state().items()
                if TRAIT in traits}

    def generations(self) -> dict[str, int]:
        return {n: generation for n, (_, generation) in self.state().items()}

    def delete(self) -> None:
        for uuid in self.uuids.values():
            self.placement.session.delete(
                f"{self.placement.url}/resource_providers/{uuid}")


@pytest.fixture
def hosts(placement):
    made = Hosts(placement, 3)
    yield made
    made.delete()


@pytest.fixture
def events(conf, placement, pki, key):
    """Start a listener; ``events(**options)``. Stopped afterwards."""
    started = []

    def start(api=None, agent_ids=None, rule="hostname", signed=True,
              **options):
        trait_sync.register_opts(conf)
        revocation.register_opts(conf)
        AgentIds(conf)  # registers [keylime]
        conf.set_override("agent_ids", agent_ids or {}, "keylime")
        conf.set_override("agent_id_rule", rule, "keylime")
        values = {"listen": f"127.0.0.1:{free_port()}",
                  "cert_file": str(pki["server"].cert),
                  "key_file": str(pki["server"].key),
                  "revocation_cert_file": str(key.cert_path) if signed
                  else None}
        values.update(options)
        for name, value in values.items():
            conf.set_override(name, value, revocation.options.GROUP)
        service = revocation.start(
            conf, api or PlacementAPI(adapter_for(placement.url)))
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def post(service, data: bytes, pki, **kwargs) -> requests.Response:
    return requests.post(service.url, data=data, timeout=15,
                         verify=str(pki["ca"].cert_path),
                         headers={"Content-Type": "application/json"},
                         **kwargs)


def audit_events(caplog, name="trustpool.trust_lost"):
    found = []
    for record in caplog.records:
        if record.name != "trustpool.audit":
            continue
        event = json.loads(record.getMessage())
        if event["event"] == name:
            found.append(event)
    return found


def test_a_signed_event_removes_the_trait_at_once(events, hosts, key, pki,
                                                  caplog):
    service = events()
    victim, *others = hosts.names
    with caplog.at_level(logging.INFO):
        r = post(service, ke.signed_body(key, victim), pki)
    assert (r.status_code, r.json()) == (200, {"result": "removed"})
    assert hosts.carrying() == set(others)
    assert KEEP in hosts.placement.traits(hosts.uuids[victim])[0]
    [event] = audit_events(caplog)
    assert event["host"] == victim and event["agent_id"] == victim
    assert event["event_id"] == "pcr_validation.invalid_pcr_15"
    assert event["severity"] == "emergency"
    assert event["context"] == {"context": "PCR value is not in allowlist",
                                "got": "ab" * 32, "expected": ["0" * 64]}
    assert event["signed"] is True and event["trait_removed"] is True
    assert event["providers"] == [{"uuid": hosts.uuids[victim],
                                   "name": victim, "removed": True}]
    assert event["type"] == "revocation" and event["time"]
    # again (Keylime retried): done, nothing written
    generation = hosts.placement.traits(hosts.uuids[victim])[1]
    r = post(service, ke.signed_body(key, victim), pki)
    assert (r.status_code, r.json()) == (200, {"result": "no-trait"})
    assert hosts.placement.traits(hosts.uuids[victim])[1] == generation


def test_an_agent_mapped_to_its_host_by_agent_ids(events, hosts, key, pki):
    agent = str(uuidlib.uuid4())
    victim = hosts.names[1]
    service = events(agent_ids={victim: agent}, rule="map-only")
    r = post(service, ke.signed_body(key, agent), pki)
    assert r.status_code == 200
    assert hosts.carrying() == set(hosts.names) - {victim}


def _forged(key, rogue_key, host):
    msg = ke.message(host)
    other = ke.message(host, event_id="something.else")
    return {
        "signed by another key": ke.body(msg, rogue_key.sign(msg)),
        "a signature over a different msg": ke.body(msg, key.sign(other)),
        "a signature that is not base64": ke.body(msg, "%%%not-base64"),
        "a truncated signature": ke.body(msg, key.sign(msg)[:40]),
        # same JSON meaning, other bytes: the signature is over the bytes
        "msg re-encoded": ke.body(json.dumps(json.loads(msg), indent=1),
                                  key.sign(msg)),
    }


def test_forged_and_unsigned_events_change_nothing(events, hosts, key,
                                                   rogue_key, pki, caplog):
    service = events()
    victim = hosts.names[0]
    before = hosts.generations()
    with caplog.at_level(logging.DEBUG):
        for why, data in _forged(key, rogue_key, victim).items():
            r = post(service, data, pki)
            assert r.status_code == 403, why
        msg = ke.message(victim)
        for data in (ke.body(msg, ""), ke.body(msg, None),
                     ke.body(msg, "none")):
            r = post(service, data, pki)
            assert r.status_code == 401
    assert hosts.generations() == before
    assert hosts.carrying() == set(hosts.names)
    assert not audit_events(caplog)
    # refused events are logged without their body
    assert "PCR value is not in allowlist" not in caplog.text
    assert key.sign(msg)[:16] not in caplog.text


def _malformed(host, sign):
    """Bad bodies; each ``msg`` is signed with ``sign`` (correctly, so
    that with a certificate configured they reach the msg checks)."""
    good = json.loads(ke.message(host))
    deep = "[" * 100_000 + "]" * 100_000

    def msg(**changes):
        fields = {**good, **changes}
        return json.dumps({k: v for k, v in fields.items()
                           if v is not _DROP})

    def signed(text):
        return ke.body(text, sign(text))

    return {
        "not JSON": b"this is not json",
        "not UTF-8": b'{"msg": "\xff\xfe"}',
        "an array": b"[]",
        "msg missing": b'{"signature": ""}',
        "msg an object": json.dumps({"msg": good}).encode(),
        "msg a number": b'{"msg": 5}',
        "msg not JSON": signed("not json at all"),
        "msg a JSON array": signed("[1, 2]"),
        "agent_id missing": signed(msg(agent_id=_DROP)),
        "agent_id a number": signed(msg(agent_id=42)),
        "agent_id with a slash": signed(msg(agent_id="../etc")),
        "type missing": signed(msg(type=_DROP)),
        "type unknown": signed(msg(type="hello")),
        "event_id a list": signed(msg(event_id=["x"])),
        "context an object": signed(msg(context={"a": 1})),
        "a key twice": signed(msg()[:-1] + ', "agent_id": "other"}'),
        "signature a number": json.dumps(
            {"msg": msg(), "signature": 7}).encode(),
        "deeply nested body": ('{"msg": ' + deep + "}").encode(),
        "deeply nested msg": signed(deep),
        "a lone surrogate in msg": b'{"msg": "\\ud800"}',
    }


_DROP = object()


@pytest.mark.parametrize("signed", [False, True],
                         ids=["no certificate", "with certificate"])
def test_malformed_bodies_are_4xx_and_change_nothing(events, hosts, pki, key,
                                                     signed, caplog):
    # max_body_bytes large enough for the deep nesting to reach the parser
    service = events(signed=signed, max_body_bytes=400_000)
    before = hosts.generations()
    with caplog.at_level(logging.INFO):
        for why, data in _malformed(hosts.names[0], key.sign).items():
            r = post(service, data, pki)
            assert r.status_code == 400, why
    assert hosts.generations() == before
    assert not audit_events(caplog)


def test_oversize_and_unframed_bodies(events, hosts, key, pki):
    service = events(max_body_bytes=2048)
    before = hosts.generations()
    big = ke.signed_body(key, hosts.names[0],
                         meta_data=json.dumps({"pad": "x" * 4000}))
    assert post(service, big, pki).status_code == 413
    # chunked (no Content-Length): refused, not read
    r = requests.post(service.url, data=iter([big]), timeout=15,
                      verify=str(pki["ca"].cert_path))
    assert r.status_code == 411
    assert hosts.generations() == before
    # a GET is not an event
    assert requests.get(service.url, timeout=15,
                        verify=str(pki["ca"].cert_path)).status_code == 405


def test_unknown_agent_is_answered_200_and_changes_nothing(events, hosts, key,
                                                           pki, caplog):
    service = events(rule="map-only")
    before = hosts.generations()
    with caplog.at_level(logging.INFO):
        r = post(service, ke.signed_body(key, hosts.names[0]), pki)
    assert (r.status_code, r.json()) == (200, {"result": "unknown-agent"})
    assert hosts.generations() == before
    assert not audit_events(caplog)
    assert "maps to no host" in caplog.text


def test_placement_down_is_5xx_and_the_retry_succeeds(events, hosts, key,
                                                      pki, placement):
    adapter = adapter_for(f"http://127.0.0.1:{free_port()}")  # nobody
    service = events(api=PlacementAPI(adapter))
    victim = hosts.names[2]
    data = ke.signed_body(key, victim)
    r = post(service, data, pki)
    assert r.status_code == 503
    assert r.json() == {"result": "not done, retry"}
    assert hosts.carrying() == set(hosts.names)
    adapter.endpoint_override = placement.url  # Placement is back
    r = post(service, data, pki)  # the verifier's retry
    assert r.status_code == 200
    assert hosts.carrying() == set(hosts.names) - {victim}


#: "EVENTS/HOSTS" of the burst. The default run keeps it small (every
#: event is a TLS handshake and a Placement request on a shared 2-core
#: machine); TRUSTPOOL_EVENT_BURST=1000/100 is the full figure.
BURST = os.environ.get("TRUSTPOOL_EVENT_BURST", "200/100")


def test_a_burst_of_events_removes_each_trait_once(events, placement, key,
                                                   pki, caplog):
    count, host_count = (int(n) for n in BURST.split("/"))
    made = Hosts(placement, host_count)
    try:
        service = events()
        before = made.generations()
        bodies = [ke.signed_body(key, name) for name in made.names] * (
            count // host_count)
        # events for one host arrive together, in any order
        random.Random(16).shuffle(bodies)

        def send(data):
            return post(service, data, pki).status_code

        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="trustpool.audit"), \
                concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(send, bodies))
        took = time.monotonic() - started
        assert statuses == [200] * len(bodies)
        after = made.state()
        assert {n for n, (traits, _) in after.items() if TRAIT in traits} \
            == set()
        assert all(KEEP in traits for traits, _ in after.values())
        # one write per host: no lost update, no write after the first
        assert {n: after[n][1] - before[n] for n in made.names} == \
            dict.fromkeys(made.names, 1)
        removed = [e["host"] for e in audit_events(caplog)
                   if e["trait_removed"]]
        assert sorted(removed) == made.names
        print(f"\n{len(bodies)} signed events for {host_count} hosts, 16 "
              f"clients: {took:.1f} s ({len(bodies) / took:.0f} events/s)")
    finally:
        made.delete()


def test_a_pass_never_readds_the_trait_from_an_attestation_before_it(
        conf, events, placement, key, pki, oat_server):
    """The invariant (trustpool/revocation/ledger.py): no trait from an
    attestation that started before the host's last revocation event."""
    made = Hosts(placement, 2)
    try:
        victim, bystander = made.names
        for uuid in made.uuids.values():  # both start untraited
            placement.put_traits(uuid, {"COMPUTE_NODE", KEEP})
        service = events()
        point_at(conf, oat_server, pki["ca"].cert_path)
        oat_server.levels = dict.fromkeys(made.names, "trusted")
        asked, release = threading.Event(), threading.Event()
        normal = oat_server.responder

        def slow(request):
            asked.set()
            release.wait(20)
            return normal(request)

        oat_server.responder = slow
        api = PlacementAPI(adapter_for(placement.url))
        client = make_client(conf)
        results = []
        one_pass = service.sync_pass()
        worker = threading.Thread(target=lambda: results.append(
            one_pass(conf, api, client)))
        worker.start()
        assert asked.wait(20)
        # the attestation is in flight and still says trusted; the event
        # comes now
        r = post(service, ke.signed_body(key, victim), pki)
        assert (r.status_code, r.json()) == (200, {"result": "no-trait"})
        release.set()
        worker.join(30)
        [result] = results
        assert made.carrying() == {bystander}
        assert (result.added, result.withheld) == (1, 1)
        assert "withheld after a revocation event" in result.summary()
        # trust comes back only from a pass whose attestation started
        # after the event
        oat_server.responder = normal
        result = one_pass(conf, api, client)
        assert made.carrying() == {victim, bystander}
        client.close()
    finally:
        made.delete()


def test_a_slow_client_is_cut_at_the_deadline(events, hosts, key, pki):
    service = events(request_timeout=1.0, max_connections=2)
    context = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    raw = socket.create_connection(("127.0.0.1", service.listener.port))
    slow = context.wrap_socket(raw, server_hostname="127.0.0.1")
    slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
    started = time.monotonic()
    slow.settimeout(20)
    try:
        while slow.recv(1024):  # drip nothing more; wait to be cut
            pass
    except (ConnectionError, ssl.SSLError):
        pass
    cut_after = time.monotonic() - started
    slow.close()
    assert cut_after < 15  # cut by the listener, not by our own timeout
    # and the listener still serves
    r = post(service, ke.signed_body(key, hosts.names[0]), pki)
    assert r.status_code == 200


def test_client_certificates_when_client_ca_file_is_set(events, hosts, key,
                                                        pki):
    service = events(client_ca_file=str(pki["ca"].cert_path))
    data = ke.signed_body(key, hosts.names[0])
    with pytest.raises(requests.exceptions.RequestException):
        post(service, data, pki)
    rogue = pki["rogue_client"]
    with pytest.raises(requests.exceptions.RequestException):
        post(service, data, pki, cert=(str(rogue.cert), str(rogue.key)))
    assert hosts.carrying() == set(hosts.names)
    client = pki["client"]
    r = post(service, data, pki, cert=(str(client.cert), str(client.key)))
    assert r.status_code == 200
    assert hosts.carrying() == set(hosts.names) - {hosts.names[0]}


def test_sync_traits_interval_runs_passes_and_events_in_one_service(
        tmp_path, placement, key, pki, oat_server):
    """The command itself: ``trustpool sync-traits --interval`` with
    ``[trustpool_events]`` set, in a process of its own."""
    made = Hosts(placement, 2)
    process = None
    try:
        victim, bystander = made.names
        for uuid in made.uuids.values():
            placement.put_traits(uuid, {"COMPUTE_NODE", KEEP})
        oat_server.levels = dict.fromkeys(made.names, "trusted")
        port = free_port()
        config = tmp_path / "nova.conf"
        config.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_api_url = {oat_server.api_url}
attestation_server_ca_file = {pki["ca"].cert_path}
[placement]
auth_type = admin_token
endpoint = {placement.url}
token = admin
endpoint_override = {placement.url}
[trustpool_events]
listen = 127.0.0.1:{port}
cert_file = {pki["server"].cert}
key_file = {pki["server"].key}
revocation_cert_file = {key.cert_path}
""")
        log = open(tmp_path / "service.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
             str(config), "sync-traits", "--interval", "0.5"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def wait_for(condition, what):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if condition():
                    return
                assert process.poll() is None, (
                    tmp_path / "service.log").read_text()[-3000:]
                time.sleep(0.1)
            raise AssertionError(f"not within 60 s: {what}")

        wait_for(lambda: made.carrying() == {victim, bystander},
                 "the first pass")
        # the verifier's verdict: untrusted from now on, and an event
        oat_server.levels[victim] = "untrusted"
        r = requests.post(f"https://127.0.0.1:{port}/",
                          data=ke.signed_body(key, victim), timeout=15,
                          verify=str(pki["ca"].cert_path))
        # a pass (every 0.5 s) that asked after the verdict changed may
        # have removed the trait first: then the event finds none
        assert r.status_code == 200
        assert r.json()["result"] in ("removed", "no-trait"), r.json()
        assert made.carrying() == {bystander}
        polls = oat_server.polls()
        wait_for(lambda: oat_server.polls() >= polls + 2, "two more passes")
        assert made.carrying() == {bystander}
        text = (tmp_path / "service.log").read_text()
        assert "trustpool.trust_lost" in text
        assert "listening for Keylime revocation events" in text
        assert not leakcheck.scan_text(text)  # no key, no certificate
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        made.delete()
