# SPDX-License-Identifier: Apache-2.0
"""The per-host gauges, built the same way for the service's ``/metrics``
and for ``trustpool status --format prometheus``.

Labels stay bounded: ``level`` takes the three trust levels only, ``host``
one value per compute node (fleet size); no instance, request or agent id
is ever a label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

from trustpool.attestation import HostReport, TrustLevel

__all__ = ["HOST_METRICS", "HostState", "host_families", "state_of"]

LEVELS = tuple(level.value for level in TrustLevel)

#: name -> help of every host gauge
HOST_METRICS = {
    "trustpool_hosts": "Compute hosts by the trust level of their latest "
    "attestation (label level: trusted, untrusted, unknown).",
    "trustpool_host_trusted": "1 if the host's latest attestation said "
    "trusted, else 0 (untrusted, unknown, failed).",
    "trustpool_host_last_attestation_timestamp_seconds": "Unix time of the "
    "host's last attestation verdict (trusted or untrusted): the service's "
    "own time for it, capped at when the answer arrived. Absent for a host "
    "never given a verdict.",
    "trustpool_host_last_attestation_age_seconds": "Seconds since the "
    "host's last attestation verdict (trusted or untrusted), at the time "
    "of the scrape. Absent for a host never given a verdict.",
}


@dataclasses.dataclass(frozen=True)
class HostState:
    """What the gauges say about one host."""

    level: TrustLevel
    #: wall-clock time of its last verdict; ``None``: never had one
    last_verdict: float | None


def state_of(report: HostReport, arrived: float,
             previous: HostState | None = None) -> HostState:
    """A host's state after ``report``, which arrived at ``arrived``.

    A verdict (trusted or untrusted) dates from the server's own time,
    never later than the answer's arrival (a clock ahead of ours cannot
    make it look newer); ``unknown`` is no verdict, so the previous one's
    time is kept and its age goes on growing.
    """
    level = report.level if isinstance(report.level, TrustLevel) \
        else TrustLevel.UNKNOWN
    if level is TrustLevel.UNKNOWN:
        return HostState(level, previous.last_verdict if previous else None)
    vtime = report.vtime
    when = arrived if vtime is None else min(vtime.timestamp(), arrived)
    return HostState(level, when)


def host_families(states: Mapping[str, HostState],
                  now: float) -> Iterable[Metric]:
    """The four host gauges for ``states`` (host name -> state)."""
    counts = dict.fromkeys(LEVELS, 0)
    for state in states.values():
        counts[state.level.value] += 1
    hosts = GaugeMetricFamily("trustpool_hosts",
                              HOST_METRICS["trustpool_hosts"],
                              labels=["level"])
    for level in LEVELS:
        hosts.add_metric([level], counts[level])
    yield hosts
    trusted = GaugeMetricFamily(
        "trustpool_host_trusted", HOST_METRICS["trustpool_host_trusted"],
        labels=["host"])
    stamp = GaugeMetricFamily(
        "trustpool_host_last_attestation_timestamp_seconds",
        HOST_METRICS["trustpool_host_last_attestation_timestamp_seconds"],
        labels=["host"])
    age = GaugeMetricFamily(
        "trustpool_host_last_attestation_age_seconds",
        HOST_METRICS["trustpool_host_last_attestation_age_seconds"],
        labels=["host"])
    for name in sorted(states):
        state = states[name]
        trusted.add_metric([name], int(state.level is TrustLevel.TRUSTED))
        if state.last_verdict is not None:
            stamp.add_metric([name], state.last_verdict)
            age.add_metric([name], max(0.0, now - state.last_verdict))
    yield trusted
    yield stamp
    yield age
