# SPDX-License-Identifier: Apache-2.0
"""Per-instance provenance: which decision placed an instance, and what
the logs say about its host since.

One pass, like the report: only the instance's own decisions and what
later events say about the host(s) that admitted it are kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from trustpool import events

__all__ = ["HostHistory", "Provenance", "MAX_DECISIONS", "trace"]

#: Decisions of one instance kept (reschedules, moves); more are counted.
MAX_DECISIONS = 100


@dataclasses.dataclass
class HostHistory:
    """What later events said about one admitting host."""

    host: str
    then: events.Verdict
    first_not_trusted: tuple[float, str, str | None] | None = None
    last_seen: tuple[float, str] | None = None
    trust_lost: list[events.TrustLost] = dataclasses.field(
        default_factory=list)


@dataclasses.dataclass
class Provenance:
    instance: str
    decisions: list[events.Decision] = dataclasses.field(
        default_factory=list)
    decisions_total: int = 0
    placed: events.Decision | None = None
    #: the latest decision that admitted the instance anywhere (differs
    #: from ``placed`` when Nova named a host none of them admitted)
    latest_admitted: events.Decision | None = None
    hosts: dict[str, HostHistory] = dataclasses.field(default_factory=dict)
    #: trust-loss events after the placement that list the instance
    listed_in: list[events.TrustLost] = dataclasses.field(
        default_factory=list)


def trace(stream: Iterable[events.Event], instance: str,
          host: str | None = None) -> Provenance:
    """Follow ``instance`` through the events. ``host`` is where Nova
    says it runs now: then the placement is the latest decision that
    admitted it there; otherwise the latest that admitted it anywhere."""
    result = Provenance(instance)
    for event in stream:
        if isinstance(event, events.Decision):
            if event.instance_uuid == instance:
                _own(result, event, host)
            elif result.placed is not None:
                _later(result, event)
        elif isinstance(event, events.TrustLost) and \
                result.placed is not None and \
                event.time >= result.placed.time:
            history = result.hosts.get(event.host)
            if history is not None:
                history.trust_lost.append(event)
            if any(i.instance == instance for i in event.instances):
                result.listed_in.append(event)
    return result


def _own(result: Provenance, event: events.Decision,
         host: str | None) -> None:
    result.decisions_total += 1
    if len(result.decisions) < MAX_DECISIONS:
        result.decisions.append(event)
    admitted = [v for v in event.hosts if v.passed and v.host]
    if not (event.valid and admitted):
        if result.placed is not None:
            _later(result, event)
        return
    result.latest_admitted = event
    if host is not None:
        admitted = [v for v in admitted if v.host == host]
        if not admitted:
            if result.placed is not None:
                _later(result, event)
            return
    result.placed = event
    result.listed_in.clear()
    result.hosts = {v.host: HostHistory(v.host, v) for v in admitted
                    if v.host is not None}


def _later(result: Provenance, event: events.Decision) -> None:
    for verdict in event.hosts:
        history = result.hosts.get(verdict.host or "")
        if history is None or verdict.level is None:
            continue
        history.last_seen = (event.time, verdict.level)
        if verdict.level != "trusted" and history.first_not_trusted is None:
            history.first_not_trusted = (event.time, verdict.level,
                                         verdict.reason)
