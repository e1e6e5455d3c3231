"""Keylime revocation events without a network: reading and verifying one
body, the host map both ways, the ledger that orders events and passes,
the options, and what start-up says."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustpool.attestation.backends.keylime import AgentIds
from trustpool.exceptions import ConfigurationError
from trustpool.revocation import Ledger, options
from trustpool.revocation import start as start_events
from trustpool.revocation.handler import RevocationHandler
from trustpool.revocation.message import (
    Notification,
    Refused,
    SignatureCheck,
    read,
)

from tests.support import keylime_events as ke
from tests.support.placement_server import _free_port as free_port


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return ke.RevocationKey(tmp_path_factory.mktemp("revocation"))


@pytest.fixture(scope="module")
def check(key):
    return SignatureCheck(str(key.cert_path))


# -- reading one body ---------------------------------------------------------

def test_a_signed_revocation_is_read(key, check):
    note = read(ke.signed_body(key, "node-1"), check)
    assert note == Notification(
        kind="revocation", agent_id="node-1",
        event_id="pcr_validation.invalid_pcr_15", severity="emergency",
        context={"context": "PCR value is not in allowlist",
                 "got": "ab" * 32, "expected": ["0" * 64]},
        verifier_time=note.verifier_time, signed=True)
    assert note.verifier_time


def test_without_a_certificate_signatures_are_not_looked_at(key):
    msg = ke.message("node-1", kind="comm_error")
    for signature in ("", None, "garbage", key.sign(msg)):
        note = read(ke.body(msg, signature), None)
        assert (note.kind, note.agent_id, note.signed) == (
            "comm_error", "node-1", False)


def test_refusals_name_a_status_and_never_quote_the_body(key, check):
    secretish = "do-not-echo-me-" * 4
    msg = ke.message("node-1", context=secretish)
    cases = {
        ke.body(msg, ""): 401,
        ke.body(msg, None): 401,
        ke.body(msg, "none"): 401,
        ke.body(msg, "!!!"): 403,
        ke.body(msg, key.sign(msg + " ")): 403,
        ke.body(msg + " ", key.sign(msg)): 403,
        b"[" + secretish.encode() + b"]": 400,
        json.dumps({"msg": {"context": secretish}}).encode(): 400,
    }
    for data, status in cases.items():
        with pytest.raises(Refused) as caught:
            read(data, check)
        assert caught.value.status == status
        assert secretish not in str(caught.value)


def test_context_that_is_not_json_is_kept_as_cut_text(key, check):
    note = read(ke.signed_body(key, "n", context="x\x00" * 5000), check)
    assert isinstance(note.context, str) and len(note.context) < 4200
    assert "\x00" not in note.context


def test_a_certificate_without_an_rsa_key_is_refused(tmp_path, pki):
    # trustme's leaf keys are not RSA
    with pytest.raises(ConfigurationError, match="RSA"):
        SignatureCheck(str(pki["server"].cert))
    (tmp_path / "junk.crt").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="not a PEM X.509"):
        SignatureCheck(str(tmp_path / "junk.crt"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        SignatureCheck(str(tmp_path / "missing.crt"))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=10), children, max_size=4), max_leaves=12)


@st.composite
def _bodies(draw, key):
    """Mutations of a real event: fields changed or dropped, msg and
    signature replaced, bytes flipped."""
    fields = json.loads(ke.message(draw(st.sampled_from(["n1", "n2"]))))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3)):
        if draw(st.booleans()):
            fields.pop(name, None)
        else:
            fields[name] = draw(_json)
    msg = json.dumps(fields)
    signature = draw(st.sampled_from(["good", "other", "none", "random"]))
    sig = {"good": key.sign(msg), "other": key.sign(msg + "x"),
           "none": ""}.get(signature) or draw(st.text(max_size=40))
    outer: object = {"msg": msg, "signature": sig}
    if draw(st.integers(0, 9)) == 0:
        outer = draw(_json)
    data = json.dumps(outer).encode()
    if draw(st.integers(0, 9)) == 0 and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:]
    return data


class _RecordingPlacement:
    """Placement as the handler sees it, remembering every write."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, bool]] = []

    def ensure_trait(self, trait):
        pass

    def providers(self, required, name=None):
        return [{"uuid": f"uuid-{name}", "name": name,
                 "parent_provider_uuid": None}]

    def set_trait(self, uuid, trait, present):
        self.writes.append((uuid, trait, present))
        return True


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_only_a_correctly_signed_revocation_changes_placement(data, key,
                                                              check, conf):
    """Whatever the body: ``read`` refuses it with a 4xx or returns a
    notification whose msg the key signed; the handler then only ever
    removes, and only from the mapped host."""
    body = data.draw(_bodies(key))
    placement = _RecordingPlacement()
    handler = RevocationHandler(conf, placement, Ledger(), AgentIds(conf),
                                "CUSTOM_T")
    try:
        note = read(body, check)
    except Refused as refused:
        assert 400 <= refused.status < 500
        return
    outer = json.loads(body)
    # checked here with cryptography itself, not with the code under test
    key.key.public_key().verify(
        base64.b64decode(outer["signature"]), outer["msg"].encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                    salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256())
    handler.handle(note)
    assert placement.writes == [(f"uuid-{note.agent_id}", "CUSTOM_T",
                                 False)]


