# SPDX-License-Identifier: Apache-2.0
"""One pass over the events, in memory bounded by the fleet, not the log.

What grows with the log is only counted: per flavor, per time bucket (at
most :data:`MAX_BUCKETS`, widened as the span grows), and per host (one
byte per host and bucket). Rows (a placement, a refusal, a trust loss) go
to a sink as they come, for the CSV and JSON formats that list them all,
and at most ``max_rows`` of each kind per section are kept for the page,
with a count of the rest.

A host's level in a bucket is the worst it was seen at in that bucket
(untrusted over unknown over trusted), so the chart does not depend on
the order the logs are read in, and never shows a host better than it was.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

from trustpool import events

__all__ = ["LEVELS", "MAX_BUCKETS", "Aggregator", "FlavorStats", "Record"]

Record = dict[str, Any]

#: Codes per host per bucket; a higher code is a worse level.
_NONE, _TRUSTED, _UNKNOWN, _UNTRUSTED = 0, 1, 2, 3
_CODE = {"trusted": _TRUSTED, "untrusted": _UNTRUSTED}
LEVELS = ("trusted", "unknown", "untrusted")
#: Bucket widths in seconds; each is a multiple of the one before, so a
#: widening merges whole buckets.
_WIDTHS = (60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800,
           2419200, 29030400)
MAX_BUCKETS = 200
#: Hosts tracked by name (charts, drift); observations of more are
#: counted, not tracked: a hostile log must not grow memory without end.
MAX_HOSTS = 200_000
MAX_FLAVORS = 500
MAX_REASONS = 100
#: The page keeps at most this many flavors' worth of rows (``max_rows``
#: each); the rest of the rows are counted.
PAGE_ROW_BUDGET_FLAVORS = 10
#: Admitted hosts listed in one placement row kept for the page.
_ROW_HOSTS = 5
_OTHER_FLAVORS = "(other flavors)"
_OTHER_REASONS = "(other reasons)"


@dataclasses.dataclass
class FlavorStats:
    """One flavor's counts and the rows kept for the page."""

    name: str
    wanted: Counter[str] = dataclasses.field(default_factory=Counter)
    placements: int = 0
    refusals: int = 0
    invalid: int = 0
    reasons: Counter[str] = dataclasses.field(default_factory=Counter)
    placement_rows: list[Record] = dataclasses.field(default_factory=list)
    refusal_rows: list[Record] = dataclasses.field(default_factory=list)


