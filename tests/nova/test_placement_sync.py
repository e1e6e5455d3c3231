"""``trustpool sync-traits`` against a real Placement service (gunicorn,
sqlite, noauth2) and a real HTTPS attestation server, both on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import threading
import time
import uuid as uuidlib

import pytest
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from trustpool import trait_sync
from trustpool.attestation import HostReport, TrustLevel
from trustpool.attestation.identity import ComputeNode
from trustpool.conf import make_client
from trustpool.exceptions import AttestationError
from trustpool.openstack.compute import NovaAPIError
from trustpool.openstack.placement import PlacementAPI

from tests.support.config import point_at
from tests.support.placement_server import PlacementServer
from tests.support.placement_server import _free_port as free_port

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    server = PlacementServer(tmp_path_factory.mktemp("placement")).start()
    yield server
    server.stop()


def adapter_for(url: str) -> ks_adapter.Adapter:
    return ks_adapter.Adapter(
        ks_session.Session(), endpoint_override=url,
        additional_headers={"X-Auth-Token": "admin"})


def api_for(server: PlacementServer) -> PlacementAPI:
    return PlacementAPI(adapter_for(server.url))


@pytest.fixture
def providers(placement):
    """Six compute node providers with an unrelated trait each."""
    names = [f"sync-{i}-{id(placement) % 1000}" for i in range(6)]
    made = {name: placement.create_provider(
        name, {"COMPUTE_NODE", "CUSTOM_KEEP_ME"}) for name in names}
    yield made
    for uuid in made.values():
        placement.session.delete(
            f"{placement.url}/resource_providers/{uuid}")


def sync_once(conf, placement, oat_server, pki):
    point_at(conf, oat_server, pki["ca"].cert_path)
    client = make_client(conf)
    return trait_sync.sync(conf, api_for(placement), client)


def carrying(placement, made):
    return {name for name, uuid in made.items()
            if TRAIT in placement.traits(uuid)[0]}


def test_sync_sets_flips_and_keeps_other_traits(conf, placement, providers,
                                                oat_server, pki):
    trait_sync.register_opts(conf)
    names = sorted(providers)
    oat_server.levels = {names[0]: "trusted", names[1]: "trusted",
                         names[2]: "trusted", names[3]: "untrusted",
                         names[4]: "unknown"}  # names[5]: not mentioned
    # a stale trait on an untrusted host must go
    placement.add_trait(providers[names[3]], TRAIT)
    result = sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == set(names[:3])
    assert (result.added, result.removed, result.errors) == (3, 1, 0)
    assert oat_server.polls() == 1  # one batch for every provider
    for uuid in providers.values():
        assert "CUSTOM_KEEP_ME" in placement.traits(uuid)[0]

    generations = {n: placement.traits(u)[1] for n, u in providers.items()}
    result = sync_once(conf, placement, oat_server, pki)
    assert (result.added, result.removed) == (0, 0)
    assert result.unchanged >= 6
    assert generations == {n: placement.traits(u)[1]
                           for n, u in providers.items()}  # no writes

    oat_server.levels[names[0]] = "untrusted"
    oat_server.levels[names[3]] = "trusted"
    result = sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == {names[1], names[2], names[3]}
    assert (result.added, result.removed) == (1, 1)


def test_attestation_failure_removes_the_trait_everywhere(
        conf, placement, providers, oat_server, pki):
    trait_sync.register_opts(conf)
    oat_server.levels = {name: "trusted" for name in providers}
    sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == set(providers)
    oat_server.stop()
    result = sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == set()
    assert result.attestation_failed
    assert "cannot reach" in result.summary()


def test_no_update_lost_to_a_concurrent_writer(conf, placement, oat_server,
                                               pki):
    """nova-compute keeps writing traits (bumping generations) while the
    sync runs: both sides' traits must survive."""
    trait_sync.register_opts(conf)
    conf.set_override("concurrency", 8, trait_sync.GROUP)
    made = {f"busy-{i}": placement.create_provider(
        f"busy-{i}", {"COMPUTE_NODE"}) for i in range(24)}
    oat_server.levels = {name: "trusted" for name in made}
    stop = threading.Event()
    written: list[tuple[str, str]] = []
    conflicts = [0]

    def writer():
        i = 0
        while not stop.is_set() and i < 400:
            name = f"busy-{i % len(made)}"
            trait = f"CUSTOM_WRITER_{i}"
            conflicts[0] += placement.add_trait(made[name], trait)
            written.append((name, trait))
            i += 1

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            result = sync_once(conf, placement, oat_server, pki)
            assert result.errors == 0
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert carrying(placement, made) == set(made)
    for name, trait in written:
        assert trait in placement.traits(made[name])[0], (name, trait)
    for uuid in made.values():
        placement.session.delete(
            f"{placement.url}/resource_providers/{uuid}")


