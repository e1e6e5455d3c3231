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
"""

from __future__ import annotations

import collections
import operator
import threading
from collections.abc import Mapping, Sequence
from itertools import compress, repeat

from trustpool.attestation.model import HostReport

__all__ = ["ReportCache"]


class ReportCache:
    """Thread-safe ``host name -> report`` map with a common TTL.

    Reports and deadlines live in two dicts rather than one of
    ``(deadline, report)`` pairs: a pair per host is one more object for
    the garbage collector to track, and on a 10,000-host answer the
    collections those allocations trigger (over a scheduler's whole heap)
    cost more than the rest of storing it.
    """

    def __init__(self, ttl: float, maxsize: int) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._reports: dict[str, HostReport] = {}
        self._deadlines: dict[str, float] = {}
        self._lock = threading.Lock()
        #: bumped by every store and clear: a caller that looked up before
        #: waiting for a refresh can tell whether looking again may help
        self.generation = 0
        #: bumped by every clear: an answer asked for before a clear is
        #: not stored after it (see :meth:`store`)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._reports)

    def lookup(self, names: Sequence[str], now: float
               ) -> tuple[dict[str, HostReport], list[str]]:
        """Split ``names`` into fresh reports and names that need asking.

        ``names`` must be distinct (the client's are).
        """
        with self._lock:
            whole = self._all_after(names, now)
            if whole is not None:
                return whole, []
            found, missing, _ = self._split(names, now, None)
        return found, missing

    def lookup_ahead(self, names: Sequence[str], now: float, within: float
                     ) -> tuple[dict[str, HostReport], list[str], list[str]]:
        """:meth:`lookup`, and the fresh names whose answer expires within
        ``within`` seconds (due for a refresh ahead of time).
        """
        edge = now + within
        with self._lock:
            whole = self._all_after(names, edge if edge > now else now)
            if whole is not None:
                return whole, [], []
            return self._split(names, now, edge)

    def _split(self, names: Sequence[str], now: float, edge: float | None
               ) -> tuple[dict[str, HostReport], list[str], list[str]]:
        """Fresh reports, names to ask, and (with ``edge``) the fresh names
        whose deadline is not after ``edge``; the lock is held.

        Loops in C, not one in Python with two look-ups per host: a cold
        or partly warm pass of a 10,000-host scheduler splits its names
        here, while every other thread waits for the GIL. ``operator.lt``
        rather than ``now.__lt__``: a float's own method answers
        ``NotImplemented`` (which is true) for an int, and an entry would
        pass as fresh.
        """
        deadlines = list(map(self._deadlines.get, names, repeat(0.0)))
        fresh = list(map(operator.lt, repeat(now), deadlines))
        fresh_names = list(compress(names, fresh))
        found = dict(zip(fresh_names,
                         map(self._reports.__getitem__, fresh_names),
                         strict=True))
        missing = list(compress(names, map(operator.not_, fresh)))
        due: list[str] = []
        if edge is not None and fresh_names:
            due = list(compress(fresh_names, map(
                operator.ge, repeat(edge), compress(deadlines, fresh))))
        return found, missing, due

    def reports_in_order(self, names: Sequence[str], edge: float
                         ) -> list[HostReport] | None:
        """The report of each of ``names``, in order, if every one is
        cached with a deadline after ``edge`` (``edge`` at least the
        present), else ``None``: the warm pass, with no dictionary built.
        """
        found = self.in_order(names, edge)
        return None if found is None else found[0]

    def in_order(self, names: Sequence[str], now: float
                 ) -> tuple[list[HostReport], float] | None:
        """:meth:`reports_in_order`, with the earliest deadline among
        ``names``: whether any is due for a refresh ahead is one more
        comparison for the caller, not another pass over the names."""
        with self._lock:
            if not names or "" in self._reports:
                return None
            try:
                earliest = min(map(self._deadlines.__getitem__, names))
                if not earliest > now:
                    return None
                return list(map(self._reports.__getitem__, names)), earliest
            except KeyError:
                return None

    def _all_after(self, names: Sequence[str], edge: float
                   ) -> dict[str, HostReport] | None:
        """Every report of ``names`` if each is cached with a deadline
        after ``edge``, else ``None``; the lock is held.

        The warm pass of a scheduler: every host cached, from a handful of
        answers. Three loops in C (the earliest deadline, the reports, the
        result) instead of one in Python with two look-ups per host: at
        100,000 hosts the Python loop cost 4x more per host than at 1,000.
        Exact, not a shortcut: stored deadlines are never NaN (see
        :meth:`store`), so ``min`` is the earliest, and ``edge`` is at
        least ``now``.
        """
        if not names:
            return None
        try:
            earliest = min(map(self._deadlines.__getitem__, names))
            if not earliest > edge:
                return None
            return dict(zip(names, map(self._reports.__getitem__, names),
                            strict=True))
        except KeyError:  # a name not cached: the loop sorts them out
            return None

    def store(self, reports: Mapping[str, HostReport], now: float,
              epoch: int | None = None) -> None:
        """Keep ``reports`` until ``now + ttl``: one deadline per answer.

        ``epoch`` is :attr:`epoch` read before the answer was asked for;
        if the cache was cleared since, the answer is from before the
        clear and is not kept.
        """
        if self.ttl <= 0:
            return
        deadline = now + self.ttl  # one float object shared by the answer
        if not deadline > now:
            # NaN (a broken clock) or an overflow: no deadline that can be
            # compared, so nothing is kept; the look-ups rely on it
            return
        with self._lock:
            if epoch is not None and epoch != self.epoch:
                return
            self.generation += 1
            stored, deadlines = self._reports, self._deadlines
            if not stored.keys().isdisjoint(reports):
                # pop first so that dict order stays oldest-first (all in
                # C: a 100,000-host refresh replaces 100,000 entries)
                _drain(map(stored.pop, reports, repeat(None)))
                _drain(map(deadlines.pop, reports, repeat(None)))
            stored.update(reports)
            deadlines.update(dict.fromkeys(reports, deadline))
            if len(stored) > self.maxsize:
                self._shrink(now)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self.epoch += 1
            self._reports.clear()
            self._deadlines.clear()

    def _shrink(self, now: float) -> None:
        stored, deadlines = self._reports, self._deadlines
        for name in [n for n, d in deadlines.items() if d <= now]:
            del stored[name], deadlines[name]
        excess = len(stored) - self.maxsize
        if excess > 0:
            for name in list(stored)[:excess]:
                del stored[name], deadlines[name]


#: runs an iterator to its end in C, keeping nothing
_drain = collections.deque[object](maxlen=0).extend