class _Kept:
    """The first ``cap`` rows of a section, and how many more there were."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.rows: list[Record] = []
        self.left_out = 0

    def add(self, row: Record) -> None:
        if len(self.rows) < self.cap:
            self.rows.append(row)
        else:
            self.left_out += 1


def _verdict(v: events.Verdict) -> Record:
    return {"host": v.host, "level": v.level, "server_time": v.server_time,
            "age_seconds": v.age_seconds, "backend": v.backend,
            "reason": v.reason}


def _oldest(verdicts: list[events.Verdict]) -> events.Verdict:
    """The weakest proof among several: no server time first, then the
    oldest answer."""
    return max(verdicts, key=lambda v: (
        v.age_seconds is None, v.age_seconds or 0.0))


class Aggregator:
    """Feed it events with :meth:`add`; read the result afterwards."""

    def __init__(self, *, since: float | None = None,
                 until: float | None = None, max_rows: int = 500,
                 sink: Callable[[Record], None] | None = None) -> None:
        self.since, self.until = since, until
        self.max_rows = max_rows
        self._sink = sink
        self.flavors: dict[str, FlavorStats] = {}
        self.placements = self.refusals = self.invalid = 0
        self.rejections = 0
        self.trust_lost = _Kept(max_rows)
        self.trust_lost_count = 0
        self.instances_on_lost_hosts = 0
        self.quarantine = _Kept(max_rows)
        self.quarantine_count: Counter[str] = Counter()
        self.drift = _Kept(max_rows)
        #: placement and refusal rows kept for the page, all flavors
        #: together: many flavors must not multiply the page's memory
        self._page_rows = 0
        self._page_budget = PAGE_ROW_BUDGET_FLAVORS * max_rows
        self.drift_count: Counter[str] = Counter()
        self.first: float | None = None
        self.last: float | None = None
        # per host
        self._hosts: dict[str, int] = {}
        self._names: list[str] = []
        self._level = bytearray()
        self._last_trusted = array("d")
        self._admitting = bytearray()
        self.untracked_observations = 0
        # per bucket
        self.width = _WIDTHS[0]
        if since is not None and until is not None and until > since:
            for width in _WIDTHS:
                self.width = width
                if (until - since) / width <= MAX_BUCKETS:
                    break
        self._buckets: dict[int, bytearray] = {}
        self._low: int | None = None
        self._high: int | None = None
        self.refusals_by_bucket: Counter[int] = Counter()
        self.placements_by_bucket: Counter[int] = Counter()
        self.losses_by_bucket: Counter[int] = Counter()

    # -- input ----------------------------------------------------------

    def add(self, event: events.Event) -> None:
        """Count one event (unknown types are the reader's business)."""
        when = event.time
        if when is None:
            return
        if self.first is None or when < self.first:
            self.first = when
        if self.last is None or when > self.last:
            self.last = when
        if isinstance(event, events.Decision):
            self._decision(event)
        elif isinstance(event, events.TrustLost):
            self._trust_lost(event)
        elif isinstance(event, events.Quarantine):
            self._quarantine(event)
        elif isinstance(event, events.QuarantineSkipped):
            self._quarantine_skipped(event)

    def _emit(self, row: Record) -> None:
        if self._sink is not None:
            self._sink(row)

    def _flavor(self, name: str) -> FlavorStats:
        stats = self.flavors.get(name)
        if stats is None:
            if len(self.flavors) >= MAX_FLAVORS:
                name = _OTHER_FLAVORS
                stats = self.flavors.get(name)
            if stats is None:
                stats = self.flavors[name] = FlavorStats(name)
        return stats

    def _decision(self, event: events.Decision) -> None:
        flavor = self._flavor(event.flavor)
        flavor.wanted[event.wanted] += 1
        when = event.time
        bucket = self._bucket(when)
        observe, code_of = self._observe, _CODE.get
        for verdict in event.hosts:
            if verdict.host is not None and verdict.level is not None:
                observe(verdict.host, code_of(verdict.level, _UNKNOWN), when,
                        bucket, verdict.reason)
        admitted = [v for v in event.hosts if v.passed]
        placed = bool(admitted) and event.valid
        rows = flavor.placement_rows if placed else flavor.refusal_rows
        keep = len(rows) < self.max_rows and \
            self._page_rows < self._page_budget
        if keep:
            self._page_rows += 1
        if self._sink is None and not keep:
            base: Record = {}
        else:
            base = {"time": events.format_time(when),
                    "flavor": event.flavor, "wanted": event.wanted,
                    "instance": event.instance_uuid,
                    "request_id": event.request_id,
                    "project_id": event.project_id,
                    "candidates": len(event.hosts)}
        if placed:
            self.placements += 1
            flavor.placements += 1
            self.placements_by_bucket[bucket] += 1
            self.rejections += len(event.hosts) - len(admitted)
            for v in admitted:
                index = self._index(v.host)
                if index is not None:
                    self._admitting[index] = 1
            if not base:
                return
            proof = admitted[0] if len(admitted) == 1 else _oldest(admitted)
            row = {"record": "placement", **base,
                   "host": admitted[0].host if len(admitted) == 1 else None,
                   "admitted_hosts": len(admitted), "level": proof.level,
                   "server_time": proof.server_time,
                   "age_seconds": proof.age_seconds,
                   "backend": proof.backend, "reason": proof.reason}
            if self._sink is not None:
                self._sink({**row, "admitted": [_verdict(v)
                                                for v in admitted]})
            if keep:
                rows.append({**row, "admitted": [
                    _verdict(v) for v in admitted[:_ROW_HOSTS]]})
            return
        self.refusals += 1
        flavor.refusals += 1
        self.refusals_by_bucket[bucket] += 1
        self.rejections += len(event.hosts)
        if not event.valid:
            self.invalid += 1
            flavor.invalid += 1
            reasons: Counter[str] = Counter(
                {f"invalid trust:trusted_host value {event.wanted!r}": 1})
        elif not event.hosts:
            reasons = Counter({"no candidate hosts": 1})
        else:
            reasons = Counter(v.reason or "no reason given"
                              for v in event.hosts)
        for reason, count in reasons.items():
            if reason not in flavor.reasons and \
                    len(flavor.reasons) >= MAX_REASONS:
                reason = _OTHER_REASONS
            flavor.reasons[reason] += count
        if not base:
            return
        top = reasons.most_common(3)
        text = "; ".join(f"{n} x {r}" for r, n in top)
        if len(reasons) > 3:
            text += f"; {len(reasons) - 3} more reason(s)"
        row = {"record": "refusal", **base, "reason": text,
               "reasons": [{"reason": r, "hosts": n}
                           for r, n in reasons.most_common()]}
        self._emit(row)
        if keep:
            rows.append({**row, "reasons": row["reasons"][:5]})

    def _trust_lost(self, event: events.TrustLost) -> None:
        bucket = self._bucket(event.time)
        self.trust_lost_count += 1
        self.losses_by_bucket[bucket] += 1
        self.instances_on_lost_hosts += len(event.instances)
        self._observe(event.host, _UNTRUSTED, event.time, bucket, None)
        row = {"record": "trust_lost", "time": events.format_time(event.time),
               "host": event.host, "agent_id": event.agent_id,
               "source": event.source, "event_id": event.event_id,
               "event_time": event.event_time, "severity": event.severity,
               "context": event.context,
               "trait_removed": event.trait_removed,
               "instances": [dataclasses.asdict(i) for i in event.instances]}
        self._emit(row)
        self.trust_lost.add(row)

    def _quarantine(self, event: events.Quarantine) -> None:
        self._bucket(event.time)
        self.quarantine_count[event.action] += 1
        row = {"record": "quarantine", "time": events.format_time(event.time),
               "host": event.host, "action": event.action,
               "outcome": "done",
               "trigger": event.trigger, "reason": event.reason,
               "event_id": event.event_id,
               "instances": [dataclasses.asdict(i) for i in event.instances]}
        self._emit(row)
        self.quarantine.add(row)

    def _quarantine_skipped(self, event: events.QuarantineSkipped) -> None:
        """A quarantine action that was due and not done: counted by its
        outcome (``skipped``, ``failed``), never as a disable or enable."""
        self._bucket(event.time)
        self.quarantine_count[event.outcome] += 1
        row: Record = {
            "record": "quarantine", "time": events.format_time(event.time),
            "host": event.host, "action": event.action,
            "outcome": event.outcome, "trigger": event.trigger,
            "reason": event.why, "event_id": event.event_id,
            "instances": []}
        self._emit(row)
        self.quarantine.add(row)

    # -- hosts ----------------------------------------------------------

    def _index(self, host: str | None) -> int | None:
        if host is None:
            return None
        index = self._hosts.get(host)
        if index is None:
            if len(self._names) >= MAX_HOSTS:
                self.untracked_observations += 1
                return None
            index = self._hosts[host] = len(self._names)
            self._names.append(host)
            self._level.append(_NONE)
            self._last_trusted.append(0.0)
            self._admitting.append(0)
        return index

    def _observe(self, host: str | None, code: int, when: float,
                 bucket: int, reason: str | None) -> None:
        index = self._index(host)
        if index is None:
            return
        seen = self._buckets.get(bucket)
        if seen is None:
            seen = self._buckets[bucket] = bytearray()
        if len(seen) <= index:
            seen.extend(bytes(len(self._names) - len(seen)))
        if code > seen[index]:
            seen[index] = code
        before = self._level[index]
        self._level[index] = code
        if code == _TRUSTED:
            self._last_trusted[index] = when
        elif before == _TRUSTED and reason is not None:
            # a trust_lost event (reason None) is listed in its own right
            level = "untrusted" if code == _UNTRUSTED else "unknown"
            self.drift_count[level] += 1
            row = {"record": "drift", "time": events.format_time(when),
                   "host": host, "level": level, "reason": reason,
                   "last_trusted": events.format_time(
                       self._last_trusted[index])}
            self._emit(row)
            self.drift.add(row)

    # -- time buckets ---------------------------------------------------

    def _bucket(self, when: float) -> int:
        key = int(when // self.width)
        if self._low is None or self._high is None:
            self._low = self._high = key
            return key
        low, high = min(self._low, key), max(self._high, key)
        while high - low + 1 > MAX_BUCKETS and self.width != _WIDTHS[-1]:
            ratio = self._widen()
            key = int(when // self.width)
            low, high = low // ratio, high // ratio
        self._low, self._high = low, high
        return key

    def _widen(self) -> int:
        old = self.width
        self.width = next(w for w in _WIDTHS if w > old)
        ratio = self.width // old
        merged: dict[int, bytearray] = {}
        for key, seen in self._buckets.items():
            new = key // ratio
            into = merged.get(new)
            if into is None:
                merged[new] = seen
                continue
            size = max(len(into), len(seen))
            into.extend(bytes(size - len(into)))
            seen.extend(bytes(size - len(seen)))
            merged[new] = bytearray(map(max, into, seen))
        self._buckets = merged
        for counter in (self.refusals_by_bucket, self.placements_by_bucket,
                        self.losses_by_bucket):
            moved: Counter[int] = Counter()
            for key, count in counter.items():
                moved[key // ratio] += count
            counter.clear()
            counter.update(moved)
        return ratio

    # -- results --------------------------------------------------------

    def timeline(self) -> list[Record]:
        """One entry per bucket from the window's start to its end: its
        start time and width, hosts by (worst) level, placements, refusals
        and trust losses."""
        start = self.since if self.since is not None else self.first
        end = self.until if self.until is not None else self.last
        if start is None or end is None:
            return []
        first = int(start // self.width)
        if self.until is not None:  # exclusive
            end = max(start, end - 1e-6)
        last = int(end // self.width)
        rows = []
        for key in range(first, last + 1):
            seen = self._buckets.get(key, b"")
            rows.append({
                "start": events.format_time(key * self.width),
                "seconds": self.width,
                "trusted": seen.count(_TRUSTED),
                "unknown": seen.count(_UNKNOWN),
                "untrusted": seen.count(_UNTRUSTED),
                "placements": self.placements_by_bucket.get(key, 0),
                "refusals": self.refusals_by_bucket.get(key, 0),
                "trust_lost": self.losses_by_bucket.get(key, 0)})
        return rows

    def summary(self) -> Record:
        """The figures at the top of the report."""
        last = {level: 0 for level in LEVELS}
        names = {_TRUSTED: "trusted", _UNKNOWN: "unknown",
                 _UNTRUSTED: "untrusted"}
        for code in (_TRUSTED, _UNKNOWN, _UNTRUSTED):
            last[names[code]] = self._level.count(code)
        return {
            "placements": self.placements,
            "refusals": self.refusals,
            "invalid_requests": self.invalid,
            "candidate_hosts_rejected": self.rejections,
            "flavors": len(self.flavors),
            "hosts_seen": len(self._names),
            "hosts_admitting": self._admitting.count(1),
            "hosts_by_last_level": last,
            "drift": {"untrusted": self.drift_count["untrusted"],
                      "unknown": self.drift_count["unknown"]},
            "trust_lost": self.trust_lost_count,
            "instances_on_lost_hosts": self.instances_on_lost_hosts,
            "quarantine": {"disable": self.quarantine_count["disable"],
                           "enable": self.quarantine_count["enable"],
                           "skipped": self.quarantine_count["skipped"],
                           "failed": self.quarantine_count["failed"]},
            "untracked_host_observations": self.untracked_observations,
            "first_event": None if self.first is None
            else events.format_time(self.first),
            "last_event": None if self.last is None
            else events.format_time(self.last),
        }