# -- the host map -----------------------------------------------------------

def test_agent_ids_map_back_to_hosts(conf):
    AgentIds(conf)
    conf.set_override("agent_ids", {"h1": "A", "h2": "A", "h3": "B",
                                    "B": "C"}, "keylime")
    ids = AgentIds(conf)
    # and a host literally named A, by the rule
    assert ids.hosts("A") == ["A", "h1", "h2"]
    # host B is mapped to C: agent B is h3's, not host B's
    assert ids.hosts("B") == ["h3"]
    assert ids.hosts("C") == ["B", "C"]
    assert ids.hosts("plain") == ["plain"]  # rule: the id is the host
    conf.set_override("agent_id_rule", "map-only", "keylime")
    ids = AgentIds(conf)
    assert ids.hosts("plain") == []
    assert ids.hosts("A") == ["h1", "h2"]


# -- the ledger ---------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_the_ledger_refuses_adds_from_attestations_before_the_event():
    ledger = Ledger(_Clock())
    before = ledger.attestation_started()
    with ledger.revoking("h1"):
        pass
    after = ledger.attestation_started()
    with ledger.adding("h1", before) as allowed:
        assert not allowed
    with ledger.adding("h2", before) as allowed:
        assert allowed
    with ledger.adding("h1", after) as allowed:
        assert allowed
    with ledger.adding("h1", None) as allowed:
        assert not allowed  # no time, no proof


def test_an_add_in_progress_finishes_before_the_removal_starts():
    """Either order ends without the trait: the removal waits for an add
    that holds the host's lock, and removes after it."""
    ledger = Ledger()
    trait = {"h1"}
    started = ledger.attestation_started()
    in_add = threading.Event()
    go = threading.Event()

    def add():
        with ledger.adding("h1", started) as allowed:
            in_add.set()
            go.wait(5)
            if allowed:
                trait.add("h1")

    def revoke():
        with ledger.revoking("h1"):
            trait.discard("h1")

    adder = threading.Thread(target=add)
    adder.start()
    in_add.wait(5)
    remover = threading.Thread(target=revoke)
    remover.start()
    go.set()
    adder.join(5)
    remover.join(5)
    assert trait == set()


def test_the_ledger_forgets_what_no_pass_can_need():
    ledger = Ledger(_Clock())
    with ledger.revoking("old"):
        pass
    ledger.attestation_started()
    assert ledger.last_revoked("old") is not None
    ledger.attestation_started()  # the pass before now started after it
    assert ledger.last_revoked("old") is None


# -- options and start-up ---------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("127.0.0.1:8992", ("127.0.0.1", 8992)),
    ("[::1]:8992", ("::1", 8992)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("", None),
])
def test_listen_address(conf, value, expected):
    options.register_opts(conf)
    conf.set_override("listen", value, options.GROUP)
    assert options.listen_address(conf) == expected


@pytest.mark.parametrize("value", ["8992", "localhost:8992", "1.2.3.4:0",
                                   "1.2.3.4:99999", "1.2.3.4:x", "::1:80"])
