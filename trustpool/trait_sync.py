# SPDX-License-Identifier: Apache-2.0
"""Keep a Placement trait on exactly the compute nodes attested trusted.

With the trait on trusted compute node providers, a flavor with
``trait:CUSTOM_TRUSTPOOL_TRUSTED=required`` lets Placement pre-filter in
SQL for every scheduler worker at once; TrustedFilter stays the last,
fresh check.

The invariant a pass keeps (DESIGN, "Placement trait invariant"): after a
pass that succeeded, the providers carrying the trait are exactly the
compute node providers attested trusted in that pass. Placement applies an
unnumbered ``required=`` trait to the whole provider tree and its sharing
providers, so ANY other carrier (a sharing disk provider, a nested VGPU
child, a provider without ``COMPUTE_NODE``) would make its untrusted
compute node a candidate. A pass therefore starts from every carrier of
the trait, not from the compute nodes.

Fail-closed by shape, not by enumerating faults: a carrier keeps the trait
only if the whole proof (listing the compute nodes, attesting them,
reading the answer) succeeded and names it trusted; every other carrier,
whatever went wrong and with whatever exception type, loses it. Diff-based:
only providers whose state changes are written.

Names: a compute node provider is asked about under the name the filter
uses for the same host (:mod:`trustpool.attestation.identity`). Placement
names providers by hypervisor host name, so with ``host_attribute = host``
the pass maps each provider uuid (Nova's compute node uuid) to its
nova-compute service host through the Nova API; a provider that cannot be
mapped is not proven trusted, and the pass fails saying why.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from oslo_config import cfg

from trustpool.attestation import AttestationClient, HostReport, TrustLevel
from trustpool.attestation.identity import ComputeNode
from trustpool.attestation.redact import Redactor
from trustpool.conf import TRAIT_GROUP as GROUP
from trustpool.conf import host_identity, secret_values, trait_name
from trustpool.conf import register_trait_opts as register_opts
from trustpool.exceptions import TrustpoolError
from trustpool.openstack.compute import UnavailableComputeAPI
from trustpool.openstack.placement import PlacementAPI

__all__ = ["AddGate", "SyncResult", "run_forever", "sync"]

LOG = logging.getLogger(__name__)
#: ``run_forever`` never waits less than this between the starts of two
#: passes: a zero or negative ``--interval`` must not become a hot loop
#: against Placement and the attestation service.
MIN_INTERVAL = 0.1
#: How much of an exception's text a log line or result quotes.
_QUOTE = 300



@dataclasses.dataclass
class SyncResult:
    """What one pass did.

    ``seen`` counts the distinct providers looked at (compute nodes and
    carriers of the trait). ``errors`` counts failed provider updates, plus
    one for a failure that cut the pass short; an attestation failure is
    in ``attestation_failed`` instead. ``failed`` is ``None`` only for a
    pass that succeeded, and otherwise says why it did not (the first
    reason).

    ``hosts`` holds, per compute node name, the report the pass acted on
    (``unknown`` for every one when attestation failed), and is ``None``
    when the compute nodes could not be listed; ``attested_at`` is the
    wall-clock time the attestation answer arrived. For the service's
    metrics: the pass itself only needs the counts.
    """

    seen: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: int = 0
    #: additions an :class:`AddGate` refused (a revocation event came
    #: after this pass's attestation started)
    withheld: int = 0
    attestation_failed: str | None = None
    failed: str | None = None
    hosts: dict[str, HostReport] | None = None
    attested_at: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the carriers are now exactly the trusted compute nodes."""
        return self.failed is None

    def summary(self) -> str:
        text = (f"sync-traits: {self.seen} providers seen, {self.added} "
                f"added, {self.removed} removed, {self.unchanged} "
                f"unchanged, {self.errors} errors")
        if self.withheld:
            text += f", {self.withheld} withheld after a revocation event"
        if self.failed:
            text += f" ({self.failed})"
        return text

    def _fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason


