# SPDX-License-Identifier: Apache-2.0
"""Quarantine in the long-running service: the periodic passes' verdicts
and verified revocation events in, nova-compute services disabled and
re-enabled through the Nova API out.

State lives in Nova. A service disabled with a ``disabled_reason``
starting :data:`REASON_PREFIX` is trustpool's, whoever started the
service; at start-up (and until it succeeds once) every such service is
taken as quarantined, so that it can be released later. Any other
disabled service is someone else's and is never touched; neither is a
service someone else re-enabled or re-labelled while it was
quarantined: trustpool lets go of it.

Every action runs in one worker thread of its own, in the order the
passes and events came: a Nova API that is slow or down never delays a
sync pass or the answer to the Keylime verifier (the trait removal is
what answers it), and a failure is logged, counted, written as an audit
event, and tried again at the next verdict that calls for it.
"""

from __future__ import annotations

import datetime
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import events
from trustpool.attestation.model import HostReport, TrustLevel
from trustpool.attestation.redact import Redactor
from trustpool.openstack import compute as compute_api
from trustpool.openstack.compute import ComputeAPI
from trustpool.quarantine import options
from trustpool.quarantine.dampening import (
    REVOCATION,
    UNTRUSTED_RUN,
    Dampener,
    Due,
    Kind,
    worst,
)
from trustpool.quarantine.observer import QuarantineObserver

__all__ = ["REASON_PREFIX", "Quarantine", "is_ours", "start"]

LOG = logging.getLogger(__name__)
#: The start of every disabled_reason trustpool writes, and the only mark
#: by which it recognises a service as its own to re-enable.
REASON_PREFIX = "trustpool: quarantined"
#: Nova's column for disabled_reason holds 255 characters
_REASON_MAX = 255
#: passes and events waiting for the worker at most
_QUEUE = 1024
#: passes waiting at most: each holds the verdicts of the whole fleet, and
#: a worker that far behind acts on old news anyway. A pass dropped is a
#: gap: taken as unknown for every host (it breaks a trusted run).
_PASSES = 4
_QUOTE = 300


