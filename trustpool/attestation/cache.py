# SPDX-License-Identifier: Apache-2.0
"""Per-host answers, each valid until a deadline on the monotonic clock.

Not ``cachetools.TTLCache``, which the design first named. Measured again
(2026-11-23, ``python -m benchmarks.cache_vs_ttlcache``: 10,000 reports,
median of 15 rounds, the machine busy with CI, so read the ratios, not the
microseconds): storing an answer cost 1.16-1.23 µs per host in a TTLCache
against 0.10-0.11 µs here (11.6x), and looking 10,000 names up 1.09-1.19
against 0.07-0.09 µs per host (12-16x). (An earlier
comment here said 5-13 µs per host; that did not reproduce.) TTLCache also
stamps each entry with its own time, so one answer would expire in
fragments and be refreshed piecemeal; here a whole answer is stored with
one deadline, and a look-up is a dict access and a float comparison.

Look-ups take no lock. What they read is a snapshot that nothing changes
once it is published: a store builds the next snapshot beside it and
publishes it with one assignment. Why: with a lock, eight scheduling
threads queued behind whichever of them held it and lost the GIL between
two of its C calls (measured, 2026-12-02, 10,000 hosts, a never-expiring
cache: the filter's look-up took 40 ms at the median for about 1 ms of
work), and behind a refresh's store for as long as it took among them
(40-135 ms). Copying is cheap where it happens: a dictionary without
deleted entries is copied as one block (0.03 ms for 10,000 keys, 0.3 ms
for 100,000).
"""

from __future__ import annotations

import collections
import operator
import threading
from collections.abc import Sequence
from itertools import compress, repeat
from typing import Any

from trustpool.attestation.answer import Answer
from trustpool.attestation.model import TrustLevel

__all__ = ["ReportCache"]


class _Snapshot:
    """The cache's answers and their deadlines at one moment. Never
    changed once a reader can see it (:meth:`ReportCache.store` builds a
    new one), so a reader needs no lock and always sees one whole store,
    never half of one."""

    __slots__ = ("answer", "deadlines")

    def __init__(self, answer: Answer, deadlines: dict[str, float]) -> None:
        self.answer = answer
        self.deadlines = deadlines

    def columns(self) -> tuple[dict[str, Any], ...]:
        """Every dictionary keyed by host name, for removing hosts from a
        snapshot that is not yet published."""
        a = self.answer
        return a.levels, a.reasons, a.vtimes, a.backends, self.deadlines


_EMPTY = _Snapshot(Answer(), {})