def test_a_bad_listen_address_names_the_option(conf, value):
    options.register_opts(conf)
    conf.set_override("listen", value, options.GROUP)
    with pytest.raises(ConfigurationError,
                       match=r"\[trustpool_events\] listen"):
        options.listen_address(conf)


def test_tls_is_required_unless_turned_off_by_name(conf):
    options.register_opts(conf)
    conf.set_override("listen", f"127.0.0.1:{free_port()}", options.GROUP)
    with pytest.raises(ConfigurationError, match="cert_file: must be set"):
        start_events(conf, placement=None)


def test_no_listener_without_listen(conf):
    assert start_events(conf, placement=None) is None


def test_unsigned_events_are_accepted_with_a_warning(conf, pki, caplog):
    options.register_opts(conf)
    for name, value in {"listen": f"127.0.0.1:{free_port()}",
                        "cert_file": str(pki["server"].cert),
                        "key_file": str(pki["server"].key)}.items():
        conf.set_override(name, value, options.GROUP)
    with caplog.at_level(logging.WARNING):
        service = start_events(conf, placement=None)
    try:
        assert service is not None
        assert service.url.startswith("https://127.0.0.1:")
        assert "accepted UNSIGNED" in caplog.text
    finally:
        service.stop()


def test_a_bad_key_file_names_the_option_not_the_key(conf, pki, tmp_path):
    options.register_opts(conf)
    wrong = pki["client"].key  # a key, but not the certificate's
    for name, value in {"listen": f"127.0.0.1:{free_port()}",
                        "cert_file": str(pki["server"].cert),
                        "key_file": str(wrong)}.items():
        conf.set_override(name, value, options.GROUP)
    with pytest.raises(ConfigurationError) as caught:
        start_events(conf, placement=None)
    assert "[trustpool_events] cert_file" in str(caught.value)
    assert pki["client"].key_pem.decode().splitlines()[1] not in str(
        caught.value)


# -- instances on a host that lost trust ------------------------------------

class _Compute:
    """The one Nova call the instance list makes, answered from a list."""

    def __init__(self, servers=None, fail=False):
        self._servers = servers or []
        self._fail = fail
        self.asked = threading.Event()

    def servers(self):
        self.asked.set()
        if self._fail:
            from trustpool.openstack.compute import NovaAPIError
            raise NovaAPIError("Nova API GET /servers/detail: 503")
        return iter(self._servers)


def _server(uuid, host, trusted=True):
    specs = {"trust:trusted_host": "trusted"} if trusted else {}
    return {"id": uuid, "name": uuid, "tenant_id": "p",
            "OS-EXT-SRV-ATTR:host": host,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": host,
            "flavor": {"extra_specs": specs}}


def _events(caplog, name):
    return [json.loads(r.getMessage()) for r in caplog.records
            if r.name == "trustpool.audit"
            and json.loads(r.getMessage())["event"] == name]


def test_the_instances_of_trusted_flavors_there_are_listed(conf, key, check,
                                                          caplog):
    compute = _Compute([_server("i-1", "n1"), _server("i-2", "n1", False),
                        _server("i-3", "n2")])
    placement = _RecordingPlacement()
    handler = RevocationHandler(conf, placement, Ledger(), AgentIds(conf),
                                "CUSTOM_T", compute)
    with caplog.at_level(logging.INFO):
        assert handler.handle(read(ke.signed_body(key, "n1"), check)) == (
            "removed")
        handler._nova.join(10)
    [event] = _events(caplog, "trustpool.trust_lost_instances")
    assert event["host"] == "n1"
    assert event["event_id"] == "pcr_validation.invalid_pcr_15"
    assert [i["instance"] for i in event["instances"]] == ["i-1"]
    handler.close()


def test_a_nova_failure_costs_only_the_list(conf, key, check, caplog):
    placement = _RecordingPlacement()
    handler = RevocationHandler(conf, placement, Ledger(), AgentIds(conf),
                                "CUSTOM_T", _Compute(fail=True))
    with caplog.at_level(logging.INFO):
        assert handler.handle(read(ke.signed_body(key, "n1"), check)) == (
            "removed")
        handler._nova.join(10)
    assert placement.writes == [("uuid-n1", "CUSTOM_T", False)]
    assert _events(caplog, "trustpool.trust_lost")
    assert not _events(caplog, "trustpool.trust_lost_instances")
    assert "could not list the instances" in caplog.text
    assert "NovaAPIError" in caplog.text
    handler.close()


