# SPDX-License-Identifier: Apache-2.0
"""What the long-running service measures, in one registry of its own.

Fed from hooks, so that neither the library, the pass nor the event
listener knows about Prometheus: the attestation client's observer (every
exchange, its time and cause of failure), a wrapper around each sync pass
(its time and its :class:`~trustpool.trait_sync.SyncResult`) and, when
the Keylime event listener runs, its observer
(:class:`RevocationMetrics`, which has the methods
``trustpool.revocation.observer.EventObserver`` names; this package does
not import that one, they are siblings).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from trustpool import trait_sync
from trustpool.attestation import TrustLevel
from trustpool.exceptions import CAUSES, Cause
from trustpool.metrics.families import (
    HOST_METRICS,
    HostState,
    host_families,
    state_of,
)
from trustpool.trait_sync import SyncResult

__all__ = ["EVENT_METRICS", "EXPORTED", "QUARANTINE_METRICS",
           "QuarantineMetrics", "RevocationMetrics", "ServiceMetrics"]

_EXCHANGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                     5.0, 10.0, 30.0)
_PASS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                 300.0)
#: the goal is a second; Keylime retries an unanswered event for minutes
_REVOCATION_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
                       60.0, 300.0, 900.0, 3600.0)
_HANDLING_BUCKETS = _EXCHANGE_BUCKETS

#: the label values of the revocation counters, exported from 0; the same
#: words as trustpool.revocation.observer's (a unit test compares them)
REVOCATION_OUTCOMES = ("removed", "no_trait", "unknown_agent", "failed")
REVOCATION_REFUSALS = ("unsigned", "bad_signature", "malformed",
                       "too_large", "method", "other")
#: the families of :class:`RevocationMetrics`, there only when the event
#: listener runs
EVENT_METRICS = ("trustpool_revocation_events_total",
                 "trustpool_revocation_events_refused_total",
                 "trustpool_revocation_latency_seconds",
                 "trustpool_revocation_handling_duration_seconds",
                 "trustpool_revocation_last_event_timestamp_seconds")

#: the label values of the quarantine counter, exported from 0; the same
#: words as trustpool.quarantine.observer's (a unit test compares them)
QUARANTINE_ACTIONS = ("quarantine", "release", "skipped", "failed")
#: the families of :class:`QuarantineMetrics`, there only with
#: ``[trustpool_quarantine] enabled``
QUARANTINE_METRICS = ("trustpool_quarantine_actions_total",)

#: every metric family the service exports besides process_*, by name as
#: it appears in PromQL (counters with their ``_total``); the
#: :data:`EVENT_METRICS` only with ``[trustpool_events] listen``, the
#: :data:`QUARANTINE_METRICS` only with quarantine enabled
EXPORTED = (*HOST_METRICS,
            "trustpool_attestation_request_duration_seconds",
            "trustpool_attestation_failures_total",
            "trustpool_trait_additions_total",
            "trustpool_trait_removals_total",
            "trustpool_sync_passes_total",
            "trustpool_sync_pass_duration_seconds",
            "trustpool_sync_last_success_timestamp_seconds",
            *EVENT_METRICS, *QUARANTINE_METRICS)


class ServiceMetrics:
    """The service's metrics; thread-safe (passes write, scrapes read)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # No *_created series beside each counter and histogram: they
        # double the series for a start time process_start_time_seconds
        # already gives. Process-wide, and the service owns its process.
        disable_created_metrics()
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.exchange_seconds = Histogram(
            "trustpool_attestation_request_duration_seconds",
            "Time of one exchange with the attestation service (one "
            "backend call for a batch of hosts), failed ones included.",
            buckets=_EXCHANGE_BUCKETS, registry=r)
        self.failures = Counter(
            "trustpool_attestation_failures",
            "Failed exchanges with the attestation service, by cause: "
            "timeout, tls, http_status, malformed, connection, other.",
            ["cause"], registry=r)
        for cause in CAUSES:
            self.failures.labels(cause)  # every cause exported from 0
        self.additions = Counter(
            "trustpool_trait_additions",
            "Compute node providers given the trust trait.", registry=r)
        self.removals = Counter(
            "trustpool_trait_removals",
            "Providers the trust trait was removed from.", registry=r)
        self.passes = Counter(
            "trustpool_sync_passes",
            "Sync passes, by outcome: ok (the carriers of the trait are "
            "exactly the hosts attested trusted) or failed.",
            ["outcome"], registry=r)
        for outcome in ("ok", "failed"):
            self.passes.labels(outcome)
        self.pass_seconds = Histogram(
            "trustpool_sync_pass_duration_seconds",
            "Time of one sync pass: listing, attesting, writing traits.",
            buckets=_PASS_BUCKETS, registry=r)
        self.last_success = Gauge(
            "trustpool_sync_last_success_timestamp_seconds",
            "Unix time at which the last successful sync pass ended (0: "
            "none yet).", registry=r)
        self._lock = threading.Lock()
        self._hosts: dict[str, HostState] = {}
        self._revocations: RevocationMetrics | None = None
        self._quarantine: QuarantineMetrics | None = None
        r.register(_HostGauges(self))
        ProcessCollector(registry=r)

    def revocations(self) -> RevocationMetrics:
        """The event listener's observer, its families registered on the
        first call (a service without the listener exports none)."""
        with self._lock:
            if self._revocations is None:
                self._revocations = RevocationMetrics(self.registry)
            return self._revocations

    def quarantine(self) -> QuarantineMetrics:
        """Quarantine's observer, its counter registered on the first
        call (a service without quarantine exports none)."""
        with self._lock:
            if self._quarantine is None:
                self._quarantine = QuarantineMetrics(self.registry)
            return self._quarantine

    def observe_attestation(self, seconds: float,
                            cause: Cause | None) -> None:
        """The attestation client's observer."""
        self.exchange_seconds.observe(max(0.0, seconds))
        if cause is not None:
            self.failures.labels(cause if cause in CAUSES else "other").inc()

    def timed(self, one_pass: Callable[..., SyncResult] | None = None
              ) -> Callable[..., SyncResult]:
        """``one_pass`` (by default :func:`trustpool.trait_sync.sync`)
        with every call measured and its result recorded."""
        inner = one_pass or trait_sync.sync

        def measured(*args: Any, **kwargs: Any) -> SyncResult:
            started = time.monotonic()
            try:
                result = inner(*args, **kwargs)
            except BaseException:
                self.pass_seconds.observe(time.monotonic() - started)
                self.passes.labels("failed").inc()
                self.forget_verdicts()
                raise
            self.record_pass(result, time.monotonic() - started)
            return result

        return measured

    def record_pass(self, result: SyncResult, seconds: float) -> None:
        """Count what a pass did and keep its hosts' levels."""
        self.pass_seconds.observe(max(0.0, seconds))
        self.additions.inc(max(0, result.added))
        self.removals.inc(max(0, result.removed))
        self.passes.labels("ok" if result.ok else "failed").inc()
        now = self._clock()
        if result.ok:
            self.last_success.set(now)
        if result.hosts is None:
            self.forget_verdicts()
            return
        arrived = result.attested_at or now
        with self._lock:
            old = self._hosts
            # the hosts of this pass only: a node gone from Placement
            # leaves the gauges, so the host label stays fleet-sized
            self._hosts = {name: state_of(report, arrived, old.get(name))
                           for name, report in result.hosts.items()}

    def forget_verdicts(self) -> None:
        """After a pass that could not list the hosts: every known host
        counts as unknown (its last verdict's time is kept)."""
        with self._lock:
            self._hosts = {name: HostState(TrustLevel.UNKNOWN,
                                           state.last_verdict)
                           for name, state in self._hosts.items()}

    def host_families(self) -> Iterable[Metric]:
        with self._lock:
            states = dict(self._hosts)
        return host_families(states, self._clock())


