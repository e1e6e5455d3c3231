# SPDX-License-Identifier: Apache-2.0
"""What a verified revocation does: the host loses the trust trait now.

Only ever a removal. The trait comes back only from a later periodic pass
whose attestation started after the event (see :mod:`.ledger`).

The answer to the verifier follows Placement: "done" (200) only once
Placement said that no provider named after the host carries the trait
(it listed none), or accepted the write that removed it (a generation-
checked PUT, retried on conflict); anything else raises, and the HTTP
layer answers 5xx so that Keylime sends the event again. The host's lock
(the ledger) is held throughout, so no gated pass adds the trait back in
between.

The instances of trusted flavors still running on the host are listed
through the Nova API afterwards, in a worker thread of its own: the trait
removal and the answer never wait on Nova, and a Nova failure only costs
that list.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import drift, events
from trustpool.attestation.backends.keylime import AgentIds
from trustpool.decision_record import AUDIT_LOGGER
from trustpool.openstack.compute import ComputeAPI
from trustpool.openstack.placement import PlacementAPI
from trustpool.revocation.ledger import Ledger
from trustpool.revocation.message import Notification

__all__ = ["SCHEMA_VERSION", "RevocationHandler"]

LOG = logging.getLogger(__name__)
_AUDIT = logging.getLogger(AUDIT_LOGGER)
SCHEMA_VERSION = 1
#: hosts whose instance list may wait for the Nova worker at once
_NOVA_QUEUE = 256
#: signed messages remembered, so that a replay cannot quarantine again
_SEEN = 4096


class RevocationHandler:
    """Acts on verified notifications; safe to call from many threads."""

    def __init__(self, conf: cfg.ConfigOpts, placement: PlacementAPI,
                 ledger: Ledger, agents: AgentIds, trait: str,
                 compute: ComputeAPI | None = None,
                 on_revoked: Callable[[str, str | None, bool, str], None]
                 | None = None) -> None:
        self._conf = conf
        #: told (host, event id, signed, kind) after each removal: the
        #: quarantine queues its action and returns at once
        self._on_revoked = on_revoked
        #: digests of signed messages already handed to quarantine, oldest
        #: first (bounded; lost on restart, like the dampening state)
        self._seen: collections.OrderedDict[str, None] = \
            collections.OrderedDict()
        self._seen_lock = threading.Lock()
        self._placement = placement
        self.ledger = ledger
        self._agents = agents
        self._trait = trait
        self._trait_known = False
        #: the same naming rule as the filter and the periodic pass: the
        #: agent map gives the name the attestation service knows, which
        #: with host_attribute = host is a service host, not a provider
        self._identity = tp_conf.host_identity(conf)
        self._compute = compute
        self._nova: _InstanceLister | None = (
            _InstanceLister(conf, compute) if compute is not None else None)

    def handle(self, note: Notification) -> str:
        """Take trust away from the hosts of ``note``'s agent.

        :returns: a word for the answer: ``removed``, ``no-trait`` or
            ``unknown-agent``.
        :raises Exception: when Placement did not confirm the removal
            (any type; the caller answers 5xx).
        """
        hosts = self._agents.hosts(note.agent_id)
        if not hosts:
            LOG.warning("revocation event (%s) for Keylime agent %s, which "
                        "maps to no host ([keylime] agent_ids, "
                        "agent_id_rule): nothing changed", note.kind,
                        note.agent_id)
            return "unknown-agent"
        removed_any = False
        for host in hosts:
            with self.ledger.revoking(host):
                providers = self._remove(host)
            removed_any |= any(wrote for _, wrote in providers)
            _emit_trust_lost(note, host, self._trait, providers)
            if providers:
                LOG.warning("revocation event (%s, %s) for %s (Keylime "
                            "agent %s): %s removed from %s", note.kind,
                            note.event_id or "no event id", host,
                            note.agent_id, self._trait,
                            ", ".join(p["uuid"] for p, _ in providers))
            else:
                LOG.warning("revocation event (%s, %s) for %s (Keylime "
                            "agent %s): it carried no %s", note.kind,
                            note.event_id or "no event id", host,
                            note.agent_id, self._trait)
            if self._nova is not None:
                self._nova.submit(note.event_id, host, note.agent_id)
            self._tell_revoked(host, note)
        return "removed" if removed_any else "no-trait"

    def _tell_revoked(self, host: str, note: Notification) -> None:
        """Hand the event to quarantine, which never delays or changes the
        answer (the removal is done)."""
        if self._on_revoked is None:
            return
        signed = note.signed
        if signed and note.digest and self._replayed(host, note.digest):
            # the trait went again (always safe); quarantine is asked only
            # once per signed message: one captured message must not
            # quarantine a host again and again, e.g. after its release
            LOG.warning("revocation event (%s, %s) for %s: this signed "
                        "message was handled before (a replay, or the "
                        "verifier retrying one that was done); the trait "
                        "is removed, quarantine is not asked again",
                        note.kind, note.event_id or "no event id", host)
            signed = False
        try:
            self._on_revoked(host, note.event_id, signed, note.kind)
        except Exception as exc:  # noqa: BLE001 - the removal is done
            LOG.error("could not hand the revocation of %s to quarantine "
                      "(%s)", host, type(exc).__name__)

    def _replayed(self, host: str, digest: str) -> bool:
        """Whether this signed message was already handed on for ``host``;
        remembers it when not."""
        key = f"{host}\0{digest}"
        with self._seen_lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return True
            self._seen[key] = None
            while len(self._seen) > _SEEN:
                self._seen.popitem(last=False)
            return False

    def _carriers(self, host: str) -> list[dict[str, Any]]:
        """The providers of ``host``'s compute nodes that carry the trait.

        By hypervisor host name (the default), the provider named
        ``host``. By service host, every compute node the Nova API lists
        under that service (Placement does not know service hosts); when
        Nova cannot be asked, this raises, the verifier is answered 5xx and
        retries: an event is never acknowledged without the removal.
        """
        if not self._identity.needs_service_host:
            return self._placement.providers(self._trait, name=host)
        if self._compute is None:
            raise RuntimeError(
                f"{self._identity.option}: the providers of {host} can be "
                "found only through the Nova API, and [trustpool_nova] has "
                "no credentials")
        # every record naming the host, not the index's unambiguous names:
        # a uuid Nova lists under two service hosts has no name to grant
        # trust by, but either host's event is reason enough to remove it
        uuids = {node.uuid for node in self._compute.compute_nodes()
                 if self._identity.name_of_node(node) == host}
        return [p for p in self._placement.providers(self._trait)
                if p["uuid"] in uuids]

    def prepare(self) -> None:
        """Make sure the trait exists now, at start-up, so that the first
        event's answer does not also wait for that write (measured: 60 to
        280 ms of the first event's latency on the real Keylime stack).
        A Placement that fails here leaves it to the first event, as
        before; it never stops the service."""
        try:
            self._placement.ensure_trait(self._trait)
            self._trait_known = True
        except Exception as exc:  # noqa: BLE001 - the first event retries
            LOG.warning("revocation events: could not make sure trait %s "
                        "exists in Placement at start-up (%s); the first "
                        "event will", self._trait, type(exc).__name__)

    def _remove(self, host: str) -> list[tuple[dict[str, Any], bool]]:
        """Remove the trait from ``host``'s compute node providers; the
        providers that carried it, each with whether this call wrote."""
        try:
            if not self._trait_known:
                self._placement.ensure_trait(self._trait)
                self._trait_known = True
            done = []
            for provider in self._carriers(host):
                wrote = self._placement.set_trait(provider["uuid"],
                                                  self._trait, False)
                done.append((provider, wrote))
            return done
        except Exception:
            self._trait_known = False  # ask again next time
            raise

    def close(self) -> None:
        if self._nova is not None:
            self._nova.close()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _emit_trust_lost(note: Notification, host: str, trait: str,
                     providers: list[tuple[dict[str, Any], bool]]) -> None:
    """The ``trustpool.trust_lost`` audit event (one JSON line), in the
    schema :mod:`trustpool.events` documents and ``trustpool report``
    reads, with what only an event receiver knows added (``type``,
    ``signed``, the providers touched). Its instances come in a
    ``trustpool.trust_lost_instances`` event of the same ``event_id``
    once Nova answers: the removal never waits for Nova."""
    event = events.trust_lost_event(
        host=host, agent_id=note.agent_id, event_id=note.event_id,
        event_time=note.verifier_time, severity=note.severity,
        context=note.context, instances=(),
        trait_removed=any(wrote for _, wrote in providers),
        source=f"keylime-{note.kind}")
    event.update({
        "type": note.kind,
        "signed": note.signed,
        "trait": trait,
        "providers": [{"uuid": p["uuid"], "name": p["name"],
                       "removed": wrote} for p, wrote in providers],
    })
    try:
        _AUDIT.warning("%s", json.dumps(event))
    except Exception as exc:  # noqa: BLE001 - the removal is done anyway
        LOG.error("could not write the trust_lost audit event (%s)",
                  type(exc).__name__)


class _InstanceLister:
    """One worker thread that asks Nova which instances of trusted flavors
    run on a host that lost trust, and logs them (``trust_lost_instances``
    audit event). Bounded: when the queue is full, a host is skipped with
    a log line."""

    def __init__(self, conf: cfg.ConfigOpts, compute: ComputeAPI) -> None:
        self._conf = conf
        self._compute = compute
        self._queue: queue.Queue[tuple[str | None, str, str] | None] = (
            queue.Queue(maxsize=_NOVA_QUEUE))
        self._thread = threading.Thread(
            target=self._run, name="trustpool-events-nova", daemon=True)
        self._thread.start()

    def submit(self, event_id: str | None, host: str, agent_id: str) -> None:
        try:
            self._queue.put_nowait((event_id, host, agent_id))
        except queue.Full:
            LOG.warning("too many hosts waiting for the Nova API; not "
                        "listing the instances on %s", host)

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # a daemon thread: it ends with the process

    def join(self, timeout: float) -> None:
        """Wait until every submitted host was handled (tests)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._one(*item)
            except Exception as exc:  # noqa: BLE001 - the worker goes on
                LOG.error("could not list the instances on a host that "
                          "lost trust (%s)", type(exc).__name__)
            finally:
                self._queue.task_done()

    def _one(self, event_id: str | None, host: str, agent_id: str) -> None:
        rows = drift.instances_on(self._conf, self._compute, host)
        event = {"event": "trustpool.trust_lost_instances",
                 "schema_version": SCHEMA_VERSION, "time": _now(),
                 "host": host, "agent_id": agent_id, "event_id": event_id,
                 "instances": rows}
        if rows:
            LOG.warning("%d instance(s) of trusted flavors still run on %s, "
                        "which lost trust: %s", len(rows), host,
                        ", ".join(r["instance"] for r in rows))
        _AUDIT.warning("%s", json.dumps(event))