def test_plain_http_only_by_name_and_with_a_warning(conf, key, caplog):
    options.register_opts(conf)
    for name, value in {"listen": f"127.0.0.1:{free_port()}",
                        "allow_plain_http": True,
                        "revocation_cert_file": str(key.cert_path)}.items():
        conf.set_override(name, value, options.GROUP)
    with caplog.at_level(logging.WARNING):
        service = start_events(conf, placement=None)
    try:
        assert service.url.startswith("http://127.0.0.1:")
        assert "travel in plain text" in caplog.text
        assert "UNSIGNED" not in caplog.text
    finally:
        service.stop()


def test_check_config_reports_the_event_listener(conf, pki):
    from trustpool.cmd import checks

    options.register_opts(conf)
    conf.set_override("attestation_server", "oat.example.org",
                      "trusted_computing")
    assert not [f for f in checks.check(conf) if "events" in f[1]]
    conf.set_override("listen", "127.0.0.1:8992", options.GROUP)
    assert ("error", "[trustpool_events] cert_file") in [
        f[:2] for f in checks.check(conf)]
    conf.set_override("cert_file", str(pki["server"].cert), options.GROUP)
    conf.set_override("key_file", str(pki["server"].key), options.GROUP)
    assert [f[:2] for f in checks.check(conf) if "events" in f[1]] == [
        ("warning", "[trustpool_events] revocation_cert_file")]


