"""What the revocation listener tells its observer, and how the service's
metrics count it: the fixed words, the verifier's time, and a real
listener on 127.0.0.1 (TLS from the test PKI, events signed as Keylime
signs them) in front of a Placement double, told about every kind of
request and connection exactly once."""

from __future__ import annotations

import calendar
import json
import logging
import socket
import ssl
import threading
import time

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trustpool.attestation.backends.keylime import AgentIds
from trustpool.metrics import service as metrics_service
from trustpool.metrics.service import EVENT_METRICS, ServiceMetrics
from trustpool.revocation import observer as obs
from trustpool.revocation import options
from trustpool.revocation import start as start_events

from tests.support import keylime_events as ke
from tests.support.placement_server import _free_port as free_port


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return ke.RevocationKey(tmp_path_factory.mktemp("revocation"))


@pytest.fixture(scope="module")
def rogue_key(tmp_path_factory):
    return ke.RevocationKey(tmp_path_factory.mktemp("rogue"), "Rogue")


# -- the words and the times -------------------------------------------------

def test_both_packages_use_the_same_words():
    # siblings that may not import each other: the metrics pre-create
    # their labels from a list of their own
    assert metrics_service.REVOCATION_OUTCOMES == obs.OUTCOMES
    assert metrics_service.REVOCATION_REFUSALS == obs.REFUSALS


def test_refusals_by_status_and_outcomes_by_word():
    assert {s: obs.refusal_of(s) for s in (400, 401, 403, 405, 411, 413,
                                           414, 431, 500, 501, 503, 505)} \
        == {400: "malformed", 401: "unsigned", 403: "bad_signature",
            405: "method", 411: "malformed", 413: "too_large",
            414: "malformed", 431: "malformed", 500: "other",
            501: "method", 503: "other", 505: "other"}
    assert [obs.outcome_of(w) for w in ("removed", "no-trait",
                                        "unknown-agent", "what")] == [
        "removed", "no_trait", "unknown_agent", "failed"]


def test_the_verifiers_asctime_is_its_local_time():
    now = int(time.time())
    # time.asctime(), as Keylime writes it: local time, no zone
    assert obs.verifier_timestamp(time.asctime(time.localtime(now))) == now
    assert obs.verifier_timestamp("Tue Dec  1 18:29:59 2026") == time.mktime(
        (2026, 12, 1, 18, 29, 59, 0, 0, -1))
    utc = calendar.timegm((2026, 12, 1, 18, 29, 59, 0, 0, 0))
    assert obs.verifier_timestamp("2026-12-01T18:29:59+01:00") == utc - 3600
    assert obs.verifier_timestamp("2026-12-01T18:29:59Z") == utc
    for bad in (None, "", "yesterday", "Xyz Dec  1 18:29:59 2026",
                "Tue Dec 41 18:29:59 2026", "Tue Dec  1 18:29:59 99999"):
        assert obs.verifier_timestamp(bad) is None, bad


def test_latency_from_the_verifiers_time():
    assert obs.latency(None, 100.0) is None
    assert obs.latency(90.0, 100.0) == 10.0
    # asctime keeps whole seconds; a clock a little ahead reads as 0
    assert obs.latency(100.5, 100.0) == 0.0
    # further ahead, the figure would be fiction
    assert obs.latency(105.0, 100.0) is None


# -- the metrics -------------------------------------------------------------