def test_command_line(placement, providers, oat_server, pki, tmp_path):
    oat_server.levels = {name: "trusted" for name in providers}
    conf_path = tmp_path / "nova.conf"
    conf_path.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki['ca'].cert_path}

[placement]
auth_type = admin_token
endpoint = {placement.url}
token = admin
""")
    result = subprocess.run(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(conf_path), "sync-traits"], capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    # the answer alone on stdout: the per-provider log lines go to stderr
    assert result.stdout == ("sync-traits: 6 providers seen, 6 added, 0 "
                             "removed, 0 unchanged, 0 errors\n")
    assert "gains CUSTOM_TRUSTPOOL_TRUSTED" in result.stderr
    assert carrying(placement, providers) == set(providers)
    bad = conf_path.read_text().replace("[placement]", "[trustpool_traits]"
                                        "\ntrait = TRUSTED\n[placement]")
    conf_path.write_text(bad)
    result = subprocess.run(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(conf_path), "sync-traits"], capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 2
    assert "[trustpool_traits] trait: 'TRUSTED' is not a custom trait" in \
        result.stderr
    # a pass that fails (no attestation server listens) exits 2 with one
    # line saying why, after its summary
    conf_path.write_text(bad.replace("trait = TRUSTED\n", "").replace(
        "attestation_port = ", "attestation_port = 1\n#"))
    result = subprocess.run(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(conf_path), "sync-traits"], capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 2, result.stderr
    assert "sync-traits:" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith(
        "trustpool: sync-traits failed: attestation failed")


def test_trait_name_is_validated():
    conf = cfg.ConfigOpts()
    trait_sync.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("trait", "CUSTOM_lower", trait_sync.GROUP)
    with pytest.raises(ValueError, match="not a custom trait"):
        trait_sync.trait_name(conf)


def test_interval_mode_keeps_following_trust(conf, placement, providers,
                                             oat_server, pki):
    trait_sync.register_opts(conf)
    point_at(conf, oat_server, pki["ca"].cert_path)
    oat_server.levels = {name: "trusted" for name in providers}
    client = make_client(conf)
    stop = threading.Event()
    runner = threading.Thread(target=trait_sync.run_forever, args=(
        conf, api_for(placement), client, 0.2, stop))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while carrying(placement, providers) != set(providers):
            assert time.monotonic() < deadline, "never synced"
            time.sleep(0.2)
        flipped = sorted(providers)[0]
        oat_server.levels[flipped] = "untrusted"
        while flipped in carrying(placement, providers):
            assert time.monotonic() < deadline, "the flip was not synced"
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert carrying(placement, providers) == set(providers) - {flipped}


# -- the trait invariant (issue 14): every carrier, not only compute nodes --


class StandInClient:
    """The one call the sync makes, answered from a dict or by raising:
    exception types no HTTP server can make the real client raise."""

    def __init__(self, levels: dict[str, str] | None = None,
                 error: BaseException | None = None) -> None:
        self.levels = levels or {}
        self.error = error
        self.calls: list[list[str]] = []

    def attest_uncached(self, names):
        self.calls.append(list(names))
        if self.error is not None:
            raise self.error
        return {name: HostReport(name, TrustLevel(self.levels[name]),
                                 "stand-in", f"stand-in says "
                                 f"{self.levels[name]}")
                for name in names if name in self.levels}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


@pytest.fixture
def tree(placement):
    """A small cloud, every non-compute provider carrying the trait:

    - ``trusted``, ``untrusted``, ``unknown``: compute nodes (COMPUTE_NODE,
      VCPU inventory) in one aggregate; ``untrusted`` and ``unknown``
      carry the trait from an earlier time;
    - ``sharing``: a shared DISK_GB provider in that aggregate;
    - ``vgpu``: a nested VGPU child of ``untrusted``;
    - ``plain``: a provider without COMPUTE_NODE named like a host the
      attestation service trusts;
    - ``nested_compute``: a child of ``unknown`` that has COMPUTE_NODE and
      a trusted name (not a root: no compute node Nova made).
    """
    agg = str(uuidlib.uuid4())
    names = {key: unique(key) for key in (
        "trusted", "untrusted", "unknown", "sharing", "vgpu", "plain",
        "nested_compute")}
    made: dict[str, str] = {}
    for key in ("trusted", "untrusted", "unknown"):
        extra = {TRAIT} if key != "trusted" else set()
        made[key] = placement.create_provider(
            names[key], {"COMPUTE_NODE", "CUSTOM_KEEP_ME"} | extra)
        placement.set_inventory(made[key], {"VCPU": 8})
        placement.set_aggregates(made[key], [agg])
    made["sharing"] = placement.create_provider(
        names["sharing"], {"MISC_SHARES_VIA_AGGREGATE", TRAIT})
    placement.set_inventory(made["sharing"], {"DISK_GB": 1000})
    placement.set_aggregates(made["sharing"], [agg])
    made["vgpu"] = placement.create_provider(names["vgpu"], {TRAIT},
                                             parent=made["untrusted"])
    placement.set_inventory(made["vgpu"], {"VGPU": 4})
    made["plain"] = placement.create_provider(names["plain"], {TRAIT})
    made["nested_compute"] = placement.create_provider(
        names["nested_compute"], {"COMPUTE_NODE", TRAIT},
        parent=made["unknown"])
    levels = {names["trusted"]: "trusted", names["untrusted"]: "untrusted",
              names["unknown"]: "unknown", names["plain"]: "trusted",
              names["nested_compute"]: "trusted"}
    yield names, made, levels
    for key in ("trusted", "untrusted", "unknown", "sharing", "plain"):
        placement.delete_provider(made[key])


def sync_with(conf, placement, client):
    trait_sync.register_opts(conf)
    return trait_sync.sync(conf, api_for(placement), client)


def test_every_carrier_that_is_no_trusted_compute_node_loses_the_trait(
        conf, placement, tree, caplog):
    names, made, levels = tree
    assert placement.carriers(TRAIT) >= set(made.values()) - {
        made["trusted"]}
    caplog.set_level(logging.INFO, logger="trustpool")
    client = StandInClient(levels)
    result = sync_with(conf, placement, client)
    assert result.ok and result.failed is None, result
    # exactly the compute nodes attested trusted, Placement-wide
    assert placement.carriers(TRAIT) == {made["trusted"]}
    assert (result.added, result.removed, result.errors) == (1, 6, 0)
    # one attestation batch, only for root compute nodes
    assert len(client.calls) == 1
    assert set(client.calls[0]) >= {names["trusted"], names["untrusted"],
                                    names["unknown"]}
    assert names["plain"] not in client.calls[0]
    assert names["nested_compute"] not in client.calls[0]
    # the other traits stay where they were
    assert "MISC_SHARES_VIA_AGGREGATE" in placement.traits(
        made["sharing"])[0]
    assert "COMPUTE_NODE" in placement.traits(made["nested_compute"])[0]
    assert "CUSTOM_KEEP_ME" in placement.traits(made["untrusted"])[0]
    # one line per removal, saying which provider and why
    lines = {key: [r.getMessage() for r in caplog.records
                   if names[key] in r.getMessage() and "loses" in
                   r.getMessage()] for key in names}
    assert "not a compute node (no COMPUTE_NODE trait)" in lines["sharing"][0]
    assert "not a compute node (no COMPUTE_NODE trait)" in lines["plain"][0]
    assert f"nested provider under {made['untrusted']}" in lines["vgpu"][0]
    assert "nested provider under" in lines["nested_compute"][0]
    assert "level untrusted: stand-in says untrusted" in \
        lines["untrusted"][0]
    assert "level unknown: stand-in says unknown" in lines["unknown"][0]
    assert all(len(v) == 1 for k, v in lines.items() if k != "trusted")
    # and a second pass has nothing to do
    result = sync_with(conf, placement, client)
    assert (result.added, result.removed, result.errors) == (0, 0, 0)
    assert result.ok


def test_the_fail_open_was_real(conf, placement):
    """Why every carrier matters: with an unnumbered required trait,
    Placement offers untrusted compute nodes that carry nothing
    themselves, because a sharing disk provider in their aggregate or a
    nested VGPU child of theirs carries the trait. A sync that looked only
    at compute nodes left them offered; after this one they are not."""
    agg = str(uuidlib.uuid4())
    made: dict[str, str] = {}
    for key in ("good", "bad", "bad_gpu"):
        made[key] = placement.create_provider(unique(key), {"COMPUTE_NODE"})
        placement.set_inventory(made[key], {"VCPU": 8})
    for key in ("good", "bad"):
        placement.set_aggregates(made[key], [agg])
    made["disk"] = placement.create_provider(
        unique("disk"), {"MISC_SHARES_VIA_AGGREGATE", TRAIT})
    placement.set_inventory(made["disk"], {"DISK_GB": 1000})
    placement.set_aggregates(made["disk"], [agg])
    made["gpu"] = placement.create_provider(unique("gpu"), {TRAIT},
                                            parent=made["bad_gpu"])
    placement.set_inventory(made["gpu"], {"VGPU": 2})
    names = {key: placement.json(f"/resource_providers/{uuid}")["name"]
             for key, uuid in made.items()}
    try:
        shared = f"resources=VCPU:1,DISK_GB:1&required={TRAIT}"
        nested = f"resources=VCPU:1,VGPU:1&required={TRAIT}"
        for microversion in ("1.18", "1.36"):
            assert made["bad"] in placement.allocation_candidates(
                shared, microversion)
        assert made["bad_gpu"] in placement.allocation_candidates(nested)
        # neither untrusted node carries the trait itself
        assert placement.carriers(TRAIT) == {made["disk"], made["gpu"]}

        result = sync_with(conf, placement, StandInClient({
            names["good"]: "trusted", names["bad"]: "untrusted",
            names["bad_gpu"]: "untrusted"}))
        assert result.ok, result
        after = placement.allocation_candidates(shared)
        assert made["bad"] not in after
        assert made["bad_gpu"] not in placement.allocation_candidates(
            nested)
        # the trusted node is still offered, with the shared disk
        assert {made["good"], made["disk"]} <= after
        assert placement.carriers(TRAIT) == {made["good"]}
    finally:
        for key in ("good", "bad", "bad_gpu", "disk"):
            placement.delete_provider(made[key])


@pytest.mark.parametrize("error", [
    RuntimeError("a bug below the client"),
    RecursionError("maximum recursion depth exceeded"),
    OverflowError("date value out of range"),
    AttestationError("cannot reach the attestation service"),
    KeyError("trust_lvl"),
], ids=lambda e: type(e).__name__)
def test_any_attestation_failure_removes_the_trait_from_every_carrier(
        conf, placement, tree, error, caplog):
    names, made, levels = tree
    sync_with(conf, placement, StandInClient(levels))
    assert placement.carriers(TRAIT) == {made["trusted"]}
    # everything carries the trait again; then attestation breaks
    for uuid in made.values():
        placement.add_trait(uuid, TRAIT)
    result = sync_with(conf, placement, StandInClient(levels, error))
    assert placement.carriers(TRAIT) == set()
    assert not result.ok
    assert result.attestation_failed
    assert result.failed.startswith("attestation failed")
    assert str(error).strip("'") in result.summary()
    assert result.removed == len(made)
    warnings = [r for r in caplog.records if "attestation failed (" in
                r.getMessage()]
    assert len(warnings) == 1
    assert type(error).__name__ in warnings[0].getMessage()


class FlakyAdapter(ks_adapter.Adapter):
    """Raises a keystoneauth connection error for PUTs to one provider:
    what a connection reset in the middle of a pass looks like."""

    def __init__(self, failing: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.failing = failing

    def request(self, url, method, **kwargs):
        if method == "PUT" and self.failing in url:
            raise ks_exc.ConnectFailure("Connection reset by peer")
        return super().request(url, method, **kwargs)


def test_a_write_error_fails_the_pass_and_the_others_still_lose_it(
        conf, placement, tree):
    names, made, levels = tree
    api = PlacementAPI(FlakyAdapter(
        made["sharing"], session=ks_session.Session(),
        endpoint_override=placement.url,
        additional_headers={"X-Auth-Token": "admin"}))
    trait_sync.register_opts(conf)
    result = trait_sync.sync(conf, api, StandInClient(levels))
    assert not result.ok
    assert result.errors == 1
    assert "1 provider update(s) failed" in result.summary()
    # the one Placement refused keeps it; nobody else untrusted does
    assert placement.carriers(TRAIT) == {made["trusted"], made["sharing"]}
    assert result.removed == 5


def test_a_malformed_compute_listing_means_removal(conf, placement, tree):
    """A KeyError from a body that lacks a field (here: the provider
    records of the compute node listing lose their parent field) is one
    more failure: every carrier loses the trait, the pass says so."""
    names, made, levels = tree

    class Malformed(PlacementAPI):
        def providers(self, required):
            records = super().providers(required)
            if required == "COMPUTE_NODE":
                return [{k: v for k, v in r.items() if k != "uuid"}
                        for r in records]
            return records

    for uuid in made.values():
        placement.add_trait(uuid, TRAIT)
    trait_sync.register_opts(conf)
    result = trait_sync.sync(conf, Malformed(adapter_for(placement.url)),
                         StandInClient(levels))
    assert not result.ok
    assert "KeyError" in result.failed
    assert result.errors >= 1
    assert placement.carriers(TRAIT) == set()


def test_placement_unreachable_the_pass_fails_without_raising(conf):
    # a port where nothing listens
    adapter = adapter_for(f"http://127.0.0.1:{free_port()}")
    trait_sync.register_opts(conf)
    client = StandInClient({})
    result = trait_sync.sync(conf, PlacementAPI(adapter), client)
    assert not result.ok
    assert result.errors == 1
    assert "PlacementError" in result.failed
    assert "ConnectFailure" in result.failed
    assert client.calls == []  # nothing listed, nothing to attest


def test_placement_dies_in_the_middle_of_a_pass(conf, tmp_path):
    """gunicorn stops after the providers were listed (while the compute
    nodes are being attested): the pass reports failure and does not
    raise; once Placement is back, the next pass removes what this one
    could not."""
    server = PlacementServer(tmp_path / "dying").start()
    try:
        nodes = {name: server.create_provider(name, {"COMPUTE_NODE", TRAIT})
                 for name in (unique("dn") for _ in range(3))}
        sharing = server.create_provider(unique("ds"), {TRAIT})

        class Dying(StandInClient):
            def attest_uncached(self, names):
                server.stop()
                return super().attest_uncached(names)

        trusted = sorted(nodes)[0]
        trait_sync.register_opts(conf)
        result = trait_sync.sync(conf, api_for(server),
                             Dying({trusted: "trusted"}))
        assert not result.ok
        assert result.errors == 3  # 2 untrusted nodes + the sharing one
        assert result.removed == 0
        server.start()
        assert server.carriers(TRAIT) == set(nodes.values()) | {sharing}
        result = trait_sync.sync(conf, api_for(server),
                             StandInClient({trusted: "trusted"}))
        assert result.ok, result
        assert server.carriers(TRAIT) == {nodes[trusted]}
    finally:
        server.stop()


# -- the loop --------------------------------------------------------------


def test_run_forever_survives_a_raising_pass_and_keeps_its_interval(
        conf, placement, tree):
    """The first passes raise (as if sync itself had a bug); the loop goes
    on at its interval and the next real pass does its work."""
    names, made, levels = tree
    client = StandInClient(levels)
    starts: list[float] = []
    errors = [RecursionError("deep"), RuntimeError("bug"),
              KeyError("uuid")]

    def one_pass(*args):
        starts.append(time.monotonic())
        if errors:
            raise errors.pop(0)
        return trait_sync.sync(*args)

    trait_sync.register_opts(conf)
    stop = threading.Event()
    runner = threading.Thread(target=trait_sync.run_forever, args=(
        conf, api_for(placement), client, 0.3, stop), kwargs={
            "pass_": one_pass})
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while placement.carriers(TRAIT) != {made["trusted"]}:
            assert time.monotonic() < deadline, "never synced"
            time.sleep(0.05)
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert len(starts) >= 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # a raising pass takes no time: the loop waits out the interval
    assert min(gaps[:3]) >= 0.29, gaps


def test_run_forever_is_never_a_hot_loop(conf):
    starts: list[float] = []

    def failing(*args):
        starts.append(time.monotonic())
        raise RuntimeError("always")

    stop = threading.Event()
    runner = threading.Thread(target=trait_sync.run_forever, args=(
        conf, None, None, 0, stop), kwargs={"pass_": failing})
    runner.start()
    time.sleep(1.0)
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
    assert 5 <= len(starts) <= 12, len(starts)  # about every 0.1 s


def test_run_forever_stops_at_once_when_asked(conf):
    calls: list[float] = []
    stop = threading.Event()
    stop.set()
    trait_sync.run_forever(conf, None, None, 3600, stop,
                       pass_=lambda *a: calls.append(1))
    assert calls == []


# -- host_attribute = host (issue 19): providers named by hypervisor, the
# -- attestation service knowing service hosts --------------------------


class StandInNova:
    """The hypervisor list (``ComputeAPI.compute_nodes``) as Nova 34
    gives it: each node's uuid (its provider's), hypervisor host name (its
    provider's name) and service host; or an error."""

    def __init__(self, nodes=(), error=None):
        self.nodes = list(nodes)
        self.error = error
        self.calls = 0

    def compute_nodes(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.nodes)


@pytest.fixture
def named_apart(placement):
    """Four compute nodes whose providers are named by hypervisor host
    name, on three service hosts (``svc-b`` runs two nodes, as an Ironic
    service does); the attestation service knows service hosts only:
    ``svc-a`` untrusted (and carrying a stale trait), ``svc-b`` trusted,
    ``svc-c`` unknown."""
    tag = uuidlib.uuid4().hex[:6]
    layout = {"a1": "svc-a", "b1": "svc-b", "b2": "svc-b", "c1": "svc-c"}
    made, nodes = {}, []
    for node, host in layout.items():
        name = f"{node}-{tag}.hv.example"
        made[node] = placement.create_provider(name, {"COMPUTE_NODE"})
        placement.set_inventory(made[node], {"VCPU": 8})
        nodes.append(ComputeNode(made[node], name, f"{host}-{tag}"))
    placement.add_trait(made["a1"], TRAIT)
    levels = {f"svc-a-{tag}": "untrusted", f"svc-b-{tag}": "trusted",
              f"svc-c-{tag}": "unknown"}
    # the hypervisor names are trusted too, under the other setting: a
    # sync that asked about them would keep the trait on svc-a's node
    levels.update({n.hypervisor_hostname: "trusted" for n in nodes})
    yield made, nodes, levels
    for uuid in made.values():
        placement.delete_provider(uuid)


def test_host_attribute_host_names_providers_by_service_host(
        conf, placement, named_apart):
    made, nodes, levels = named_apart
    conf.set_override("host_attribute", "host", "trusted_computing")
    client = StandInClient(levels)
    nova = StandInNova(nodes)
    trait_sync.register_opts(conf)
    result = trait_sync.sync(conf, api_for(placement), client, nova)
    assert result.ok, result
    trusted = {made["b1"], made["b2"]}
    assert placement.carriers(TRAIT) & set(made.values()) == trusted
    # Placement now offers exactly the trusted nodes
    offered = placement.allocation_candidates(
        f"resources=VCPU:1&required={TRAIT}")
    assert offered & set(made.values()) == trusted
    # one batch, service hosts only, each once
    assert client.calls == [sorted({n.service_host for n in nodes})]
    assert nova.calls == 1

    # the default setting names them by hypervisor host name, as before
    conf.clear_override("host_attribute", "trusted_computing")
    nova.calls = 0
    result = trait_sync.sync(conf, api_for(placement), client, nova)
    assert result.ok, result
    assert placement.carriers(TRAIT) & set(made.values()) == set(
        made.values())
    assert nova.calls == 0  # Placement's names are enough
    assert client.calls[-1] == sorted(n.hypervisor_hostname for n in nodes)


@pytest.mark.parametrize("nova", [
    None,
    StandInNova(error=NovaAPIError("Nova API GET /os-hypervisors/detail: "
                                   "Unable to establish connection")),
    StandInNova(error=RecursionError("deep")),
], ids=["no-nova", "nova-down", "nova-bug"])
def test_host_attribute_host_without_the_mapping_removes_the_trait(
        conf, placement, named_apart, nova):
    made, nodes, levels = named_apart
    conf.set_override("host_attribute", "host", "trusted_computing")
    trait_sync.register_opts(conf)
    assert trait_sync.sync(conf, api_for(placement), StandInClient(levels),
                           StandInNova(nodes)).ok
    client = StandInClient(levels)
    result = trait_sync.sync(conf, api_for(placement), client, nova)
    assert not result.ok
    assert result.failed.startswith(
        "[trusted_computing] host_attribute = host: compute node providers "
        "are named by service host through the Nova API, which failed: ")
    assert placement.carriers(TRAIT) & set(made.values()) == set()
    assert result.removed == 2
    assert client.calls == []  # nothing could be named: nothing asked


def test_host_attribute_host_a_provider_nova_does_not_list(
        conf, placement, named_apart):
    made, nodes, levels = named_apart
    conf.set_override("host_attribute", "host", "trusted_computing")
    trait_sync.register_opts(conf)
    assert trait_sync.sync(conf, api_for(placement), StandInClient(levels),
                           StandInNova(nodes)).ok
    listed = [n for n in nodes if n.uuid != made["b2"]]
    result = trait_sync.sync(conf, api_for(placement), StandInClient(levels),
                             StandInNova(listed))
    assert not result.ok
    assert "1 compute node provider(s) have no hypervisor in the Nova " \
        f"API, so no service host: {nodes[2].hypervisor_hostname} " \
        f"({made['b2']})" in result.failed
    # b1, on the same service host and listed, keeps it
    assert placement.carriers(TRAIT) & set(made.values()) == {made["b1"]}


def test_host_attribute_host_a_uuid_nova_lists_under_two_hosts(
        conf, placement, named_apart, caplog):
    """A hypervisor uuid that Nova lists under two service hosts has no
    name: its provider loses the trait, and the log says it was listed
    twice (it said Nova listed no hypervisor with this uuid)."""
    made, nodes, levels = named_apart
    conf.set_override("host_attribute", "host", "trusted_computing")
    trait_sync.register_opts(conf)
    assert trait_sync.sync(conf, api_for(placement), StandInClient(levels),
                           StandInNova(nodes)).ok
    b2 = nodes[2]
    twice = [*nodes, ComputeNode(b2.uuid, b2.hypervisor_hostname,
                                 nodes[0].service_host)]
    caplog.set_level(logging.INFO, logger="trustpool")
    result = trait_sync.sync(conf, api_for(placement), StandInClient(levels),
                             StandInNova(twice))
    assert not result.ok
    assert placement.carriers(TRAIT) & set(made.values()) == {made["b1"]}
    about_b2 = [r.getMessage() for r in caplog.records
                if made["b2"] in r.getMessage()
                or b2.hypervisor_hostname in r.getMessage()]
    assert any("lists this uuid with two different names" in m
               for m in about_b2), about_b2
    assert not any("lists no hypervisor with this uuid" in m
                   for m in about_b2), about_b2


def test_host_attribute_host_command_line_without_nova_credentials(
        placement, named_apart, oat_server, pki, tmp_path):
    """The command as an operator runs it: ``host_attribute = host`` and
    no ``[trustpool_nova]``: every trait goes, exit 2, one line naming
    host_attribute and the missing credentials (it was exit 0 with every
    trait gone)."""
    made, nodes, levels = named_apart
    oat_server.levels = levels
    for uuid in made.values():
        placement.add_trait(uuid, TRAIT)
    conf_path = tmp_path / "nova.conf"
    conf_path.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki['ca'].cert_path}
