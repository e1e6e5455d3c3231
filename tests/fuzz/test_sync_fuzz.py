"""The trait invariant for every world hypothesis makes up.

One real Placement service (openstack-placement under gunicorn, sqlite,
noauth2) serves the whole module. Each example builds a fresh set of
providers there, with unique names:

- root compute nodes (``COMPUTE_NODE``), each with up to two nested
  children: a plain child (a VGPU inventory provider, say) or a child that
  itself has ``COMPUTE_NODE``;
- sharing providers (``MISC_SHARES_VIA_AGGREGATE``);
- plain providers without ``COMPUTE_NODE``;

any of which may carry ``CUSTOM_TRUSTPOOL_TRUSTED`` at the start. The
attestation side is a stand-in (the sync calls ``attest_uncached`` and
nothing else): per name an answer (trusted, untrusted, unknown, missing,
or a look-alike: a trusted report for another name, the bare string
``"trusted"``, a report whose level is a plain string), and answers for
names it was not asked about; or the call fails (AttestationError,
RuntimeError, RecursionError, OverflowError, a ``None`` or a list for an
answer). Some providers' trait writes fail in Placement's client
(keystoneauth ConnectFailure, RuntimeError, RecursionError).

Then one pass, and for every example:

1. it never raises;
2. the carriers are exactly what the oracle says: the root compute nodes
   whose answer was a well-formed ``trusted`` report for exactly their
   name (none when attestation failed), except that a provider whose write
   was made to fail keeps the state it had. So: after a pass that
   succeeded, carriers == trusted compute nodes (Placement-wide, not only
   this example's providers); after a failed one, no provider has gained
   trust it was not proven to have (remove, never keep);
3. the pass says whether it succeeded, correctly: ``ok`` exactly when
   attestation worked and no needed write failed;
4. every removal is logged once with the provider and a reason; an
   attestation failure is logged once, with its exception type.

``TRUSTPOOL_HYPOTHESIS_PROFILE``: ``default`` (a few dozen examples, well
under a minute) or ``thorough`` (the long run, ``tox -e fuzz-long``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid as uuidlib
from typing import Any

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from trustpool import trait_sync
from trustpool.attestation import HostReport, TrustLevel
from trustpool.exceptions import AttestationError
from trustpool.openstack.placement import PlacementAPI

from tests.support.placement_server import PlacementServer

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"
#: read here, not from the tier's conftest, so that this module runs on
#: its own too (the conftest loads the matching hypothesis profile)
PROFILE = os.environ.get("TRUSTPOOL_HYPOTHESIS_PROFILE", "default")
#: examples per profile: each builds up to ~20 providers in a real
#: Placement, so fewer than the HTTP tests; "thorough" is a long run
EXAMPLES = {"default": 100, "thorough": 2000}

ANSWERS = ("trusted", "untrusted", "unknown", "missing", "lookalike",
           "string", "str-level")
FAILURES = ("AttestationError", "RuntimeError", "RecursionError",
            "OverflowError", "None", "list")
WRITE_FAULTS = ("ConnectFailure", "RuntimeError", "RecursionError")


# -- the world ----------------------------------------------------------------


@dataclasses.dataclass
class Node:
    kind: str  # compute | child | child_compute | sharing | plain
    carries: bool
    answer: str  # what the stand-in says for its name
    write_fails: bool
    parent: int | None = None  # index of the compute node, for children
    name: str = ""
    uuid: str = ""

    @property
    def proven(self) -> bool:
        """A root compute node with a well-formed trusted answer."""
        return self.kind == "compute" and self.answer == "trusted"


@dataclasses.dataclass
class World:
    nodes: list[Node]
    failure: str | None
    write_fault: str
    concurrency: int


def _answer() -> st.SearchStrategy[str]:
    # "trusted" about half of the time: worlds with something to keep
    return st.one_of(st.just("trusted"), st.sampled_from(ANSWERS))


def _write_fails() -> st.SearchStrategy[bool]:
    # rare: most examples must exercise the plain invariant
    return st.integers(0, 9).map(lambda n: n == 0)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    nodes: list[Node] = []
    for _ in range(draw(st.integers(0, 4))):
        index = len(nodes)
        nodes.append(Node("compute", draw(st.booleans()), draw(_answer()),
                          draw(_write_fails())))
        for _ in range(draw(st.integers(0, 2))):
            nodes.append(Node(
                draw(st.sampled_from(("child", "child_compute"))),
                draw(st.booleans()), draw(_answer()), draw(_write_fails()),
                parent=index))
    for kind in ("sharing", "plain"):
        for _ in range(draw(st.integers(0, 2))):
            nodes.append(Node(kind, draw(st.booleans()), draw(_answer()),
                              draw(_write_fails())))
    # about one example in three has attestation fail
    failure = (draw(st.sampled_from(FAILURES))
               if draw(st.integers(0, 3)) == 0 else None)
    return World(nodes, failure, draw(st.sampled_from(WRITE_FAULTS)),
                 draw(st.integers(1, 4)))


# -- the stand-ins -----------------------------------------------------------


class StandInClient:
    """Answers for every name of the world, asked or not."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.asked: list[str] = []

    def attest_uncached(self, names: list[str]) -> Any:
        self.asked.extend(names)
        failure = self.world.failure
        if failure == "AttestationError":
            raise AttestationError("cannot reach the attestation service")
        if failure == "RuntimeError":
            raise RuntimeError("a bug below the client")
        if failure == "RecursionError":
            raise RecursionError("maximum recursion depth exceeded")
        if failure == "OverflowError":
            raise OverflowError("date value out of range")
        if failure == "None":
            return None
        if failure == "list":
            return [n.name for n in self.world.nodes]
        answers: dict[str, Any] = {}
        for node in self.world.nodes:
            report = _report(node.name, node.answer)
            if report is not None:
                answers[node.name] = report
        return answers