class ComputeNodeSource(Protocol):
    """Where the service host of each compute node comes from: the Nova
    API (:class:`trustpool.openstack.compute.ComputeAPI`)."""

    def compute_nodes(self) -> list[ComputeNode]: ...


class AddGate(Protocol):
    """What stands between a pass and adding the trait: the revocation
    events of the same service (:class:`trustpool.revocation.Ledger`)."""

    def attestation_started(self) -> float:
        """Called just before the pass attests; its result is the
        ``attested_at`` given to :meth:`adding`."""

    def adding(self, host: str, attested_at: float | None
               ) -> contextlib.AbstractContextManager[bool]:
        """Held while the trait is added to ``host``; yields whether an
        attestation that started at ``attested_at`` may add it."""


def sync(conf: cfg.ConfigOpts, placement: PlacementAPI,
         client: AttestationClient,
         compute: ComputeNodeSource | None = None, *,
         gate: AddGate | None = None) -> SyncResult:
    """One pass: attest every compute node in one batch, then make the
    carriers of the trait exactly the compute nodes attested trusted.

    ``compute`` is needed only with ``host_attribute = host``, to name
    each compute node by its service host; without it (or when it fails)
    no compute node can be named, so none keeps the trait and the pass
    fails.

    With ``gate``, an addition happens only while the gate allows it (a
    host that lost trust by an event after the attestation started keeps
    no trait from this pass; it is counted in ``withheld``).

    The outermost boundary of a pass: never raises (any exception type).
    A failure is in the result (``failed``, ``errors``,
    ``attestation_failed``) and logged once with its type; whatever could
    not be proven trusted has lost the trait as far as Placement let us
    remove it.
    """
    result = SyncResult()
    redact = _redactor(conf)
    work = _Pass(conf, placement, client, result, redact, compute, gate)
    try:
        work.run()
    except Exception as exc:  # noqa: BLE001 - the outermost boundary
        result.errors += 1
        reason = f"{type(exc).__name__}: {_short(redact, exc)}"
        result._fail(reason)  # noqa: SLF001 - its own result
        LOG.error("sync-traits: the pass failed (%s); the trait is removed "
                  "from every provider not proven trusted in this pass",
                  reason)
        work.fall_back()
    try:
        (LOG.info if result.ok else LOG.warning)("%s", result.summary())
    except Exception:  # noqa: BLE001, S110 - logging cannot undo a pass
        pass
    return result


def run_forever(conf: cfg.ConfigOpts, placement: PlacementAPI,
                client: AttestationClient, interval: float,
                stop: threading.Event | None = None,
                pass_: Callable[..., Any] | None = None,
                compute: ComputeNodeSource | None = None) -> None:
    """Sync every ``interval`` seconds until ``stop`` (an Event) is set.

    Survives every exception a pass lets out (none should: ``sync`` has
    its own boundary, but the loop must not depend on that) and keeps its
    rhythm: the next pass starts ``interval`` seconds after the previous
    one started, or at once when a pass took longer; never sooner than
    :data:`MIN_INTERVAL`. ``pass_`` replaces :func:`sync` (tests);
    ``compute`` is handed to every pass (see :func:`sync`).
    KeyboardInterrupt and SystemExit still end it: they are how an
    operator stops the command.
    """
    one_pass = pass_ or sync
    interval = max(MIN_INTERVAL, float(interval))
    while stop is None or not stop.is_set():
        started = time.monotonic()
        try:
            if compute is None:
                one_pass(conf, placement, client)
            else:
                one_pass(conf, placement, client, compute)
        except Exception as exc:  # noqa: BLE001 - the loop's boundary
            _log_escaped(exc)
        wait = max(0.0, interval - (time.monotonic() - started))
        if stop is not None:
            if stop.wait(wait):
                return
        else:
            time.sleep(wait)


def _log_escaped(exc: Exception) -> None:
    # The text is not quoted: without conf at hand it cannot be redacted,
    # and the type is what says which bug let it out of the pass.
    try:
        LOG.error("sync-traits: a pass raised %s; next pass at the usual "
                  "time", type(exc).__name__)
    except Exception:  # noqa: BLE001, S110 - the loop must go on
        pass