host_attribute = host

[placement]
auth_type = admin_token
endpoint = {placement.url}
token = admin
""")
    result = subprocess.run(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(conf_path), "sync-traits"], capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "trustpool: sync-traits failed: [trusted_computing] host_attribute "
        "= host: compute node providers are named by service host through "
        "the Nova API, which failed: [trustpool_nova] auth_type: not set: "
        "no credentials for the Nova API")
    assert placement.carriers(TRAIT) & set(made.values()) == set()
    assert oat_server.polls() == 0


# -- one name per host for every component (issue 19) ----------------------


class _Spec:
    """A request for a trusted flavor, as much of a RequestSpec as the
    filter reads."""

    class flavor:  # noqa: N801 - an attribute, as on a RequestSpec
        name = "trusted"
        extra_specs = {"trust:trusted_host": "trusted"}

    def __contains__(self, key):
        return False


class _OneServer:
    """The compute API's server list: one instance of a trusted flavor."""

    def __init__(self, host, node):
        self.server = {
            "id": "11111111-2222-3333-4444-555555555555", "name": "vm",
            "tenant_id": "p", "OS-EXT-SRV-ATTR:host": host,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": node,
            "flavor": {"extra_specs": {"trust:trusted_host": "trusted"}}}

    def servers(self):
        yield self.server