class ReportCache:
    """Thread-safe ``host name -> answer`` map with a common TTL.

    The answers live in an :class:`Answer` (a dictionary per field, no
    object per host) and the deadlines in one more dictionary, rather than
    a ``(deadline, report)`` pair per host: on a 10,000-host answer, the
    objects a pair or a report per host would add are what the garbage
    collector then tracks, over a scheduler's whole heap, for as long as
    the answer is kept.
    """

    def __init__(self, ttl: float, maxsize: int) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._now = _EMPTY
        #: held by the writers only (store, clear), one at a time
        self._lock = threading.Lock()
        #: bumped by every store and clear: a caller that looked up before
        #: waiting for a refresh can tell whether looking again may help
        self.generation = 0
        #: bumped by every clear: an answer asked for before a clear is
        #: not stored after it (see :meth:`store`)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._now.deadlines)

    def lookup(self, names: Sequence[str], now: float
               ) -> tuple[Answer, list[str]]:
        """Split ``names`` into fresh answers and names that need asking.

        ``names`` must be distinct (the client's are).
        """
        snap = self._now
        if _all_after(snap, names, now):
            return snap.answer.select(names), []
        found, missing, _ = _split(snap, names, now, None)
        return found, missing

    def lookup_ahead(self, names: Sequence[str], now: float, within: float
                     ) -> tuple[Answer, list[str], list[str]]:
        """:meth:`lookup`, and the fresh names whose answer expires within
        ``within`` seconds (due for a refresh ahead of time).
        """
        edge = now + within
        snap = self._now
        if _all_after(snap, names, edge if edge > now else now):
            return snap.answer.select(names), [], []
        return _split(snap, names, now, edge)

    def due(self, names: Sequence[str], now: float, within: float
            ) -> list[str]:
        """The names of ``names`` whose answer is fresh but expires within
        ``within`` seconds: what a refresh ahead asks about."""
        edge = now + within
        deadlines = list(map(self._now.deadlines.get, names, repeat(0.0)))
        return list(compress(names, map(
            operator.and_, map(operator.lt, repeat(now), deadlines),
            map(operator.ge, repeat(edge), deadlines))))

    def levels_in_order(self, names: Sequence[str], now: float
                        ) -> tuple[list[TrustLevel], float] | None:
        """The level of each of ``names``, in order, and the earliest of
        their deadlines, if every one is cached with a deadline after
        ``now``, else ``None``: the warm pass, two loops in C, no object
        made per host and no lock. The earliest deadline tells the caller
        whether any answer is due for a refresh ahead with one comparison.
        """
        snap = self._now
        deadlines = snap.deadlines
        if not names or "" in deadlines:
            return None
        try:
            earliest = min(map(deadlines.__getitem__, names))
            if not earliest > now:
                return None
            return (list(map(snap.answer.levels.__getitem__, names)),
                    earliest)
        except KeyError:
            return None

    def store(self, answer: Answer, now: float,
              epoch: int | None = None) -> None:
        """Keep ``answer`` until ``now + ttl``: one deadline per answer.

        ``epoch`` is :attr:`epoch` read before the answer was asked for;
        if the cache was cleared since, the answer is from before the
        clear and is not kept.
        """
        if self.ttl <= 0 or not len(answer):
            return
        deadline = now + self.ttl  # one float object shared by the answer
        if not deadline > now:
            # NaN (a broken clock) or an overflow: no deadline that can be
            # compared, so nothing is kept; the look-ups rely on it
            return
        names = answer.levels
        with self._lock:
            if epoch is not None and epoch != self.epoch:
                return
            old = self._now
            if len(names) >= len(old.deadlines) and \
                    old.deadlines.keys() <= names.keys():
                # every host cached is in the answer (a scheduler's
                # refresh): nothing of the old snapshot is kept
                snap = _Snapshot(Answer(), {})
            else:
                snap = _Snapshot(old.answer.copy(), old.deadlines.copy())
                if not snap.deadlines.keys().isdisjoint(names):
                    # pop first so that dict order stays oldest-first (all
                    # in C: a refresh replaces thousands of entries)
                    for column in snap.columns():
                        _drain(map(column.pop, names, repeat(None)))
            snap.answer.update(answer)
            deadlines = snap.deadlines
            deadlines.update(dict.fromkeys(names, deadline))
            if len(deadlines) > self.maxsize:
                _shrink(snap, now, self.maxsize)
            self.generation += 1
            self._now = snap  # published: never changed from here on

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self.epoch += 1
            self._now = _EMPTY


def _all_after(snap: _Snapshot, names: Sequence[str], edge: float) -> bool:
    """Whether each of ``names`` is cached in ``snap`` with a deadline
    after ``edge``.

    The warm pass of a scheduler: every host cached, from a handful of
    answers. Exact, not a shortcut: stored deadlines are never NaN (see
    :meth:`ReportCache.store`), so ``min`` is the earliest, and ``edge`` is
    at least ``now``.
    """
    if not names:
        return False
    try:
        return bool(min(map(snap.deadlines.__getitem__, names)) > edge)
    except KeyError:  # a name not cached: the caller splits them
        return False


def _split(snap: _Snapshot, names: Sequence[str], now: float,
           edge: float | None) -> tuple[Answer, list[str], list[str]]:
    """Fresh answers, names to ask, and (with ``edge``) the fresh names
    whose deadline is not after ``edge``.

    Loops in C, not one in Python with two look-ups per host: a cold or
    partly warm pass of a 10,000-host scheduler splits its names here,
    while every other thread waits for the GIL. ``operator.lt`` rather
    than ``now.__lt__``: a float's own method answers ``NotImplemented``
    (which is true) for an int, and an entry would pass as fresh.
    """
    if snap.deadlines.keys().isdisjoint(names):
        return Answer(), list(names), []  # a cold pass: nothing cached
    deadlines = list(map(snap.deadlines.get, names, repeat(0.0)))
    fresh = list(map(operator.lt, repeat(now), deadlines))
    fresh_names = list(compress(names, fresh))
    found = snap.answer.select(fresh_names)
    missing = list(compress(names, map(operator.not_, fresh)))
    due: list[str] = []
    if edge is not None and fresh_names:
        due = list(compress(fresh_names, map(
            operator.ge, repeat(edge), compress(deadlines, fresh))))
    return found, missing, due


def _shrink(snap: _Snapshot, now: float, maxsize: int) -> None:
    """Drop the expired entries of ``snap``, not yet published, and then
    the oldest, until it holds ``maxsize``."""
    deadlines = snap.deadlines
    expired = [n for n, d in deadlines.items() if d <= now]
    excess = len(deadlines) - len(expired) - maxsize
    if excess > 0:
        stale = set(expired)
        expired += [n for n in deadlines if n not in stale][:excess]
    for column in snap.columns():
        _drain(map(column.pop, expired, repeat(None)))


#: runs an iterator to its end in C, keeping nothing
_drain = collections.deque[object](maxlen=0).extend