def _report(name: str, answer: str) -> Any:
    if answer in ("trusted", "untrusted", "unknown"):
        return HostReport(name, TrustLevel(answer), "stand-in",
                          f"stand-in says {answer}")
    if answer == "lookalike":
        return HostReport(name.upper(), TrustLevel.TRUSTED, "stand-in",
                          "a trusted report for another name")
    if answer == "string":
        return "trusted"
    if answer == "str-level":
        return HostReport(name, "trusted", "stand-in",  # type: ignore[arg-type]
                          "a level that is no TrustLevel")
    return None  # missing


class FaultyAdapter(ks_adapter.Adapter):
    """Placement's client with some providers' trait writes failing."""

    def __init__(self, failing: set[str], fault: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failing = failing
        self.fault = fault

    def request(self, url: str, method: str, **kwargs: Any) -> Any:
        if method == "PUT" and any(u in url for u in self.failing):
            if self.fault == "ConnectFailure":
                raise ks_exc.ConnectFailure("Connection reset by peer")
            if self.fault == "RuntimeError":
                raise RuntimeError("a bug in a session plugin")
            raise RecursionError("maximum recursion depth exceeded")
        return super().request(url, method, **kwargs)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def placement(tmp_path_factory: pytest.TempPathFactory):
    server = PlacementServer(tmp_path_factory.mktemp("placement")).start()
    for trait in (TRAIT, "CUSTOM_KEEP_ME"):
        server.session.put(f"{server.url}/traits/{trait}").raise_for_status()
    yield server
    server.stop()


def _conf(concurrency: int) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    trait_sync.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("concurrency", concurrency, trait_sync.GROUP)
    return conf


def _build(server: PlacementServer, world: World) -> None:
    """Create the world's providers: POST, then one traits PUT at
    generation 0 (a new provider's), fewer requests than the admin helper."""
    tag = uuidlib.uuid4().hex[:10]
    for i, node in enumerate(world.nodes):
        node.name = f"fz-{tag}-{i}-{node.kind}"
        node.uuid = str(uuidlib.uuid4())
        body: dict[str, Any] = {"name": node.name, "uuid": node.uuid}
        if node.parent is not None:
            body["parent_provider_uuid"] = world.nodes[node.parent].uuid
        server.session.post(f"{server.url}/resource_providers",
                            json=body).raise_for_status()
        wanted = {"CUSTOM_KEEP_ME"}
        if node.kind in ("compute", "child_compute"):
            wanted.add("COMPUTE_NODE")
        if node.kind == "sharing":
            wanted.add("MISC_SHARES_VIA_AGGREGATE")
        if node.carries:
            wanted.add(TRAIT)
        server.put_traits(node.uuid, wanted, 0).raise_for_status()


def _tear_down(server: PlacementServer, world: World) -> None:
    # children first: Placement refuses to delete a parent
    for node in sorted(world.nodes, key=lambda n: n.parent is None):
        if node.uuid:
            server.session.delete(
                f"{server.url}/resource_providers/{node.uuid}")


# -- the property ------------------------------------------------------------


@settings(max_examples=EXAMPLES.get(PROFILE, 60), deadline=None)
@given(world=worlds())
def test_the_carriers_are_exactly_the_proven_compute_nodes(placement,
                                                           world):
    _build(placement, world)
    try:
        _check(placement, world)
    finally:
        _tear_down(placement, world)


def _check(placement: PlacementServer, world: World) -> None:
    roots = {n.name for n in world.nodes if n.kind == "compute"}
    # with no compute node there is nobody to attest: no call, no failure
    attestation_fails = world.failure is not None and bool(roots)
    proven = set() if attestation_fails else {
        n.uuid for n in world.nodes if n.proven}
    failing = {n.uuid for n in world.nodes if n.write_fails}
    initial = {n.uuid for n in world.nodes if n.carries}
    # the oracle: a write that fails leaves the state as it was
    expected = {u for u in {n.uuid for n in world.nodes}
                if (u in initial if u in failing else u in proven)}
    needed_failing = {u for u in failing if (u in initial) != (u in proven)}
    event(f"attestation {world.failure or 'answered'}")
    event(f"proven: {_bucket(len(proven))}, to lose: "
          f"{_bucket(len(initial - proven))}")
    if needed_failing:
        event("a needed write fails")

    api = PlacementAPI(FaultyAdapter(
        failing, world.write_fault, session=ks_session.Session(),
        endpoint_override=placement.url,
        additional_headers={"X-Auth-Token": "admin"}))
    client = StandInClient(world)
    records = Records()
    logger = logging.getLogger("trustpool.trait_sync")
    logger.addHandler(records)
    previous_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        result = trait_sync.sync(_conf(world.concurrency), api, client)
    except BaseException as exc:  # noqa: BLE001 - that is the violation
        raise AssertionError(f"the pass raised {type(exc).__name__}: "
                             f"{exc}") from exc
    finally:
        logger.removeHandler(records)
        logger.setLevel(previous_level)
    note(f"result: {result}")

    carriers = placement.carriers(TRAIT)
    ours = carriers & {n.uuid for n in world.nodes}
    assert ours == expected, _diff(world, ours, expected)
    # nothing outside this example carries it either
    assert carriers == ours, f"strangers carry the trait: {carriers - ours}"
    assert not (ours - proven - failing), "trust gained without proof"
    if result.ok:
        assert carriers == proven, "a pass that succeeded left a mismatch"

    # the pass says whether it worked, and why not
    assert result.ok == (not attestation_fails and not needed_failing), \
        result
    assert bool(result.attestation_failed) == attestation_fails, result
    assert result.errors == len(needed_failing), result
    if not result.ok:
        assert result.failed, result
    # only root compute nodes are ever asked about, and each once
    assert sorted(client.asked) == sorted(roots)

    # every removal once, with its provider and a reason
    texts = [r.getMessage() for r in records.records]
    for node in world.nodes:
        lost = node.carries and node.uuid not in expected
        lines = [t for t in texts if f"({node.uuid}) loses {TRAIT} (" in t]
        assert len(lines) == (1 if lost else 0), (node, lines)
        if lost and node.kind in ("sharing", "plain"):
            assert "not a compute node" in lines[0]
        if lost and node.kind in ("child", "child_compute"):
            assert "nested provider under" in lines[0]
    if attestation_fails:
        failed = [t for t in texts if "attestation failed (" in t]
        expected_type = {"None": "AttributeError", "list": "AttributeError"
                         }.get(world.failure, world.failure)
        assert len(failed) == 1 and expected_type in failed[0], failed


def _bucket(count: int) -> str:
    return str(count) if count < 3 else "3 or more"


def _diff(world: World, got: set[str], want: set[str]) -> str:
    by_uuid = {n.uuid: n for n in world.nodes}
    return (f"carriers differ from the oracle: extra "
            f"{[by_uuid[u] for u in got - want]}, missing "
            f"{[by_uuid[u] for u in want - got]}")
