# SPDX-License-Identifier: Apache-2.0
"""Answers for many hosts as four parallel dictionaries, not a report each.

A scheduler takes in an answer for thousands of hosts at a time, and
keeps it for a TTL: as a :class:`HostReport` per host, that is thousands
of objects the garbage collector tracks, made while every other thread of
the scheduler waits for the GIL, and promoted to the oldest generation
because they live long (a full collection of a scheduler's heap follows
every few answers). Kept as ``name -> level``, ``name -> reason``,
``name -> vtime`` and ``name -> backend`` dictionaries of shared values,
an answer costs four dictionaries and no object per host; the reports
are made on demand, for the callers that want them (operators' tools, a
debug log, the audit record), never on the scheduler's warm pass, which
reads the levels only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import TypeVar

from trustpool.attestation.model import HostReport, TrustLevel

__all__ = ["Answer"]

#: ``HostReport(*fields)`` in one C call (a named tuple's own ``__new__``
#: is Python)
_new_report = functools.partial(tuple.__new__, HostReport)
_V = TypeVar("_V")
_FIELDS = [attrgetter(field) for field in
           ("level", "reason", "vtime_text", "backend")]


class Answer:
    """``name -> (level, reason, vtime_text, backend)``, column by column.

    The four dictionaries always hold the same names in the same order
    (every method keeps them so); a name's report is
    ``HostReport(name, level, backend, reason, vtime_text)``.
    """

    __slots__ = ("backends", "levels", "reasons", "vtimes")

    def __init__(self) -> None:
        self.levels: dict[str, TrustLevel] = {}
        self.reasons: dict[str, str] = {}
        self.vtimes: dict[str, str | None] = {}
        self.backends: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.levels)

    def __contains__(self, name: object) -> bool:
        return name in self.levels

    @classmethod
    def uniform(cls, names: Iterable[str], level: TrustLevel, backend: str,
                reason: str) -> Answer:
        """The same level, backend and reason for every name (a failure,
        the hosts an answer left out), with no time."""
        answer = cls()
        answer.add(list(names), level, backend, reason)
        return answer

    @classmethod
    def columns(cls, names: Sequence[str], levels: Iterable[TrustLevel],
                reasons: Iterable[str], vtimes: Iterable[str | None],
                backend: str) -> Answer:
        """An answer from one value per name, in the order of ``names``
        (a backend's reader: no object made per host)."""
        answer = cls()
        answer.levels = dict(zip(names, levels, strict=True))
        answer.reasons = dict(zip(names, reasons, strict=True))
        answer.vtimes = dict(zip(names, vtimes, strict=True))
        answer.backends = dict.fromkeys(names, backend)
        return answer

    @classmethod
    def of_reports(cls, reports: Mapping[str, HostReport]) -> Answer:
        """The answer the reports give, keyed as ``reports`` is."""
        answer = cls()
        names = list(reports)
        values = list(reports.values())
        answer.levels, answer.reasons, answer.vtimes, answer.backends = (
            dict(zip(names, map(field, values), strict=True))
            for field in _FIELDS)
        return answer

    def copy(self) -> Answer:
        """A copy of the four dictionaries (each in one C call), sharing
        the values."""
        answer = Answer()
        answer.levels = self.levels.copy()
        answer.reasons = self.reasons.copy()
        answer.vtimes = self.vtimes.copy()
        answer.backends = self.backends.copy()
        return answer

    def select(self, names: Sequence[str]) -> Answer:
        """The part of this answer for ``names``, each of which it holds."""
        answer = Answer()
        answer.levels = _pick(self.levels, names)
        answer.reasons = _pick(self.reasons, names)
        answer.vtimes = _pick(self.vtimes, names)
        answer.backends = _pick(self.backends, names)
        return answer

    def update(self, other: Answer) -> None:
        """Take ``other``'s entries, replacing this answer's for a name."""
        self.levels.update(other.levels)
        self.reasons.update(other.reasons)
        self.vtimes.update(other.vtimes)
        self.backends.update(other.backends)

    def add(self, names: Sequence[str], level: TrustLevel, backend: str,
            reason: str) -> None:
        """Take the same level, backend and reason, with no time, for
        every one of ``names`` (the hosts an answer left out), replacing
        this answer's entry for a name."""
        self.levels.update(zip(names, repeat(level)))
        self.reasons.update(zip(names, repeat(reason)))
        self.vtimes.update(zip(names, repeat(None)))
        self.backends.update(zip(names, repeat(backend)))

    def set(self, report: HostReport) -> None:
        """Take one report's entry (an age check's verdict)."""
        name = report.hostname
        self.levels[name] = report.level
        self.reasons[name] = report.reason
        self.vtimes[name] = report.vtime_text
        self.backends[name] = report.backend

    def report(self, name: str) -> HostReport:
        """The report for ``name``, which this answer holds."""
        return _new_report((name, self.levels[name], self.backends[name],
                            self.reasons[name], self.vtimes[name]))

    def reports(self) -> dict[str, HostReport]:
        """A report for every name, made now, in the answer's order."""
        names = list(self.levels)
        return dict(zip(names, self._made(names), strict=True))

    def reports_in_order(self, names: Sequence[str | None]
                         ) -> list[HostReport | None]:
        """The report of each of ``names`` (``None`` where this answer has
        none), in order."""
        levels = self.levels
        if all(map(levels.__contains__, names)):
            return list(self._made(names))  # type: ignore[arg-type]
        return [self.report(n) if n in levels else None  # type: ignore
                for n in names]

    def _made(self, names: Sequence[str]) -> Iterable[HostReport]:
        return map(_new_report, zip(
            names, map(self.levels.__getitem__, names),
            map(self.backends.__getitem__, names),
            map(self.reasons.__getitem__, names),
            map(self.vtimes.__getitem__, names), strict=True))


def _pick(column: dict[str, _V], names: Sequence[str]) -> dict[str, _V]:
    return dict(zip(names, map(column.__getitem__, names), strict=True))
