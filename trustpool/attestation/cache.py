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
from collections.abc import Sequence
from itertools import compress, repeat

from trustpool.attestation.answer import Answer
from trustpool.attestation.model import TrustLevel

__all__ = ["ReportCache"]


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
        self._answer = Answer()
        self._deadlines: dict[str, float] = {}
        self._lock = threading.Lock()
        #: bumped by every store and clear: a caller that looked up before
        #: waiting for a refresh can tell whether looking again may help
        self.generation = 0
        #: bumped by every clear: an answer asked for before a clear is
        #: not stored after it (see :meth:`store`)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._deadlines)

    def lookup(self, names: Sequence[str], now: float
               ) -> tuple[Answer, list[str]]:
        """Split ``names`` into fresh answers and names that need asking.

        ``names`` must be distinct (the client's are).
        """
        with self._lock:
            if self._all_after(names, now):
                return self._answer.select(names), []
            found, missing, _ = self._split(names, now, None)
        return found, missing

    def lookup_ahead(self, names: Sequence[str], now: float, within: float
                     ) -> tuple[Answer, list[str], list[str]]:
        """:meth:`lookup`, and the fresh names whose answer expires within
        ``within`` seconds (due for a refresh ahead of time).
        """
        edge = now + within
        with self._lock:
            if self._all_after(names, edge if edge > now else now):
                return self._answer.select(names), [], []
            return self._split(names, now, edge)

    def _split(self, names: Sequence[str], now: float, edge: float | None
               ) -> tuple[Answer, list[str], list[str]]:
        """Fresh answers, names to ask, and (with ``edge``) the fresh names
        whose deadline is not after ``edge``; the lock is held.

        Loops in C, not one in Python with two look-ups per host: a cold
        or partly warm pass of a 10,000-host scheduler splits its names
        here, while every other thread waits for the GIL. ``operator.lt``
        rather than ``now.__lt__``: a float's own method answers
        ``NotImplemented`` (which is true) for an int, and an entry would
        pass as fresh.
        """
        if self._deadlines.keys().isdisjoint(names):
            return Answer(), list(names), []  # a cold pass: nothing cached
        deadlines = list(map(self._deadlines.get, names, repeat(0.0)))
        fresh = list(map(operator.lt, repeat(now), deadlines))
        fresh_names = list(compress(names, fresh))
        found = self._answer.select(fresh_names)
        missing = list(compress(names, map(operator.not_, fresh)))
        due: list[str] = []
        if edge is not None and fresh_names:
            due = list(compress(fresh_names, map(
                operator.ge, repeat(edge), compress(deadlines, fresh))))
        return found, missing, due

    def due(self, names: Sequence[str], now: float, within: float
            ) -> list[str]:
        """The names of ``names`` whose answer is fresh but expires within
        ``within`` seconds: what a refresh ahead asks about."""
        edge = now + within
        with self._lock:
            deadlines = list(map(self._deadlines.get, names, repeat(0.0)))
        return list(compress(names, map(
            operator.and_, map(operator.lt, repeat(now), deadlines),
            map(operator.ge, repeat(edge), deadlines))))

    def levels_in_order(self, names: Sequence[str], now: float
                        ) -> tuple[list[TrustLevel], float] | None:
        """The level of each of ``names``, in order, and the earliest of
        their deadlines, if every one is cached with a deadline after
        ``now``, else ``None``: the warm pass, two loops in C and no
        object made per host. The earliest deadline tells the caller
        whether any answer is due for a refresh ahead with one comparison.
        """
        with self._lock:
            if not names or "" in self._deadlines:
                return None
            try:
                earliest = min(map(self._deadlines.__getitem__, names))
                if not earliest > now:
                    return None
                return (list(map(self._answer.levels.__getitem__, names)),
                        earliest)
            except KeyError:
                return None

    def _all_after(self, names: Sequence[str], edge: float) -> bool:
        """Whether each of ``names`` is cached with a deadline after
        ``edge``; the lock is held.

        The warm pass of a scheduler: every host cached, from a handful of
        answers. Exact, not a shortcut: stored deadlines are never NaN (see
        :meth:`store`), so ``min`` is the earliest, and ``edge`` is at
        least ``now``.
        """
        if not names:
            return False
        try:
            return bool(min(map(self._deadlines.__getitem__, names)) > edge)
        except KeyError:  # a name not cached: the caller splits them
            return False

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
            self.generation += 1
            kept, deadlines = self._answer, self._deadlines
            columns = (kept.levels, kept.reasons, kept.vtimes,
                       kept.backends, deadlines)
            if not deadlines.keys().isdisjoint(names):
                # pop first so that dict order stays oldest-first (all in
                # C: a 100,000-host refresh replaces 100,000 entries)
                for column in columns:
                    _drain(map(column.pop, names, repeat(None)))
            kept.update(answer)
            deadlines.update(dict.fromkeys(names, deadline))
            if len(deadlines) > self.maxsize:
                self._shrink(now)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self.epoch += 1
            self._answer = Answer()
            self._deadlines.clear()

    def _shrink(self, now: float) -> None:
        deadlines = self._deadlines
        expired = [n for n, d in deadlines.items() if d <= now]
        excess = len(deadlines) - len(expired) - self.maxsize
        if excess > 0:
            stale = set(expired)
            expired += [n for n in deadlines if n not in stale][:excess]
        kept = self._answer
        for column in (kept.levels, kept.reasons, kept.vtimes,
                       kept.backends, deadlines):
            _drain(map(column.pop, expired, repeat(None)))


#: runs an iterator to its end in C, keeping nothing
_drain = collections.deque[object](maxlen=0).extend