def test_connections_beyond_max_connections_are_closed(conf, pki):
    options.register_opts(conf)
    for name, value in {"listen": f"127.0.0.1:{free_port()}",
                        "cert_file": str(pki["server"].cert),
                        "key_file": str(pki["server"].key),
                        "max_connections": 1,
                        "request_timeout": 20.0}.items():
        conf.set_override(name, value, options.GROUP)
    service = start_events(conf, placement=None)
    context = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    try:
        holder = context.wrap_socket(socket.create_connection(
            ("127.0.0.1", service.listener.port)),
            server_hostname="127.0.0.1")
        holder.sendall(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(service.url, data=b"{}", timeout=15,
                          verify=str(pki["ca"].cert_path))
        holder.close()
        # the slot is free again: a bad body gets its 400
        deadline = time.monotonic() + 15
        while True:
            try:
                r = requests.post(service.url, data=b"{}", timeout=15,
                                  verify=str(pki["ca"].cert_path))
                break
            except requests.exceptions.ConnectionError:
                assert time.monotonic() < deadline
        assert r.status_code == 400
    finally:
        service.stop()


class _Nodes:
    """The Nova API's compute nodes, for host_attribute = host."""

    def __init__(self, nodes=(), fail=False):
        self.nodes, self.fail = list(nodes), fail

    def compute_nodes(self):
        if self.fail:
            raise RuntimeError("Nova API down")
        return self.nodes

    def servers(self):
        return []


class _Carriers(_RecordingPlacement):
    """Placement whose carriers of the trait are named by hypervisor."""

    def __init__(self, carriers):
        super().__init__()
        self.carriers = carriers

    def providers(self, required, name=None):
        return [p for p in self.carriers if name is None or p["name"] == name]


def test_an_event_follows_host_attribute_to_the_service_hosts_nodes(
        conf, key, check):
    """With host_attribute = host the agent map names a service host; its
    compute nodes' providers (named by hypervisor, found through Nova) lose
    the trait, and no provider of another service host does."""
    from trustpool.attestation.identity import ComputeNode
    conf.set_override("host_attribute", "host", "trusted_computing")
    carriers = [{"uuid": u, "name": n, "parent_provider_uuid": None}
                for u, n in (("u1", "svc1.hv"), ("u2", "svc1-b.hv"),
                             ("u3", "svc2.hv"))]
    nodes = _Nodes([ComputeNode("u1", "svc1.hv", "svc1"),
                    ComputeNode("u2", "svc1-b.hv", "svc1"),
                    ComputeNode("u3", "svc2.hv", "svc2")])
    placement = _Carriers(carriers)
    handler = RevocationHandler(conf, placement, Ledger(), AgentIds(conf),
                                "CUSTOM_T", nodes)
    assert handler.handle(read(ke.signed_body(key, "svc1"), check)) == (
        "removed")
    assert sorted(placement.writes) == [("u1", "CUSTOM_T", False),
                                        ("u2", "CUSTOM_T", False)]
    handler.close()


def test_a_node_nova_lists_under_two_service_hosts_loses_the_trait(
        conf, key, check):
    """A hypervisors answer that lists one uuid twice, under the event's
    service host and under another, makes the node's name ambiguous; an
    event about either host must still take the trait away from it (a
    removal needs no certainty), never answer 'no-trait' and leave it."""
    from trustpool.attestation.identity import ComputeNode
    conf.set_override("host_attribute", "host", "trusted_computing")
    placement = _Carriers([{"uuid": "u1", "name": "svc1.hv",
                            "parent_provider_uuid": None}])
    nodes = _Nodes([ComputeNode("u1", "svc1.hv", "svc1"),
                    ComputeNode("u1", "svc1.hv", "svc2")])
    handler = RevocationHandler(conf, placement, Ledger(), AgentIds(conf),
                                "CUSTOM_T", nodes)
    assert handler.handle(read(ke.signed_body(key, "svc1"), check)) == (
        "removed")
    assert placement.writes == [("u1", "CUSTOM_T", False)]
    handler.close()


@pytest.mark.parametrize("nodes", [None, _Nodes(fail=True)])
def test_an_event_by_service_host_without_nova_is_never_acknowledged(
        conf, key, check, nodes):
    """No way to find the providers: the handler raises (the verifier gets
    a 5xx and retries), it never answers as if nothing carried the trait."""
    conf.set_override("host_attribute", "host", "trusted_computing")
    placement = _Carriers([{"uuid": "u1", "name": "svc1.hv",
                            "parent_provider_uuid": None}])
    handler = RevocationHandler(conf, placement, Ledger(), AgentIds(conf),
                                "CUSTOM_T", nodes)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any type is a 5xx
        handler.handle(read(ke.signed_body(key, "svc1"), check))
    assert placement.writes == []
    handler.close()


def test_events_by_service_host_need_nova_credentials_at_start_up(conf):
    from trustpool.exceptions import ConfigurationError
    from trustpool.revocation import service
    options.register_opts(conf)
    conf.set_override("host_attribute", "host", "trusted_computing")
    conf.set_override("listen", "127.0.0.1:9", options.GROUP)  # never bound
    conf.set_override("allow_plain_http", True, options.GROUP)
    with pytest.raises(ConfigurationError) as err:
        service.start(conf, _RecordingPlacement())
    assert err.value.option == "host_attribute"
    assert "[trustpool_nova]" in str(err.value)


class _CountingPlacement(_RecordingPlacement):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.ensured = 0
        self.fail = fail

    def ensure_trait(self, trait):
        self.ensured += 1
        if self.fail:
            self.fail = False
            raise ConnectionError("Placement is down")


@pytest.mark.parametrize("down_at_start", [False, True],
                         ids=["up", "down-at-start"])
def test_the_trait_is_made_at_start_up_not_by_the_first_event(
        conf, key, check, down_at_start, caplog):
    """The first event's answer waits on no trait creation when Placement
    was up at start-up; when it was down, the first event makes it."""
    from trustpool.revocation import service
    options.register_opts(conf)
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf.set_override("listen", f"127.0.0.1:{port}", options.GROUP)
    conf.set_override("allow_plain_http", True, options.GROUP)
    placement = _CountingPlacement(fail=down_at_start)
    with caplog.at_level(logging.WARNING):
        events = service.start(conf, placement)
    try:
        assert placement.ensured == 1
        assert any("at start-up" in r.getMessage()
                   for r in caplog.records) is down_at_start
        events.handler.handle(read(ke.signed_body(key, "n1"), check))
        assert placement.ensured == (2 if down_at_start else 1)
        assert placement.writes == [("uuid-n1", "CUSTOM_TRUSTPOOL_TRUSTED",
                                     False)]
    finally:
        events.stop()


def test_a_replayed_signed_message_never_quarantines_again(conf, key,
                                                           check):
    """One captured signed revocation must not quarantine a host again
    and again (after each release): quarantine is told of a signed
    message once; a replay still removes the trait (always safe), and a
    new message (another event time) counts again."""
    told = []
    placement = _RecordingPlacement()
    handler = RevocationHandler(
        conf, placement, Ledger(), AgentIds(conf), "CUSTOM_T",
        on_revoked=lambda host, event_id, signed, kind: told.append(
            (host, signed)))
    first = ke.signed_body(key, "n1", event_time="Tue Dec  1 10:00:00 2026")
    handler.handle(read(first, check))
    handler.handle(read(first, check))  # the same bytes again: a replay
    handler.handle(read(ke.signed_body(
        key, "n1", event_time="Tue Dec  1 10:05:00 2026"), check))
    assert told == [("n1", True), ("n1", False), ("n1", True)]
    assert len(placement.writes) == 3  # every one removed the trait
    handler.close()


def test_the_trust_lost_event_is_one_the_compliance_report_reads(
        conf, key, check, caplog):
    """One schema (trustpool.events) between the receiver that writes the
    event and ``trustpool report`` that reads it."""
    from trustpool import events
    handler = RevocationHandler(conf, _RecordingPlacement(), Ledger(),
                                AgentIds(conf), "CUSTOM_T")
    with caplog.at_level(logging.INFO):
        handler.handle(read(ke.signed_body(key, "n1"), check))
    [line] = [r.getMessage() for r in caplog.records
              if r.name == "trustpool.audit"]
    parsed = events.parse_line(line)
    assert isinstance(parsed, events.TrustLost)
    assert (parsed.host, parsed.agent_id, parsed.trait_removed) == (
        "n1", "n1", True)
    assert parsed.event_id == "pcr_validation.invalid_pcr_15"
    assert parsed.source == "keylime-revocation" and parsed.event_time
    handler.close()


def test_a_placement_that_never_answers_releases_the_hosts_lock(
        conf, key, check, monkeypatch):
    """A Placement that accepts the connection and never answers: the
    event is not acknowledged (the handler raises, the verifier gets a
    5xx), and the host's lock is free again for the next event and pass.
    keystoneauth1 has no timeout of its own; trustpool gives its groups
    one unless the operator set it."""
    from trustpool.openstack import placement as placement_api
    from trustpool.openstack import session
    monkeypatch.setattr(session, "DEFAULT_TIMEOUT", 1.0)
    silent = socket.create_server(("127.0.0.1", 0))
    held = []
    acceptor = threading.Thread(
        target=lambda: held.append(silent.accept()), daemon=True)
    acceptor.start()
    placement_api.register_opts(conf)
    conf.set_override("auth_type", "none", "placement")
    conf.set_override(
        "endpoint_override",
        f"http://127.0.0.1:{silent.getsockname()[1]}", "placement")
    assert conf.placement.timeout == 1.0
    api = placement_api.PlacementAPI(placement_api.adapter_from_conf(conf))
    ledger = Ledger()
    handler = RevocationHandler(conf, api, ledger, AgentIds(conf),
                                "CUSTOM_T")
    outcome = []

    def handle():
        try:
            outcome.append(handler.handle(
                read(ke.signed_body(key, "node-1"), check)))
        except Exception as exc:  # noqa: BLE001 - the caller answers 5xx
            outcome.append(exc)

    worker = threading.Thread(target=handle, daemon=True)
    worker.start()
    worker.join(30)
    try:
        assert not worker.is_alive(), "the handler waits for ever"
        assert isinstance(outcome[0], Exception), outcome
        with ledger.adding("node-1", 0.0):   # the lock is free
            pass
    finally:
        handler.close()
        silent.close()
        for connection, _ in held:
            connection.close()


def test_an_operators_timeout_is_kept(conf):
    from trustpool.openstack import placement as placement_api
    placement_api.register_opts(conf)
    conf.set_override("timeout", 5.0, "placement")
    placement_api.register_opts(conf)
    assert conf.placement.timeout == 5.0