#: the whole of a reason :meth:`Quarantine._reason` writes, cut or not: a
#: reason that only starts like it (an operator's words after the prefix,
#: a note appended to trustpool's) is an operator's
_OURS = re.compile(
    re.escape(REASON_PREFIX) + r": (?:\d+ untrusted attestations in a row"
    r"|signed Keylime revocation)\b.*\) at "
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", re.DOTALL)


def is_ours(service: Mapping[str, Any]) -> bool:
    """Whether ``service`` (a record of Nova's os-services) is disabled by
    trustpool's quarantine: disabled, with a reason in the form trustpool
    writes (starting :data:`REASON_PREFIX`, ending with its time stamp).
    A service disabled without a reason, or with any other (an
    operator's, ``trustpool audit``'s, one that imitates the prefix), is
    not."""
    reason = service.get("disabled_reason")
    return (service.get("status") == "disabled" and isinstance(reason, str)
            and _OURS.fullmatch(reason) is not None)


def start(conf: cfg.ConfigOpts, compute: Any = None
          ) -> Quarantine | None:
    """Start quarantine when ``[trustpool_quarantine] enabled``;
    ``compute`` replaces the Nova API client built from
    ``[trustpool_nova]`` (tests).

    :raises ConfigurationError: enabled without Nova API credentials.
    """
    if not options.enabled(conf):
        return None
    if compute is None:
        options.validate(conf)
        compute = ComputeAPI(compute_api.adapter_from_conf(
            conf, f"[{options.GROUP}] enabled = True acts through the Nova "
            "API"))
    LOG.info("quarantine is %s", options.summary(conf))
    return Quarantine(conf, compute).start()


class Quarantine:
    """The dampener, the Nova API and the audit trail of quarantine.

    The ``*_now`` methods do the work in the calling thread (the worker,
    and tests); :meth:`after_pass` and :meth:`after_revocation` queue it
    for the worker started by :meth:`start`.
    """

    def __init__(self, conf: cfg.ConfigOpts, compute: ComputeAPI, *,
                 observer: QuarantineObserver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        options.register_opts(conf)
        group = conf[options.GROUP]
        self.dampener = Dampener(group.untrusted_passes,
                                 group.trusted_passes, group.on_revocation)
        self._compute = compute
        self._identity = tp_conf.host_identity(conf)
        self._redact = Redactor(tp_conf.secret_values(conf))
        self.observer = observer
        self._clock = clock
        self._scanned = False
        #: (service host, kind) whose skip was already told: a service
        #: someone else disabled is named once, not at every pass
        self._told: set[tuple[str, Kind]] = set()
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(
            maxsize=_QUEUE)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._passes = 0  # passes queued, not yet started
        self._gap = False  # a pass was dropped since the last one queued
        #: the hypervisors of the last pass, by hypervisor host name
        self._batch: tuple[Any, dict[str, list[Any]]] | None = None

    # -- the worker ---------------------------------------------------

    def start(self) -> Quarantine:
        """Start the worker; its first job reads the quarantined services
        from Nova."""
        self._queue.put_nowait(self.scan)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="trustpool-quarantine")
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the worker after the job at hand, waiting ``timeout``
        seconds at most; queued jobs are not done (they would act on Nova
        after the service stopped; Nova keeps the state for the next
        start)."""
        self._stopping.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the worker sees _stopping before its next job
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def join(self, timeout: float) -> bool:
        """Wait until every queued job was done (tests); whether it was."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _submit(self, job: Callable[[], None], what: str) -> bool:
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            LOG.error("quarantine: too much waiting for the Nova API; %s "
                      "is dropped", what)
            self._tell("failed")
            return False

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None or self._stopping.is_set():
                    return
                job()
            except Exception as exc:  # noqa: BLE001 - the worker goes on
                LOG.error("quarantine: a job failed (%s)",
                          type(exc).__name__)
            finally:
                self._queue.task_done()

    def wrap(self, one_pass: Callable[..., Any]) -> Callable[..., Any]:
        """``one_pass`` (a sync pass) whose result is handed to the
        worker; the pass's own result and exceptions are untouched. A pass
        that raised gave no verdict: handed on as one (unknown for every
        host), so that it breaks a trusted run."""

        def passed_on(*args: Any, **kwargs: Any) -> Any:
            try:
                result = one_pass(*args, **kwargs)
            except BaseException:
                self.after_pass(None)
                raise
            self.after_pass(result)
            return result

        return passed_on

    def after_pass(self, result: Any) -> None:
        """Queue a pass's verdicts (``result.hosts``); never raises."""
        try:
            hosts = getattr(result, "hosts", None)
            with self._lock:
                if self._passes >= _PASSES:
                    self._gap = True
                    LOG.error("quarantine: %d passes wait for the Nova "
                              "API; this one is dropped (no verdict: no "
                              "release counts across it)", self._passes)
                    self._tell("failed")
                    return
                gap, self._gap = self._gap, False
                self._passes += 1
            if not self._submit(lambda: self._pass_job(hosts, gap),
                                "a pass"):
                with self._lock:
                    self._passes -= 1
                    self._gap = True
        except Exception as exc:  # noqa: BLE001 - the pass is done anyway
            LOG.error("quarantine: a pass could not be handed on (%s)",
                      type(exc).__name__)

    def after_revocation(self, host: str, event_id: str | None,
                         signed: bool, kind: str = "revocation") -> None:
        """Queue a revocation event the listener acted on; never raises.
        A signed revocation dropped (the queue is full) is an audit event:
        a quarantine was due and is not done."""
        try:
            if not self._submit(lambda: self.after_revocation_now(
                    host, event_id, signed, kind),
                    f"the revocation of {host}") and signed \
                    and kind == "revocation" and self.dampener.on_revocation:
                event = events.quarantine_skipped_event(
                    host=host, action="disable", trigger=REVOCATION,
                    outcome="failed", why="too much waiting for the Nova "
                    "API: the revocation was dropped", event_id=event_id,
                    when=self._clock())
                event["nodes"] = [host]
                self._write(event)
        except Exception as exc:  # noqa: BLE001 - the event is answered
            LOG.error("quarantine: a revocation could not be handed on "
                      "(%s)", type(exc).__name__)

    # -- the work -----------------------------------------------------

    def scan(self) -> None:
        """Take every nova-compute service disabled with trustpool's
        reason as quarantined, and let go of every held one that is not
        so any more (someone else re-enabled or re-labelled it: it then
        needs a new run, or a signed revocation, to be quarantined
        again). Before every pass: Nova holds the state. On a Nova
        failure, logged; what is held stays held."""
        try:
            services = self._compute.compute_services()
        except Exception as exc:  # noqa: BLE001 - tried again later
            LOG.error("quarantine: cannot read the nova-compute services "
                      "(%s); services trustpool quarantined before are "
                      "released only once this works", self._short(exc))
            return
        by_host: dict[str, list[Mapping[str, Any]]] = {}
        for s in services:
            if isinstance(s.get("host"), str):
                by_host.setdefault(s["host"], []).append(s)
        held = sorted(h for h, found in by_host.items()
                      if any(is_ours(s) for s in found))
        for host in self.dampener.held():
            # a host Nova does not list (a cell it cannot reach) was not
            # re-enabled by anyone: still held
            if host not in held and by_host.get(host):
                self._let_go(host, by_host[host][0])
        was = set(self.dampener.held())
        for host in held:
            if host not in was:
                self.dampener.quarantined(host)
        if not self._scanned:
            LOG.info("quarantine: %d nova-compute service(s) quarantined "
                     "by trustpool%s", len(held),
                     f": {', '.join(held)}" if held else "")
        self._scanned = True

    def _pass_job(self, hosts: Mapping[str, HostReport] | None,
                  gap: bool) -> None:
        with self._lock:
            self._passes -= 1
        if gap:  # passes were dropped before this one: no verdict
            for host in self.dampener.hosts():
                self.dampener.observe(host, TrustLevel.UNKNOWN)
        self.after_pass_now(hosts)

    def after_pass_now(self, hosts: Mapping[str, HostReport] | None) -> None:
        """One pass's verdicts (attestation name -> report; ``None``: the
        compute nodes could not be listed, so every host is unknown)."""
        self.scan()
        levels: dict[str, list[TrustLevel]] = {}
        nodes: dict[str, list[str]] = {}
        untrusted: dict[str, list[str]] = {}
        try:
            if hosts is None:
                raise LookupError("the pass could not list compute nodes")
            for name, report in hosts.items():
                level = report.level if isinstance(
                    getattr(report, "level", None), TrustLevel) \
                    else TrustLevel.UNKNOWN
                for service_host in self._service_hosts(name, hosts):
                    levels.setdefault(service_host, []).append(level)
                    nodes.setdefault(service_host, []).append(name)
                    if level is TrustLevel.UNTRUSTED:
                        untrusted.setdefault(service_host, []).append(name)
        except Exception as exc:  # noqa: BLE001 - unknown for everyone
            LOG.error("quarantine: no verdict from this pass (%s): every "
                      "host counts as unknown (no quarantine, no release)",
                      self._short(exc))
            for host in self.dampener.hosts():
                self.dampener.observe(host, TrustLevel.UNKNOWN)
            return
        for host in self.dampener.hosts():
            if host not in levels:  # gone from this pass: no verdict
                self.dampener.observe(host, TrustLevel.UNKNOWN)
                self.dampener.forget_idle(host)
        if self._told:
            known = set(self.dampener.hosts())
            self._told = {t for t in self._told if t[0] in known}
        for host in sorted(levels):
            due = self.dampener.observe(host, worst(levels[host]))
            if due is not None:
                # a quarantine names the nodes that caused it
                self._act(due, sorted(untrusted.get(host) or nodes[host]
                                      if due.kind is Kind.QUARANTINE
                                      else nodes[host]),
                          self.dampener.runs(host).revocation_id
                          if due.trigger == REVOCATION else None)

    def after_revocation_now(self, name: str, event_id: str | None,
                             signed: bool, kind: str = "revocation") -> None:
        """An event of the Keylime verifier for the host the attestation
        service knows as ``name``. Only a signed one (its signature
        checked against ``[trustpool_events] revocation_cert_file``) of
        type ``revocation`` (a failed quote) may quarantine; a
        ``comm_error`` (the agent did not answer) is an outage, unknown:
        it ends a trusted run and does nothing else."""
        if kind != "revocation":
            try:
                hosts = self._service_hosts(name, None)
            except Exception:  # noqa: BLE001 - no action depends on it
                return
            for host in hosts:
                self.dampener.observe(host, TrustLevel.UNKNOWN)
            LOG.info("quarantine: the %s event for %s is no verdict: no "
                     "quarantine", kind, name)
            return
        if not self._scanned:
            self.scan()
        try:
            hosts = self._service_hosts(name, None)
        except Exception as exc:  # noqa: BLE001 - counted, logged
            self._not_done(name, Kind.QUARANTINE, REVOCATION, "failed",
                           "its nova-compute service could not be found: "
                           f"{self._short(exc)}", [name], event_id)
            return
        if not hosts and signed and self.dampener.on_revocation:
            self._not_done(name, Kind.QUARANTINE, REVOCATION, "failed",
                           "the Nova API lists no compute node of that name, "
                           "so no nova-compute service to disable", [name],
                           event_id)
        for host in hosts:
            if not signed:
                # ends a trusted run only: no quarantine due, now or later
                self.dampener.observe(host, TrustLevel.UNKNOWN)
                if self.dampener.on_revocation:
                    LOG.warning("quarantine: the revocation event for %s "
                                "was not signed ([trustpool_events] "
                                "revocation_cert_file is not set): it "
                                "removed the trust trait only", name)
                continue
            if self.dampener.on_revocation \
                    and self.dampener.runs(host).quarantined:
                self._check_held(host)
            due = self.dampener.revoked(host, event_id)
            if due is not None:
                self._act(due, [name], event_id)

    # -- names --------------------------------------------------------

    def _service_hosts(self, name: str, batch: Any) -> list[str]:
        """The nova-compute service host(s) of the compute node(s) the
        attestation service knows as ``name``. With ``host_attribute =
        host`` that is the name itself; with the hypervisor host name, the
        Nova API's hypervisors say (read once per ``batch``)."""
        if self._identity.needs_service_host:
            return [name]
        index = self._nodes_for(batch)
        return sorted({n.service_host for n in index.get(name, ())
                       if n.service_host})

    def _nodes_for(self, batch: Any) -> dict[str, list[Any]]:
        cached = self._batch
        if batch is not None and cached is not None and cached[0] is batch:
            return cached[1]
        index: dict[str, list[Any]] = {}
        for node in self._compute.compute_nodes():
            if node.hypervisor_hostname:
                index.setdefault(node.hypervisor_hostname, []).append(node)
        self._batch = (batch, index)
        return index

    # -- acting -------------------------------------------------------

    def _act(self, due: Due, nodes: list[str],
             event_id: str | None = None) -> None:
        try:
            service = self._compute.compute_service(due.host)
        except Exception as exc:  # noqa: BLE001 - counted, tried again
            self._not_done(due.host, due.kind, due.trigger, "failed",
                           f"the Nova API failed: {self._short(exc)}",
                           nodes, event_id)
            return
        if service is None:
            self._not_done(due.host, due.kind, due.trigger, "failed",
                           "the Nova API lists no nova-compute service on "
                           "this host", nodes, event_id)
            return
        if due.kind is Kind.QUARANTINE:
            self._quarantine(due, service, nodes, event_id)
        else:
            self._release(due, service, nodes)

    def _quarantine(self, due: Due, service: Mapping[str, Any],
                    nodes: list[str], event_id: str | None) -> None:
        if is_ours(service):
            self.dampener.quarantined(due.host)
            LOG.info("quarantine: nova-compute on %s is already "
                     "quarantined (%s)", due.host,
                     service.get("disabled_reason"))
            return
        if service.get("status") == "disabled":
            self._not_done(
                due.host, due.kind, due.trigger, "skipped",
                "disabled by someone else ("
                + (f"reason {service.get('disabled_reason')!r}"
                   if service.get("disabled_reason") else "no reason")
                + "): trustpool never touches it, and will not re-enable "
                "it", nodes, event_id, once=True)
            return
        reason = self._reason(due, nodes, event_id)
        try:
            self._compute.disable_service(service["id"], reason)
        except Exception as exc:  # noqa: BLE001 - counted, tried again
            self._not_done(due.host, due.kind, due.trigger, "failed",
                           f"the Nova API failed: {self._short(exc)}",
                           nodes, event_id)
            return
        self.dampener.quarantined(due.host)
        self._done(due, "disable", service, reason, nodes, event_id)
        LOG.warning("quarantine: disabled nova-compute on %s (%s); running "
                    "instances are not touched; it is re-enabled after %d "
                    "trusted attestations in a row", due.host, reason,
                    self.dampener.trusted_passes)

    def _check_held(self, host: str) -> None:
        """Before a revocation of a host trustpool holds: is its service
        still trustpool's? If someone else re-enabled it, the revocation
        must quarantine it again. On a Nova failure, still held."""
        try:
            service = self._compute.compute_service(host)
        except Exception:  # noqa: BLE001 - _act asks again if it must
            return
        if service is not None and not is_ours(service):
            self._let_go(host, service)

    def _let_go(self, host: str, service: Mapping[str, Any],
                due: Due | None = None, nodes: list[str] | None = None
                ) -> None:
        """A held service someone else re-enabled or re-labelled: no
        longer trustpool's; its runs start again."""
        self.dampener.let_go(host)
        how = ("re-enabled by someone else" if service.get("status")
               != "disabled" else "disabled again by someone else "
               f"(reason {service.get('disabled_reason')!r})")
        self._not_done(host, Kind.RELEASE,
                       due.trigger if due is not None else None, "skipped",
                       f"{how} while quarantined: trustpool lets go of "
                       "it and does not touch it", nodes or [host], None)

    def _release(self, due: Due, service: Mapping[str, Any],
                 nodes: list[str]) -> None:
        if not is_ours(service):
            self._let_go(due.host, service, due, nodes)
            return
        try:
            self._compute.enable_service(service["id"])
        except Exception as exc:  # noqa: BLE001 - counted, tried again
            self._not_done(due.host, due.kind, due.trigger, "failed",
                           f"the Nova API failed: {self._short(exc)}",
                           nodes, None)
            return
        self.dampener.released(due.host)
        self._done(due, "enable", service, None, nodes, None)
        LOG.warning("quarantine: re-enabled nova-compute on %s after %d "
                    "trusted attestations in a row (%s)", due.host,
                    due.passes, ", ".join(nodes))

    def _reason(self, due: Due, nodes: list[str],
                event_id: str | None) -> str:
        if due.trigger == UNTRUSTED_RUN:
            cause = f"{due.passes} untrusted attestations in a row"
        else:
            cause = ("signed Keylime revocation"
                     + (f" {event_id}" if event_id else ""))
        stamp = datetime.datetime.fromtimestamp(
            int(self._clock()), datetime.timezone.utc).isoformat()
        names = ", ".join(nodes)
        text = f"{REASON_PREFIX}: {cause} ({names}) at {stamp}"
        if len(text) > _REASON_MAX:
            tail = f") at {stamp}"
            text = f"{REASON_PREFIX}: {cause} ({names}"[
                :_REASON_MAX - len(tail) - 3] + "..." + tail
        return text

    def _done(self, due: Due, action: str, service: Mapping[str, Any],
              reason: str | None, nodes: list[str],
              event_id: str | None) -> None:
        self._told = {t for t in self._told if t[0] != due.host}
        event = events.quarantine_event(
            host=due.host, action=action, trigger=due.trigger,
            reason=reason, event_id=event_id, when=self._clock())
        event.update({"service_id": service.get("id"), "nodes": nodes})
        if due.trigger != REVOCATION:
            event["passes"] = due.passes
        self._write(event)
        self._tell("quarantine" if action == "disable" else "release")

    def _not_done(self, host: str, kind: Kind, trigger: str | None,
                  outcome: str,
                  why: str, nodes: list[str], event_id: str | None,
                  once: bool = False) -> None:
        action = "disable" if kind is Kind.QUARANTINE else "enable"
        if once:
            if (host, kind) in self._told:
                return
            self._told.add((host, kind))
        (LOG.error if outcome == "failed" else LOG.warning)(
            "quarantine: did not %s nova-compute on %s (%s, due after %s): "
            "%s", action, host, ", ".join(nodes),
            (trigger or "a check of Nova").replace("_", " "), why)
        event = events.quarantine_skipped_event(
            host=host, action=action, trigger=trigger, outcome=outcome,
            why=why, event_id=event_id, when=self._clock())
        event["nodes"] = nodes
        self._write(event)
        self._tell(outcome)

    def _write(self, event: Mapping[str, Any]) -> None:
        try:
            events.write(event)
        except Exception as exc:  # noqa: BLE001 - the action is done
            LOG.error("quarantine: could not write the audit event (%s)",
                      type(exc).__name__)

    def _tell(self, action: str) -> None:
        observer = self.observer
        if observer is None:
            return
        try:
            observer.quarantine_action(action)
        except Exception:  # noqa: BLE001, S110 - measuring changes nothing
            pass

    def _short(self, exc: object) -> str:
        return " ".join(self._redact(exc).split())[:_QUOTE]