class _HostGauges(Collector):
    """The host gauges, computed at each scrape (so the ages are)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return host_families({}, 0.0)

    def collect(self) -> Iterable[Metric]:
        return self._metrics.host_families()


class RevocationMetrics:
    """What the Keylime event listener tells, counted (thread-safe: the
    listener answers from many threads)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events = Counter(
            "trustpool_revocation_events",
            "Verified revocation events answered, by outcome: removed (the "
            "trust trait was removed now), no_trait (the host had none), "
            "unknown_agent (maps to no host; answered 200, nothing "
            "changed), failed (Placement did not confirm; answered 5xx, "
            "the verifier retries).", ["outcome"], registry=r)
        for outcome in REVOCATION_OUTCOMES:
            self.events.labels(outcome)
        self.refused = Counter(
            "trustpool_revocation_events_refused",
            "Requests and connections the event listener turned away, by "
            "reason: unsigned (401), bad_signature (403), malformed (400, "
            "411: not Keylime's shape, unframed or cut short), too_large "
            "(413), method (405, 501), other (a failed TLS handshake or "
            "client certificate, a reset, no free slot, an internal "
            "error).", ["reason"], registry=r)
        for reason in REVOCATION_REFUSALS:
            self.refused.labels(reason)
        self.latency = Histogram(
            "trustpool_revocation_latency_seconds",
            "From the verifier's time for an event (its event_time, to the "
            "second, so up to 1 s above the truth) to Placement confirming "
            "the trait removal; events that removed the trait and carry a "
            "time this service can read.",
            buckets=_REVOCATION_BUCKETS, registry=r)
        self.handling = Histogram(
            "trustpool_revocation_handling_duration_seconds",
            "From receipt of a verified event's request to its answer "
            "written, whatever the outcome.",
            buckets=_HANDLING_BUCKETS, registry=r)
        self.last_event = Gauge(
            "trustpool_revocation_last_event_timestamp_seconds",
            "Unix time at which the last verified revocation event was "
            "received (0: none yet).", registry=r)
        self._lock = threading.Lock()
        self._last = 0.0

    def revocation_event(self, outcome: str, received_at: float,
                         seconds: float, latency: float | None) -> None:
        """A verified event was answered (``EventObserver``)."""
        if outcome not in REVOCATION_OUTCOMES:
            outcome = "failed"
        self.events.labels(outcome).inc()
        self.handling.observe(max(0.0, seconds))
        if latency is not None:
            self.latency.observe(max(0.0, latency))
        with self._lock:
            # answers finish in any order; the gauge never goes back
            if received_at > self._last:
                self._last = received_at
                self.last_event.set(received_at)

    def revocation_refused(self, reason: str) -> None:
        """A request or connection was turned away (``EventObserver``)."""
        self.refused.labels(reason if reason in REVOCATION_REFUSALS
                            else "other").inc()


class QuarantineMetrics:
    """What quarantine tells, counted (``QuarantineObserver`` of
    :mod:`trustpool.quarantine.observer`, not imported: siblings)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "trustpool_quarantine_actions",
            "Quarantine actions on nova-compute services, by action: "
            "quarantine (disabled by trustpool), release (a service "
            "trustpool disabled was re-enabled), skipped (due, but the "
            "service is someone else's: trustpool leaves it alone), failed "
            "(due, but the Nova API failed or lists no such service; tried "
            "again at the next pass that calls for it).", ["action"],
            registry=registry)
        for action in QUARANTINE_ACTIONS:
            self.actions.labels(action)

    def quarantine_action(self, action: str) -> None:
        self.actions.labels(action if action in QUARANTINE_ACTIONS
                            else "failed").inc()
