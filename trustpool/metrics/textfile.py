# SPDX-License-Identifier: Apache-2.0
"""``trustpool status --format prometheus``: the host gauges of one
status run, for node_exporter's textfile collector, where no service
runs. The age is as of the run; alert on
``time() - trustpool_host_last_attestation_timestamp_seconds`` instead,
which stays right however long ago the file was written."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from trustpool.attestation import HostReport
from trustpool.metrics.families import HostState, host_families, state_of

__all__ = ["render"]


class _Snapshot(Collector):
    def __init__(self, states: dict[str, HostState], now: float) -> None:
        self._states = states
        self._now = now

    def collect(self):  # type: ignore[no-untyped-def]
        return host_families(self._states, self._now)


def render(reports: Iterable[HostReport], now: float | None = None) -> str:
    """The text exposition of ``reports``, answered at ``now``."""
    now = time.time() if now is None else now
    states = {r.hostname: state_of(r, now) for r in reports}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(states, now))
    return generate_latest(registry).decode("utf-8")