class _Pass:
    """The state of one pass, kept so that the boundary in :func:`sync`
    knows, whatever failed, which carriers still have to lose the trait."""

    def __init__(self, conf: cfg.ConfigOpts, placement: PlacementAPI,
                 client: AttestationClient, result: SyncResult,
                 redact: Redactor,
                 compute: ComputeNodeSource | None = None,
                 gate: AddGate | None = None) -> None:
        self.conf = conf
        self.gate = gate
        #: when the attestation of this pass started (the gate's clock)
        self.attested_at: float | None = None
        #: provider uuid -> the name the attestation service knows it by
        self.names: dict[str, str] = {}
        self.placement = placement
        self.client = client
        self.compute = compute or UnavailableComputeAPI(
            "no Nova API was given to the sync")
        self.result = result
        self.redact = redact
        self.trait: str | None = None
        #: uuid → record of every provider carrying the trait; None until
        #: Placement listed them.
        self.carriers: dict[str, dict[str, Any]] | None = None
        #: uuid → record of the compute nodes proven trusted in this pass;
        #: filled only by a proof that went through to its end.
        self.proven: dict[str, dict[str, Any]] = {}
        #: uuids whose removal was attempted (whatever its outcome).
        self.handled: set[str] = set()

    def run(self) -> None:
        register_opts(self.conf)
        group = self.conf[GROUP]
        self.trait = trait_name(self.conf)
        self.placement.ensure_trait(self.trait)
        self.carriers = {p["uuid"]: p
                         for p in self.placement.providers(self.trait)}
        computes, why_not = self._prove(group.compute_provider_trait)
        self.result.seen = len(set(self.carriers) | set(computes))
        removals = [(p, False, why_not.get(uuid) or _not_compute(
            p, group.compute_provider_trait))
            for uuid, p in self.carriers.items() if uuid not in self.proven]
        additions = [(p, True, "attested trusted")
                     for uuid, p in self.proven.items()
                     if uuid not in self.carriers]
        self.result.unchanged += self.result.seen - len(removals) - len(
            additions)
        # removals first: if the pass dies in between, it has only taken
        # trust away
        self._write(removals, group.concurrency)
        self._write(additions, group.concurrency)
        if self.result.errors:
            self.result._fail(  # noqa: SLF001 - its own result
                f"{self.result.errors} provider update(s) failed")

    def _prove(self, compute_trait: str
               ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Find the compute nodes attested trusted now, into
        ``self.proven``; returns the compute nodes and, per compute node
        uuid, why it is not trusted.

        Any failure leaves ``self.proven`` empty: nothing is kept on the
        strength of half a proof.
        """
        computes: dict[str, dict[str, Any]] = {}
        why_not: dict[str, str] = {}
        try:
            computes = {p["uuid"]: p
                        for p in self.placement.providers(compute_trait)
                        # Nova's compute node providers are roots; a child
                        # with the trait is no compute node to trust
                        if "parent_provider_uuid" in p
                        and p["parent_provider_uuid"] is None}
        except Exception as exc:  # noqa: BLE001 - remove, never keep
            reason = (f"compute nodes could not be listed: "
                      f"{type(exc).__name__}: {_short(self.redact, exc)}")
            self.result.errors += 1
            self.result._fail(reason)  # noqa: SLF001 - its own result
            LOG.error("sync-traits: %s; removing %s from every provider",
                      reason, self.trait)
            return {}, dict.fromkeys(self.carriers or (), reason)
        names = self._name(computes, why_not)
        self.names = names
        asked = sorted(set(names.values()))
        self.result.hosts = {name: self._unknown(name, "no attestation "
                                                 "answer")
                             for name in asked}
        try:
            if self.gate is not None:
                self.attested_at = self.gate.attestation_started()
            reports = (self.client.attest_uncached(asked) if asked else {})
            self.result.attested_at = time.time()
            proven: dict[str, dict[str, Any]] = {}
            for uuid, name in names.items():
                report = reports.get(name)
                if isinstance(report, HostReport) \
                        and report.hostname == name:
                    self.result.hosts[name] = report
                if (isinstance(report, HostReport)
                        and report.hostname == name
                        and report.level is TrustLevel.TRUSTED):
                    proven[uuid] = computes[uuid]
                elif isinstance(report, HostReport):
                    why_not[uuid] = (f"level {_level(report)}: "
                                     f"{_short(self.redact, report.reason)}")
                else:
                    why_not[uuid] = "no attestation answer"
        except Exception as exc:  # noqa: BLE001 - remove, never keep
            message = _short(self.redact, exc)
            self.result.hosts = {name: self._unknown(
                name, "attestation failed") for name in asked}
            self.result.attestation_failed = message
            self.result._fail(  # noqa: SLF001 - its own result
                f"attestation failed: {message}")
            LOG.warning("sync-traits: attestation failed (%s), removing %s "
                        "from every provider: %s", type(exc).__name__,
                        self.trait, message)
            return computes, {**dict.fromkeys(
                computes, f"attestation failed: {message}"), **why_not}
        self.proven = proven
        return computes, why_not

    def _name(self, computes: dict[str, dict[str, Any]],
              why_not: dict[str, str]) -> dict[str, str]:
        """uuid → the name the filter asks about for that compute node
        (``host_attribute``). A node without one is put in ``why_not``
        and fails the pass: it is not proven trusted, so it loses the
        trait, and the pass could not do what it was asked to."""
        identity = host_identity(self.conf)
        problem = None
        nodes: list[ComputeNode] = []
        if not identity.needs_service_host:
            # Nova names a compute node's provider by hypervisor host name
            nodes = [ComputeNode(uuid, p["name"])
                     for uuid, p in computes.items()]
        elif computes:
            try:
                nodes = list(self.compute.compute_nodes())
            except Exception as exc:  # noqa: BLE001 - remove, never keep
                kind = ("" if isinstance(exc, TrustpoolError)
                        else f"{type(exc).__name__}: ")
                problem = (f"{identity.option}: compute node providers are "
                           "named by service host through the Nova API, "
                           f"which failed: {kind}{_short(self.redact, exc)}")
        index = identity.index(nodes)
        names: dict[str, str] = {}
        unmapped: list[str] = []
        for uuid, provider in computes.items():
            name = index.name_of(uuid)
            if name is not None:
                names[uuid] = name
                continue
            unmapped.append(f"{provider['name']} ({uuid})")
            why_not[uuid] = problem or (
                f"no {identity.describe()}: " + (
                    "the Nova API lists this uuid with two different "
                    "names (ambiguous)" if uuid in index else
                    "the Nova API lists no hypervisor with this uuid"))
        if unmapped:
            reason = problem or (
                f"{identity.option}: {len(unmapped)} compute node "
                "provider(s) have no hypervisor in the Nova API, so no "
                f"service host: {', '.join(unmapped[:5])}"
                + (", ..." if len(unmapped) > 5 else ""))
            self.result._fail(reason)  # noqa: SLF001 - its own result
            LOG.error("sync-traits: %s; %d compute node provider(s) cannot "
                      "be named and lose %s", reason, len(unmapped),
                      self.trait)
        return names

    def _unknown(self, name: str, reason: str) -> HostReport:
        backend = getattr(getattr(self.client, "backend", None), "name", "")
        return HostReport(name, TrustLevel.UNKNOWN,
                          backend if isinstance(backend, str) else "",
                          reason)

    def _write(self, changes: list[tuple[dict[str, Any], bool, str]],
               concurrency: int) -> None:
        """Apply ``changes`` in parallel; every change is attempted even if
        the thread pool itself fails (then one by one). Counted here, in
        the calling thread: ``+=`` on a shared counter is not atomic."""
        outcomes: dict[str, str] = {}
        try:
            with concurrent.futures.ThreadPoolExecutor(
                    max_workers=concurrency) as pool:
                futures = {pool.submit(self._apply, *c): c for c in changes}
                for future in concurrent.futures.as_completed(futures):
                    outcomes[futures[future][0]["uuid"]] = future.result()
        except Exception as exc:  # noqa: BLE001 - fall back, see docstring
            LOG.error("sync-traits: parallel updates failed (%s), going on "
                      "one provider at a time", type(exc).__name__)
        for change in changes:
            uuid = change[0]["uuid"]
            if uuid not in outcomes:
                outcomes[uuid] = self._apply(*change)
        for outcome in outcomes.values():
            setattr(self.result, outcome, getattr(self.result, outcome) + 1)

    def _apply(self, provider: dict[str, Any], want: bool,
               reason: str) -> str:
        """One provider's change, logged with its reason; never raises.

        :returns: the :class:`SyncResult` counter it adds to.
        """
        if not want:
            self.handled.add(provider["uuid"])
        try:
            assert self.trait is not None  # set before any change
            if want and self.gate is not None:
                # keyed like the events: by the attestation service's name
                host = self.names.get(provider["uuid"], provider["name"])
                with self.gate.adding(host, self.attested_at) as allowed:
                    if not allowed:
                        LOG.warning(
                            "sync-traits: %s (%s) does not gain %s: a "
                            "revocation event for it came after this "
                            "pass's attestation started", provider["name"],
                            provider["uuid"], self.trait)
                        return "withheld"
                    wrote = self.placement.set_trait(
                        provider["uuid"], self.trait, want)
            else:
                wrote = self.placement.set_trait(provider["uuid"],
                                                 self.trait, want)
        except Exception as exc:  # noqa: BLE001 - counted, pass goes on
            LOG.error("sync-traits: %s (%s): could not %s %s (%s): %s: %s",
                      provider["name"], provider["uuid"],
                      "add" if want else "remove", self.trait, reason,
                      type(exc).__name__, _short(self.redact, exc))
            return "errors"
        if not wrote:
            return "unchanged"
        if want:
            LOG.info("sync-traits: %s (%s) gains %s (%s)", provider["name"],
                     provider["uuid"], self.trait, reason)
            return "added"
        LOG.warning("sync-traits: %s (%s) loses %s (%s)", provider["name"],
                    provider["uuid"], self.trait, reason)
        return "removed"

    def fall_back(self) -> None:
        """After a failure that cut the pass short: remove the trait from
        every known carrier that was neither proven trusted nor handled
        yet, one at a time. Never raises."""
        try:
            if self.carriers is None or self.trait is None:
                return
            left = [(p, False, "the pass failed before it was proven "
                     "trusted") for uuid, p in self.carriers.items()
                    if uuid not in self.proven and uuid not in self.handled]
            for change in left:
                outcome = self._apply(*change)
                setattr(self.result, outcome,
                        getattr(self.result, outcome) + 1)
        except Exception as exc:  # noqa: BLE001 - the boundary's own
            LOG.error("sync-traits: removal after the failure stopped "
                      "(%s)", type(exc).__name__)


def _not_compute(provider: dict[str, Any], compute_trait: str) -> str:
    parent = provider.get("parent_provider_uuid")
    if parent:
        return f"not a compute node: a nested provider under {parent}"
    return f"not a compute node (no {compute_trait} trait)"


def _level(report: HostReport) -> str:
    level = report.level
    return level.value if isinstance(level, TrustLevel) else "unknown"


def _redactor(conf: cfg.ConfigOpts) -> Redactor:
    try:
        return Redactor(secret_values(conf))
    except Exception:  # noqa: BLE001 - secret_values never raises; belt
        return Redactor()


def _short(redact: Redactor, text: object) -> str:
    """One line, at most :data:`_QUOTE` characters, secrets masked."""
    return " ".join(redact(text).split())[:_QUOTE]
