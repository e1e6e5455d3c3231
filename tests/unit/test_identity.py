"""Host identity in one place (issue 19): how a compute host is named to
the attestation service, from each record a component holds for it."""

from __future__ import annotations

import threading
import types

import pytest
import requests_mock
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session

from trustpool import conf as tp_conf
from trustpool import drift
from trustpool.attestation import HostReport, TrustLevel
from trustpool.attestation.identity import ComputeNode, HostIdentity
from trustpool.cmd import checks
from trustpool.openstack import compute

HOST, NODE, UUID = "cmp-1", "cmp-1.hv.example", "9b1c0e52-0000-4000-8000-1"


def records(host=HOST, node=NODE):
    """The same compute host as each component sees it."""
    return {
        "host_state": types.SimpleNamespace(host=host, nodename=node),
        "server": {"OS-EXT-SRV-ATTR:host": host,
                   "OS-EXT-SRV-ATTR:hypervisor_hostname": node},
        "node": ComputeNode(UUID, node, host),
    }


@pytest.mark.parametrize(("attribute", "expected"),
                         [("nodename", NODE), ("host", HOST)])
def test_one_name_from_every_kind_of_record(conf, attribute, expected):
    conf.set_override("host_attribute", attribute, tp_conf.GROUP)
    identity = tp_conf.host_identity(conf)
    assert identity == HostIdentity(attribute)
    seen = records()
    assert identity.name_of_host_state(seen["host_state"]) == expected
    assert identity.name_of_server(seen["server"]) == expected
    assert identity.name_of_node(seen["node"]) == expected
    assert identity.index([seen["node"]]).name_of(UUID) == expected
    assert identity.needs_service_host is (attribute == "host")
    assert identity.option == ("[trusted_computing] host_attribute = "
                               f"{attribute}")


@pytest.mark.parametrize("attribute", ["nodename", "host"])
def test_a_missing_name_is_none_never_the_other_name(attribute):
    """The old drift report fell back to the service host when a server
    had no hypervisor host name: a host trusted under one name stood in
    for another. No record kind falls back now."""
    identity = HostIdentity(attribute)
    blank = records(host="", node=None)
    assert identity.name_of_host_state(blank["host_state"]) is None
    assert identity.name_of_server(blank["server"]) is None
    assert identity.name_of_node(blank["node"]) is None
    assert identity.name_of_server({}) is None
    assert identity.name_of_host_state(object()) is None
    odd = types.SimpleNamespace(host=7, nodename=["x"])
    assert identity.name_of_host_state(odd) is None



class _StrLike(str):
    pass


@pytest.mark.parametrize("attribute", ["nodename", "host"])
def test_names_of_many_host_states_as_of_each(attribute):
    # the filter's batch call: the same rule as one at a time, in order
    identity = HostIdentity(attribute)
    states = [records(host=HOST, node=NODE)["host_state"],
              records(host="", node=None)["host_state"],
              types.SimpleNamespace(host=7, nodename=["x"]),
              records(host=_StrLike("s"), node=_StrLike("n"))["host_state"],
              records(host="h2", node="n2")["host_state"]]
    for batch in (states, states[:1] + states[4:], states + [object()], []):
        assert identity.names_of_host_states(batch) == [
            identity.name_of_host_state(s) for s in batch]


def test_the_drift_report_has_no_fallback_either(conf):
    class Client:
        asked: list = []

        def attest_uncached(self, names):
            self.asked.append(list(names))
            return {n: HostReport(n, TrustLevel.TRUSTED, "stand-in", "ok")
                    for n in names}

    class Nova:
        def servers(self):
            yield {"id": "i-1", "OS-EXT-SRV-ATTR:host": HOST,
                   "flavor": {"extra_specs": {
                       "trust:trusted_host": "trusted"}}}

    report = drift.drift(conf, Nova(), Client(), False)
    # trusted under its service host name, but the filter asks about the
    # hypervisor host name, which the Nova API did not give
    assert Client.asked == []
    [row] = report["drift"]
    assert (row["host"], row["attested_name"], row["level"]) == (
        HOST, None, "unknown")
    assert "host_attribute = nodename" in row["reason"]


def test_an_unknown_attribute_is_refused():
    with pytest.raises(ValueError, match="'uuid' is not one of"):
        HostIdentity("uuid")


def test_the_index_maps_both_ways():
    """A sync needs uuid → name; an event receiver name → nodes. With
    ``host``, one service host can stand for many nodes (Ironic)."""
    nodes = [ComputeNode("u1", "n1", "svc-a"), ComputeNode("u2", "n2",
                                                           "svc-a"),
             ComputeNode("u3", "n3", "svc-b"), ComputeNode("u4", "n4", None)]
    by_host = HostIdentity("host").index(nodes)
    assert [by_host.name_of(u) for u in ("u1", "u2", "u3", "u4")] == [
        "svc-a", "svc-a", "svc-b", None]
    assert [n.uuid for n in by_host.nodes_named("svc-a")] == ["u1", "u2"]
    assert by_host.nodes_named("n1") == []
    assert by_host.names() == ["svc-a", "svc-b"]
    assert by_host.name_of("nope") is None and "nope" not in by_host
    assert by_host.node("u4") == nodes[3] and "u4" in by_host
    by_node = HostIdentity().index(nodes)
    assert by_node.names() == ["n1", "n2", "n3", "n4"]
    assert by_node.nodes_named("n4") == [nodes[3]]


def test_a_node_listed_twice_under_two_names_has_none():
    index = HostIdentity("host").index([
        ComputeNode("u1", "n1", "svc-a"), ComputeNode("u1", "n1", "svc-b"),
        ComputeNode("u1", "n1", "svc-a"), ComputeNode("u2", "n2", "svc-c"),
        ComputeNode("u2", "n2", "svc-c")])
    assert index.name_of("u1") is None
    assert index.nodes_named("svc-a") == index.nodes_named("svc-b") == []
    assert index.name_of("u2") == "svc-c"