def scrape(m: ServiceMetrics) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(
            generate_latest(m.registry).decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_no_revocation_metrics_without_the_listener():
    got = scrape(ServiceMetrics())
    assert not [k for k in got if k[0].startswith("trustpool_revocation")]


def test_every_label_from_zero_and_counts_as_told():
    m = ServiceMetrics()
    r = m.revocations()
    assert m.revocations() is r  # registered once
    got = scrape(m)
    assert {dict(k[1])["outcome"]: v for k, v in got.items()
            if k[0] == "trustpool_revocation_events_total"} == dict.fromkeys(
        obs.OUTCOMES, 0)
    assert {dict(k[1])["reason"]: v for k, v in got.items()
            if k[0] == "trustpool_revocation_events_refused_total"} == \
        dict.fromkeys(obs.REFUSALS, 0)
    assert got[("trustpool_revocation_last_event_timestamp_seconds", ())] \
        == 0
    r.revocation_event("removed", 1000.0, 0.02, 0.7)
    r.revocation_event("removed", 999.0, 0.03, None)  # answered later
    r.revocation_event("a word from a newer listener", 998.0, 0.01, None)
    r.revocation_refused("bad_signature")
    r.revocation_refused("a word from a newer listener")
    got = scrape(m)

    def one(name, **labels):
        return got[(name, tuple(sorted(labels.items())))]

    assert one("trustpool_revocation_events_total", outcome="removed") == 2
    assert one("trustpool_revocation_events_total", outcome="failed") == 1
    assert one("trustpool_revocation_events_refused_total",
               reason="bad_signature") == 1
    assert one("trustpool_revocation_events_refused_total",
               reason="other") == 1
    assert one("trustpool_revocation_latency_seconds_count") == 1
    assert one("trustpool_revocation_latency_seconds_bucket", le="0.5") == 0
    assert one("trustpool_revocation_latency_seconds_bucket", le="1.0") == 1
    assert one("trustpool_revocation_handling_duration_seconds_count") == 3
    assert one("trustpool_revocation_handling_duration_seconds_sum") == \
        pytest.approx(0.06)
    # the newest receipt, though an older one was answered after it
    assert one("trustpool_revocation_last_event_timestamp_seconds") == 1000
    families = {n for n, _ in got if n.startswith("trustpool_revocation")}
    assert {n.removesuffix("_bucket").removesuffix("_count")
            .removesuffix("_sum") for n in families} == set(EVENT_METRICS)


# -- the listener tells ------------------------------------------------------

class _Placement:
    """Placement as the handler sees it: hosts carrying the trait lose it
    once; ``down`` makes every call fail."""

    def __init__(self, carriers) -> None:
        self.carriers = set(carriers)
        self.down = False

    def ensure_trait(self, trait):
        if self.down:
            raise ConnectionError("Placement down")

    def providers(self, required, name=None):
        if self.down:
            raise ConnectionError("Placement down")
        return [{"uuid": f"uuid-{name}", "name": name,
                 "parent_provider_uuid": None}] if name in self.carriers \
            else []

    def set_trait(self, uuid, trait, present):
        self.carriers.discard(uuid.removeprefix("uuid-"))
        return True


class _Told:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def revocation_event(self, outcome, received_at, seconds, latency):
        with self.lock:
            self.calls.append(("event", outcome, received_at, seconds,
                               latency))

    def revocation_refused(self, reason):
        with self.lock:
            self.calls.append(("refused", reason))

    def take(self, count, timeout=10.0):
        """The next ``count`` calls (the listener tells after it
        answered, so a client may see the answer first)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.calls) >= count:
                    taken, self.calls = self.calls[:count], self.calls[count:]
                    return taken
            assert time.monotonic() < deadline, self.calls
            time.sleep(0.01)


@pytest.fixture
def listening(conf, pki, key):
    options.register_opts(conf)
    AgentIds(conf)  # registers [keylime]
    conf.set_override("agent_id_rule", "map-only", "keylime")
    conf.set_override("agent_ids", {"n1": "agent-1", "n2": "agent-2"},
                      "keylime")
    for name, value in {"listen": f"127.0.0.1:{free_port()}",
                        "cert_file": str(pki["server"].cert),
                        "key_file": str(pki["server"].key),
                        "revocation_cert_file": str(key.cert_path),
                        "max_body_bytes": 4096,
                        "request_timeout": 2.0}.items():
        conf.set_override(name, value, options.GROUP)
    placement = _Placement({"n1", "n2"})
    service = start_events(conf, placement=placement)
    told = _Told()
    service.observe(told)
    yield service, placement, told
    service.stop()


def _post(service, pki, data, **kwargs):
    return requests.post(service.url, data=data, timeout=15,
                         verify=str(pki["ca"].cert_path), **kwargs)


def test_every_answer_is_told_once_in_fixed_words(listening, pki, key,
                                                  rogue_key):
    service, placement, told = listening
    ago = time.time() - 5
    body = ke.signed_body(key, "agent-1",
                          event_time=time.asctime(time.localtime(ago)))
    before = time.time()
    assert _post(service, pki, body).json() == {"result": "removed"}
    [(what, outcome, received_at, seconds, latency)] = told.take(1)
    assert (what, outcome) == ("event", "removed")
    assert before <= received_at <= time.time()
    assert 0 <= seconds < 15
    # whole seconds: at least the five, at most one more (and the test)
    assert 5 <= latency < 20
    assert placement.carriers == {"n2"}
    # the retry: nothing removed now, so no latency
    assert _post(service, pki, body).json() == {"result": "no-trait"}
    [(what, outcome, _, _, latency)] = told.take(1)
    assert (what, outcome, latency) == ("event", "no_trait", None)
    assert _post(service, pki, ke.signed_body(key, "stranger")).json() == {
        "result": "unknown-agent"}
    assert told.take(1)[0][:2] == ("event", "unknown_agent")
    # a time the service cannot read: the event counts, the latency not
    r = _post(service, pki, ke.signed_body(key, "agent-2",
                                           event_time="sometime"))
    assert r.json() == {"result": "removed"}
    assert [c[1::3] for c in told.take(1)] == [("removed", None)]
    placement.down = True
    assert _post(service, pki, ke.signed_body(key, "agent-1")
                 ).status_code == 503
    assert told.take(1)[0][:2] == ("event", "failed")

    msg = ke.message("agent-1")
    refusals = {
        "unsigned": lambda: _post(service, pki, ke.body(msg, "")),
        "bad_signature": lambda: _post(service, pki,
                                       ke.body(msg, rogue_key.sign(msg))),
        "malformed": lambda: _post(service, pki, b"not json"),
        "too_large": lambda: _post(service, pki, ke.body(
            ke.message("agent-1", meta_data="x" * 5000), "")),
        "method": lambda: requests.get(service.url, timeout=15,
                                       verify=str(pki["ca"].cert_path)),
    }
    for reason, send in refusals.items():
        send()
        assert told.take(1) == [("refused", reason)], reason
    # unframed (chunked): malformed (refused before the body is read, so
    # the client may see the connection close instead); a method
    # http.server does not know
    try:
        _post(service, pki, iter([b"{}"]))
    except requests.exceptions.RequestException:
        pass
    requests.options(service.url, timeout=15,
                     verify=str(pki["ca"].cert_path))
    assert told.take(2) == [("refused", "malformed"), ("refused", "method")]


def test_connections_turned_away_before_an_answer(listening, pki):
    service, _, told = listening
    port = service.listener.port
    # plain HTTP to the TLS port: the handshake fails
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"http://127.0.0.1:{port}/", data=b"{}", timeout=15)
    assert told.take(1) == [("refused", "other")]
    # a request begun and never finished, cut at request_timeout: what
    # arrived is no request
    context = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                             server_hostname="127.0.0.1") as half:
        half.sendall(b"POST / HTTP/1.1\r\nContent-Le")
        assert told.take(1, timeout=20) == [("refused", "malformed")]
    # a connection that sends nothing is no event
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                             server_hostname="127.0.0.1"):
        pass
    _post(service, pki, b"[]")
    assert told.take(1) == [("refused", "malformed")]
    time.sleep(0.3)
    assert told.calls == []


def test_an_observer_that_raises_changes_no_answer(listening, pki, key,
                                                   caplog):
    service, placement, _ = listening

    class Broken:
        def revocation_event(self, *args):
            raise RuntimeError("observer bug")

        def revocation_refused(self, *args):
            raise RuntimeError("observer bug")

    service.observe(Broken())
    with caplog.at_level(logging.DEBUG):
        r = _post(service, pki, ke.signed_body(key, "agent-1"))
        assert (r.status_code, r.json()) == (200, {"result": "removed"})
        assert placement.carriers == {"n2"}
        assert _post(service, pki, b"{").status_code == 400
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"http://127.0.0.1:{service.listener.port}/",
                          data=b"{}", timeout=15)
        time.sleep(0.3)  # the listener tells after it answered
    # nor does it show up as a failed connection in the log
    assert "RuntimeError" not in caplog.text
    service.observe(None)
    assert _post(service, pki, ke.signed_body(key, "agent-2")).json() == {
        "result": "removed"}


def test_the_words_told_are_the_only_label_values(listening, pki, key):
    """Nothing from a request becomes a label: a hostile agent id, event
    id and time reach the metrics as the fixed words only."""
    service, _, _ = listening
    m = ServiceMetrics()
    service.observe(m.revocations())
    _post(service, pki, ke.signed_body(
        key, "agent-1", event_id='x"} 1\ntrustpool_evil 1', event_time="\n"))
    _post(service, pki, json.dumps({"msg": 5, "signature": "evil-label"}
                                   ).encode())
    deadline = time.monotonic() + 10
    while True:
        text = generate_latest(m.registry).decode()
        got = scrape(m)
        if got[("trustpool_revocation_events_refused_total",
                (("reason", "malformed"),))] == 1:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert "evil" not in text
    assert got[("trustpool_revocation_events_total",
                (("outcome", "removed"),))] == 1