@pytest.mark.parametrize("attribute", ["nodename", "host"])
def test_every_component_asks_about_the_same_name(
        conf, placement, oat_server, pki, tmp_path, attribute, capsys):
    """One compute host (service host ``svc-…``, hypervisor ``….hv``):
    the filter, ``trustpool status``, ``sync-traits`` and the drift report
    ask the attestation service about the same name for it, the one
    ``host_attribute`` picks, and all see it trusted. The other name is
    attested untrusted, so a component asking about it would disagree."""
    from nova.tests.unit.scheduler.fakes import FakeHostState

    from trustpool import drift
    from trustpool.cmd import main as cli
    from trustpool.filter import TrustedFilter

    tag = uuidlib.uuid4().hex[:6]
    host, node = f"svc-{tag}", f"node-{tag}.hv"
    name, other = (node, host) if attribute == "nodename" else (host, node)
    oat_server.levels = {name: "trusted", other: "untrusted"}
    uuid = placement.create_provider(node, {"COMPUTE_NODE"})
    nova = StandInNova([ComputeNode(uuid, node, host)])
    point_at(conf, oat_server, pki["ca"].cert_path,
             host_attribute=attribute)
    trait_sync.register_opts(conf)
    asked = []

    def last_asked():
        asked.append(oat_server.requests[-1].body["hosts"])
        return asked[-1]

    try:
        # the filter
        passed = TrustedFilter(conf).filter_all(
            [FakeHostState(host, node, {})], _Spec())
        assert [h.host for h in passed] == [host]
        assert last_asked() == [name]

        # sync-traits
        result = trait_sync.sync(conf, api_for(placement), make_client(conf),
                                 nova)
        assert result.ok, result
        assert TRAIT in placement.traits(uuid)[0]
        assert last_asked() == [name]

        # the drift report
        report = drift.drift(conf, _OneServer(host, node), make_client(conf),
                             False)
        assert (report["checked_hosts"], report["drift"]) == ([name], [])
        assert last_asked() == [name]

        # trustpool status, given the name the filter logs and sends
        conf_path = tmp_path / "nova.conf"
        conf_path.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki['ca'].cert_path}
host_attribute = {attribute}
""")
        capsys.readouterr()
        code = cli.main(["--config-file", str(conf_path), "status", "--format",
                         "json", name])
        row, = json.loads(capsys.readouterr().out)["hosts"]
        assert (code, row["host"], row["level"]) == (0, name, "trusted")
        assert last_asked() == [name]
    finally:
        placement.delete_provider(uuid)
    assert asked == [[name]] * 4