# -- the Nova side of the mapping ------------------------------------------

NOVA = "http://nova.test/v2.1"


def hypervisor(i, host=None):
    return {"id": f"uuid-{i}", "hypervisor_hostname": f"node-{i}.hv",
            "state": "up", "status": "enabled",
            "service": {"id": f"svc-uuid-{i}", "host": host or f"svc-{i}",
                        "disabled_reason": None}}


def compute_api():
    return compute.ComputeAPI(ks_adapter.Adapter(
        ks_session.Session(), endpoint_override=NOVA))


def test_compute_nodes_pages_through_the_hypervisors(monkeypatch):
    monkeypatch.setattr(compute, "_PAGE", 2)
    pages = [[hypervisor(0), hypervisor(1)], [hypervisor(2)]]
    with requests_mock.Mocker() as m:
        m.get(f"{NOVA}/os-hypervisors/detail?limit=2",
              json={"hypervisors": pages[0]}, complete_qs=True)
        m.get(f"{NOVA}/os-hypervisors/detail?limit=2&marker=uuid-1",
              json={"hypervisors": pages[1]}, complete_qs=True)
        nodes = compute_api().compute_nodes()
        assert all(r.headers["OpenStack-API-Version"] == "compute 2.53"
                   for r in m.request_history)
    assert nodes == [ComputeNode(f"uuid-{i}", f"node-{i}.hv", f"svc-{i}")
                     for i in range(3)]


@pytest.mark.parametrize("body", [
    {"hypervisors": [hypervisor(0), {**hypervisor(1), "service": {}}]},
    {"hypervisors": [{**hypervisor(0), "id": None}]},
    {"hypervisors": [{**hypervisor(0), "hypervisor_hostname": ""}]},
    {"hypervisors": ["uuid-0"]},
    {"hypervisors": {"uuid-0": hypervisor(0)}},
    [],
], ids=["no-service-host", "no-id", "empty-name", "not-a-record",
        "not-a-list", "not-an-object"])
def test_half_an_answer_is_no_answer(body):
    with requests_mock.Mocker() as m:
        m.get(f"{NOVA}/os-hypervisors/detail", json=body)
        with pytest.raises(compute.NovaAPIError,
                           match="/os-hypervisors/detail"):
            compute_api().compute_nodes()


def test_an_unavailable_nova_says_why():
    with pytest.raises(compute.NovaAPIError, match="no credentials"):
        compute.UnavailableComputeAPI("no credentials").compute_nodes()


# -- check-config ------------------------------------------------------------


@pytest.mark.parametrize(("attribute", "sync", "auth", "warned"), [
    ("host", True, None, True),
    ("host", True, "password", False),
    ("host", False, None, False),
    ("nodename", True, None, False),
])
def test_check_config_warns_when_the_sync_cannot_map(conf, attribute, sync,
                                                     auth, warned):
    tp_conf.register_trait_opts(conf)
    compute.register_opts(conf)
    conf.set_override("attestation_server", "oat.test", tp_conf.GROUP)
    conf.set_override("host_attribute", attribute, tp_conf.GROUP)
    conf.set_override("sync_enabled", sync, tp_conf.TRAIT_GROUP)
    conf.set_override("auth_type", auth, compute.GROUP)
    found = [f for f in checks.check(conf)
             if f[1] == "[trusted_computing] host_attribute"]
    if not warned:
        assert found == []
        return
    [(severity, _, message)] = found
    assert severity == "warning"
    assert "[trustpool_nova] has no credentials" in message
    assert "every provider loses the trait" in message


def test_the_sync_loop_hands_the_nova_api_to_every_pass(conf):
    import threading

    from trustpool import trait_sync

    seen = []
    stop = threading.Event()

    def one_pass(*args):
        seen.append(args)
        stop.set()

    nova = compute.UnavailableComputeAPI("stand-in")
    trait_sync.run_forever(conf, "placement", "client", 0, stop,
                           pass_=one_pass, compute=nova)
    assert seen == [(conf, "placement", "client", nova)]


def test_a_nova_that_ignores_the_marker_is_no_answer(monkeypatch):
    """A full page answered again for every marker (a proxy that drops the
    query, a hostile endpoint) must not page forever: the revocation
    receiver asks with a host's ledger lock held."""
    monkeypatch.setattr(compute, "_PAGE", 2)
    with requests_mock.Mocker() as m:
        m.get(f"{NOVA}/os-hypervisors/detail",
              json={"hypervisors": [hypervisor(0), hypervisor(1)]})
        result = []
        worker = threading.Thread(target=lambda: result.append(
            _outcome(compute_api().compute_nodes)), daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "paging never ended"
    [outcome] = result
    assert isinstance(outcome, compute.NovaAPIError), outcome
    assert "/os-hypervisors/detail" in str(outcome)


def _outcome(call):
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return exc


def test_a_servers_list_that_ignores_the_marker_ends(monkeypatch):
    monkeypatch.setattr(compute, "_PAGE", 2)
    page = [{"id": f"s-{i}", "OS-EXT-SRV-ATTR:host": "svc-0"}
            for i in range(2)]
    with requests_mock.Mocker() as m:
        m.get(f"{NOVA}/servers/detail", json={"servers": page})
        result = []
        worker = threading.Thread(target=lambda: result.append(
            _outcome(lambda: list(compute_api().servers()))), daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "paging never ended"
    [outcome] = result
    assert isinstance(outcome, compute.NovaAPIError), outcome
