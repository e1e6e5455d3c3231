# SPDX-License-Identifier: Apache-2.0
"""The attestation client: cache, batching, single-flight, fail-closed.

Backends know a protocol; this module knows time. A scheduler asks
:meth:`AttestationClient.levels` once per request with every candidate
host, and gets back a report for each, never an exception.

The fail-closed promises hold by the shape of the code, not by a list of
cases:

- :meth:`AttestationClient.levels` and :meth:`attest_uncached` are each one
  outermost ``try``: whatever goes wrong inside, of whatever type, the
  hosts are ``unknown`` (or, for the uncached call, one
  ``AttestationError``), logged once with the exception's type.
- Every backend call runs in a worker thread that is abandoned at the
  backend's deadline: the time a caller can spend is bounded whatever the
  backend does (a dripping peer, a blocking file, a plugin's bug), and an
  abandoned call is remembered as a failure like any other, so the callers
  after it do not wait again. (HTTP backends also cut their sockets at the
  deadline, so the abandoned worker ends too.)
- A report is accepted only if it is a :class:`HostReport` for exactly the
  name asked, with a real :class:`TrustLevel`.
- Every message that can carry exception text goes through one
  :class:`~trustpool.attestation.redact.Redactor` built from the backend's
  secrets.
- Refreshing ahead (``refresh_ahead``) only ever replaces an answer with a
  newer one: the cache serves each answer until its own deadline and not
  a moment longer, whether or not the refresh behind it succeeded, so a
  background refresh that fails or hangs leaves the hosts exactly as they
  would be without it: ``unknown`` from their deadline on.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import filterfalse
from typing import Any, TypeVar, cast

from trustpool.attestation.answer import Answer
from trustpool.attestation.backends import AttestationBackend
from trustpool.attestation.backends.process import OffloadError
from trustpool.attestation.cache import ReportCache
from trustpool.attestation.model import MAX_CLOCK_SKEW, HostReport, TrustLevel
from trustpool.attestation.redact import Redactor
from trustpool.exceptions import AttestationError, Cause

__all__ = ["WAIT_MARGIN", "AttestationClient", "ClientStats", "Observer"]

#: Called after every exchange with the backend (one ``attest`` call, one
#: chunk of a batch) with its duration in seconds and, when it failed, the
#: cause (one of :data:`trustpool.exceptions.CAUSES`), else ``None``. How
#: a service measures the library without the library knowing how: the
#: library imports no metrics package.
Observer = Callable[[float, "Cause | None"], None]

LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Upper bound on cached hosts; far above any Nova cell, it only guards
#: memory against a caller that invents names.
DEFAULT_MAX_HOSTS = 1_000_000
_NOT_MENTIONED = "the attestation service did not mention this host"
#: Seconds a caller may wait, beyond one request's own timeouts, for the
#: refresh another thread is making.
WAIT_MARGIN = 0.5
#: Seconds past a backend's own timeout before its call is abandoned: the
#: backend's own, more precise, message normally comes first.
_ABANDON_MARGIN = 0.25
#: Longest reason kept from a backend's report.
_MAX_REASON = 500
#: The same unexpected error is logged at most this often (seconds): a
#: scheduler asks many times a second, a log line per request is a flood.
_REPEAT_LOG_INTERVAL = 60.0


@dataclasses.dataclass
class ClientStats:
    """Counters for tests, benchmarks and operators' curiosity."""

    backend_calls: int = 0
    hosts_asked: int = 0
    failures: int = 0
    cache_hits: int = 0
    #: refreshes started ahead of time, in the background
    refreshes_ahead: int = 0


@dataclasses.dataclass(frozen=True)
class _Failure:
    until: float
    at: float
    message: str


class AttestationClient:
    """Answers "how trusted is each of these hosts?" quickly and safely.

    - Answers are cached per host for ``ttl`` seconds of the monotonic
      ``clock``, counted from when the answer arrived (one deadline for
      every host of an answer).
    - One call sends at most one batch to the backend (split only where the
      backend has a ``max_batch``), for all stale or missing hosts.
    - Hosts the service did not mention are cached as ``unknown``.
    - One refresh runs at a time; callers that need the same hosts wait for
      it and use its result instead of asking again.
    - A failed refresh makes every host it asked about ``unknown``, is
      logged once, and is remembered for ``failure_retry_interval`` seconds
      during which no call waits on the service again.
    - With ``max_wait``, no call waits longer than that for another
      thread's refresh; hosts it would have needed are ``unknown``.
    - With ``max_report_age``, a report whose server time (``vtime``) is
      older than that, missing or unreadable, or further in the future
      than the allowed clock skew, counts as ``unknown``.
    - With ``refresh_ahead`` (seconds), a call that is answered from
      answers due to expire within that time starts one background refresh
      of those hosts, so that the calls after it find fresh answers and do
      not wait on the service. Only hosts that calls ask about in that last
      stretch are refreshed: hosts nobody asks about expire. The refresh is
      an ordinary one (the same lock, batching and failure memory), made
      by a short-lived thread that ends with it.
    """

    def __init__(self, backend: AttestationBackend, *, ttl: float,
                 failure_retry_interval: float = 10.0,
                 max_report_age: float = 0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 max_hosts: int = DEFAULT_MAX_HOSTS,
                 max_wait: float | None = None,
                 secrets: Sequence[str] = (),
                 refresh_ahead: float = 0.0,
                 observer: Observer | None = None,
                 background: AttestationBackend | None = None) -> None:
        if refresh_ahead > 0 and not refresh_ahead < ttl:
            # every answer would be due from the moment it arrived: a
            # refresh after each request, for ever
            raise ValueError(
                f"refresh_ahead ({refresh_ahead:g}s) must be shorter than "
                f"the ttl ({ttl:g}s); [trusted_computing] refresh_ahead "
                "uses a quarter of attestation_auth_timeout")
        self.backend = backend
        #: the backend answers with an :class:`Answer` (no report per host:
        #: trustpool's own readers), else with reports, as the contract of
        #: :meth:`AttestationBackend.attest` has it
        self._native = bool(getattr(backend, "answers_natively", False))
        #: the backend refreshes ahead ask, when not ``backend`` itself: a
        #: :class:`ProcessBackend` makes them in a helper process, out of
        #: reach of the scheduler's busy GIL; when it fails (not the
        #: service: the helper), the refresh is made with ``backend``
        self.background = background
        #: see :data:`Observer`; may be set after construction. An observer
        #: that raises is ignored: measuring must not change an answer.
        self.observer = observer
        self.max_wait = max_wait
        self.refresh_ahead = refresh_ahead
        self.ttl = ttl
        self.failure_retry_interval = failure_retry_interval
        self.max_report_age = max_report_age
        self._clock = _Forward(clock)
        self._wall_clock = wall_clock
        self._cache = ReportCache(ttl, max_hosts)
        self._refresh_lock = threading.Lock()
        self._failure: _Failure | None = None
        self.stats = ClientStats()
        # the backend's own secrets, and any others the caller knows of
        # (every secret option of nova.conf): a peer can echo anything
        self.redact = Redactor([*getattr(backend, "secrets", ()), *secrets])
        #: the worker of a backend call that was abandoned at its deadline
        #: and has not ended yet; no new call starts while it runs, so a
        #: peer that never lets go costs one thread, not one per retry
        self._stray: threading.Thread | None = None
        self._logged: dict[str, float] = {}
        #: the background refresh now running, if any (one at a time)
        self._ahead: threading.Thread | None = None
        #: names found due for a refresh while one was already running; the
        #: running one takes them up before it ends
        self._due: dict[str, None] = {}
        #: whether the refresh thread runs and will take up what is added
        #: to ``_due``: set when it starts, cleared (under the guard) when
        #: it decides to end, so no name is added to one that has decided
        self._ahead_running = False
        #: set to wake the refresh thread waiting for names to come due
        self._wake = threading.Event()
        #: set while the refresh thread has nothing to do (or none runs)
        self._ahead_idle = threading.Event()
        self._ahead_idle.set()
        #: when a caller found answers due with nothing due before
        self._found_due = 0.0
        self._ahead_guard = threading.Lock()
        self._closed = False
        #: how long the last refreshes ahead took on the clock: a refresh
        #: that takes longer than the lead would land after the answers
        #: it replaces expired, and every caller would wait for it
        self._ahead_took: collections.deque[float] = collections.deque(
            maxlen=4)
        self._ahead_longest = 0.0

    def levels(self, hostnames: Iterable[str]) -> dict[str, HostReport]:
        """A report for every distinct name in ``hostnames``.

        Never raises: hosts whose trust cannot be established, for any
        reason at all, are ``unknown``, with the reason in the report.
        Names that are not strings get no report (and so never pass); a
        subclass of ``str`` is asked about as its plain string.
        """
        try:
            names = _distinct_names(hostnames)
        except Exception as exc:  # noqa: BLE001 - the outermost boundary
            self._log_unexpected("reading the host names", exc)
            return {}
        try:
            return self._levels(names).reports()
        except Exception as exc:  # noqa: BLE001 - the outermost boundary
            reason = self._log_unexpected("attestation", exc)
            return {name: HostReport(name, TrustLevel.UNKNOWN,
                                     self._backend_name(), reason)
                    for name in names}

    def _levels(self, names: list[str]) -> Answer:
        generation = self._cache.generation
        if self.refresh_ahead > 0:
            answer, missing, due = self._cache.lookup_ahead(
                names, self._clock(), self._lead())
            self.stats.cache_hits += len(answer)
            if due:
                self._refresh_in_background(due)
        else:
            answer, missing = self._from_cache(names)
        if missing:
            answer = _merged(answer, self._fetch(missing, generation, answer))
        if self.max_report_age > 0:
            now = self._wall_clock()
            for name in names:
                report = answer.report(name)
                checked = self._check_age(report, now)
                if checked is not report:
                    answer.set(checked)
        return answer

    def trust_in_order(self, hostnames: Sequence[str | None]
                       ) -> list[TrustLevel | None]:
        """The trust level of each of ``hostnames``, in order; ``None``
        for an entry that is not a non-empty string. The levels of
        :meth:`levels_in_order`'s reports, without the reports: what the
        scheduler's filter decides on. Unless a name needs asking about,
        the cost of a call is two dictionary look-ups per host, with no
        dictionary built and no object made per host (the warm pass of a
        scheduler, once per request over every candidate). Never raises:
        anything that goes wrong makes the hosts ``unknown``.
        """
        try:
            if type(hostnames) is not list:
                # read once: the levels are in the order of that one reading
                hostnames = list(hostnames)
            plain = _all_str(hostnames) and "" not in hostnames
            names = cast("list[str]", hostnames)  # if plain: checked
            if plain and self.max_report_age <= 0:
                now = self._clock()
                hit = self._cache.levels_in_order(names, now)
                if hit is not None:
                    found, earliest = hit
                    self.stats.cache_hits += len(found)
                    if self.refresh_ahead > 0 and \
                            not earliest > now + self._lead():
                        # some answers are due: the refresh thread asks
                        # again about those of these names that are (it
                        # looks them up itself); this pass is answered now
                        self._refresh_in_background(names)
                    return found  # type: ignore[return-value]
            if plain:
                return list(map(self._answer_for(names).levels.get, names))
            in_order = _names_in_order(hostnames)
            levels = self._answer_for(list(filter(None, in_order))).levels
            return [None if n is None else levels.get(n) for n in in_order]
        except Exception as exc:  # noqa: BLE001 - the outermost boundary
            self._log_unexpected("attestation", exc)
            return _each_name(hostnames, _unknown_level)

    def levels_in_order(self, hostnames: Sequence[str | None]
                        ) -> list[HostReport | None]:
        """The report of each of ``hostnames``, in order; ``None`` for an
        entry that is not a non-empty string. The same answers as
        :meth:`levels`, and as :meth:`trust_in_order` (which makes no
        report: prefer it where the level is all that is read). Never
        raises.
        """
        try:
            in_order = _names_in_order(hostnames)
            return self._answer_for(list(filter(None, in_order))
                                    ).reports_in_order(in_order)
        except Exception as exc:  # noqa: BLE001 - the outermost boundary
            reason = self._log_unexpected("attestation", exc)
            backend = self._backend_name()
            return _each_name(hostnames, lambda n: HostReport(
                n, TrustLevel.UNKNOWN, backend, reason))

    def _answer_for(self, names: Sequence[str]) -> Answer:
        """:meth:`_levels` for ``names`` (strings, maybe repeated), every
        one of them answered; what goes wrong makes them all unknown."""
        distinct = list(dict.fromkeys(names))
        try:
            return self._levels(distinct)
        except Exception as exc:  # noqa: BLE001 - the outermost boundary
            reason = self._log_unexpected("attestation", exc)
            return Answer.uniform(distinct, TrustLevel.UNKNOWN,
                                  self._backend_name(), reason)

    def level(self, hostname: str) -> HostReport:
        """The report for one host; prefer :meth:`levels` for many."""
        return self.levels([hostname])[hostname]

    def attest_uncached(self, hostnames: Sequence[str]
                        ) -> dict[str, HostReport]:
        """Ask the service now, bypassing and not filling the cache.

        For operator tools that must show the service's current answer.
        Unlike :meth:`levels`, a failure raises.

        :raises trustpool.exceptions.AttestationError: on a failed exchange,
            and on anything else that goes wrong (the only exception type
            this method raises; its message is redacted).
        """
        try:
            names = _distinct_names(hostnames)
            answered = self._ask_backend(names)
            reports = self._with_unmentioned(names, answered).reports()
            if self.max_report_age > 0:
                now = self._wall_clock()
                reports = {n: self._check_age(r, now)
                           for n, r in reports.items()}
            return reports
        except Exception as exc:  # noqa: BLE001 - the outermost boundary
            raise AttestationError(self._describe(exc),
                                   _cause_of(exc)) from None

    def invalidate(self) -> None:
        """Forget every cached answer and any remembered failure."""
        self._cache.clear()
        self._failure = None

    def _lead(self) -> float:
        """Seconds before its deadline an answer is due for a refresh
        ahead: ``refresh_ahead``, or one and a half times the longest of
        the last few refreshes ahead if that is longer, but then no more
        than nine tenths of the TTL.

        A scheduler whose threads all compete for the GIL can take seconds
        to take in a large answer in the background (each read of the
        socket waits for the GIL again: 1.4-4.6 s for 10,000 hosts with
        eight scheduling threads on two cores); started a fixed time
        ahead, such a refresh lands after the answers expired, and
        requests wait for it exactly as without refreshing ahead. Only
        when the refresh starts moves: every answer is still used until
        its own deadline and no longer; one refresh runs at a time.
        """
        took = 1.5 * self._ahead_longest
        if took > self.refresh_ahead:
            return max(self.refresh_ahead, min(took, 0.9 * self.ttl))
        return self.refresh_ahead

    def close(self) -> None:
        """Stop refreshing ahead, wait (boundedly) for a refresh that is
        running, and close the backend."""
        with self._ahead_guard:
            # under the guard: a caller that checked the client open
            # before this either started its refresh already (joined
            # below) or sees it closed and starts none
            self._closed = True
            ahead = self._ahead
        self._wake.set()  # a refresh thread waiting for work ends now
        if ahead is not None:
            ahead.join(float(getattr(self.background or self.backend,
                                     "timeout", 10.0))
                       + _ABANDON_MARGIN + WAIT_MARGIN)
        if self.background is not None:
            self.background.close()
        self.backend.close()

    # -- internals -------------------------------------------------------

    def _from_cache(self, names: list[str]) -> tuple[Answer, list[str]]:
        found, missing = self._cache.lookup(names, self._clock())
        self.stats.cache_hits += len(found)
        return found, missing

    def _fetch(self, missing: list[str], generation: int,
               found: Answer | None = None) -> Answer:
        """Reports for names the cache has no fresh answer for.

        ``found`` are the answers the caller looked up before coming here:
        waiting for the refresh lock can outlast their deadlines, so they
        are looked up again after the wait and replaced (by a newer answer,
        a refresh, or ``unknown``) when they expired in it.
        """
        failure = self._failure
        now = self._clock()
        if failure is not None and now < failure.until:
            # Fast path: no lock, so a dead service costs callers nothing
            # while the failure is remembered.
            return self._failed(missing, failure, now)
        wait = -1 if self.max_wait is None else self.max_wait
        again = list(found.levels) if found is not None else []
        if not self._refresh_lock.acquire(timeout=wait):
            fresh, expired = self._cache.lookup(again, self._clock())
            fresh.update(self._busy(missing + expired))
            return fresh
        try:
            reports = Answer()
            if again:
                reports, expired = self._cache.lookup(again, self._clock())
                missing = missing + expired
            if self._cache.generation != generation:
                # Another thread stored answers while we waited.
                stored, missing = self._from_cache(missing)
                reports.update(stored)
            if missing:
                reports = _merged(reports, self._refresh(missing))
            return reports
        finally:
            self._refresh_lock.release()

    def _refresh_in_background(self, names: list[str]) -> None:
        """Hand ``names`` to the refresh thread (woken if it waits, started
        if none runs), unless the client is closed or a failure is
        remembered (no retry before its time).

        Every pass between an answer due and the refresh's landing comes
        here with the same names (a second or more at 10,000 hosts):
        when the running refresh has them already, the pass leaves with
        one loop in C and no lock. Under the guard, eight scheduling
        threads queued behind whichever held it and lost the GIL (a
        median of 24 ms a pass, measured, 2026-12-02). A stale reading
        costs nothing: names the refresh has taken up are being asked
        about, and those it has not are added under the guard.
        """
        failure = self._failure
        if self._closed or (failure is not None
                            and self._clock() < failure.until):
            return
        ahead = self._ahead
        if self._ahead_running and all(map(self._due.__contains__, names)) \
                and ahead is not None and ahead.is_alive():
            return
        with self._ahead_guard:
            if self._closed:
                return
            if not self._due:
                self._found_due = self._clock()
            self._due.update(dict.fromkeys(names))
            self._ahead_idle.clear()
            ahead = self._ahead
            # alive: not a thread of the parent this process was forked from
            if self._ahead_running and ahead is not None and \
                    ahead.is_alive():
                self._wake.set()
                return
            # Started here, at the first answer due, never at import or
            # construction: nothing runs for a client that is not used.
            # threading.Thread is a green thread under Nova's eventlet
            # monkey-patching and a native one without it.
            ahead = threading.Thread(target=self._refresh_ahead,
                                     daemon=True,
                                     name="trustpool-refresh-ahead")
            ahead.start()
            self._ahead = ahead
            self._ahead_running = True

    def _refresh_ahead(self) -> None:
        """The refresh thread: everything due, in as few batches as the
        backend allows; then it waits for more to come due, and ends when
        none has for a TTL (hosts nobody asks about are not refreshed; a
        client nobody uses keeps no thread).

        It waits rather than ends after each refresh because starting a
        thread costs the caller that starts it two turns of a busy GIL
        (the new thread's first, then its own again: 100-190 ms among
        eight scheduling threads at 10,000 hosts, measured 2026-12-02),
        once every refresh: about one pass in a hundred there, the p99.
        How long a refresh takes is counted from the moment a caller found
        answers due, the wait for this thread included.
        """
        ended = idle = False
        try:
            while not self._closed:
                with self._ahead_guard:
                    names = list(self._due)
                    self._due.clear()
                    found_due = self._found_due
                    if not names:
                        self._ahead_idle.set()
                        if idle:
                            # decided under the guard: a caller after
                            # this starts a new thread, none adds to this
                            ended = True
                            self._ahead_running = False
                            return
                if not names:
                    idle = not self._wake.wait(
                        min(max(self.ttl, 1.0), threading.TIMEOUT_MAX))
                    self._wake.clear()
                    continue
                idle = False
                # Callers keep finding the same answers due until this
                # refresh lands: only those still due are asked again.
                names = self._cache.due(names, self._clock(), self._lead())
                if not names:
                    continue
                # No waiting: a caller holding the lock is refreshing (or
                # about to) already; what stays due is found due again.
                if not self._refresh_lock.acquire(blocking=False):
                    continue
                try:
                    failure = self._failure
                    if failure is not None and \
                            self._clock() < failure.until:
                        continue
                    self.stats.refreshes_ahead += 1
                    starting = self._refresh_by_helper(names)
                    took = self._clock() - found_due - starting
                    if 0 <= took < self.ttl:  # not NaN, not a clock jump
                        self._ahead_took.append(took)
                        # one float read by every warm pass: never a
                        # deque another thread is appending to
                        self._ahead_longest = max(self._ahead_took)
                finally:
                    self._refresh_lock.release()
        except Exception as exc:  # noqa: BLE001 - the thread's boundary
            self._log_unexpected("a refresh ahead", exc)
        finally:
            if not ended:
                # closed, or an error: still the one running
                with self._ahead_guard:
                    self._due.clear()
                    self._ahead_running = False
                    self._ahead_idle.set()

    def _refresh_by_helper(self, names: list[str]) -> float:
        """A refresh ahead: by the background backend if there is one, by
        the client's own if there is none or it fails (the refresh lock is
        held). A failure of the helper, not the service's, is logged once
        a minute and changes no answer. Returns the seconds the helper
        spent starting, if it started for this refresh: not part of how
        long refreshes take (the lead would grow for one start, and keep
        asking early for the next refreshes)."""
        background = self.background
        # one the helper gave up on (it said so, once): not asked, so that
        # no refresh logs or counts its refusal
        if background is not None and \
                getattr(background, "broken", None) is None:
            try:
                self._refresh(names, background)
                return float(getattr(background, "started_in", 0.0))
            except OffloadError as exc:
                message = self._describe(exc)
                if self._first_in_a_minute(message):
                    LOG.warning("Refresh ahead of %d host(s) made in this "
                                "process: %s", len(names), message)
        self._refresh(names)
        return 0.0

    def _refresh(self, names: list[str],
                 backend: AttestationBackend | None = None) -> Answer:
        """Ask ``backend`` (the client's own unless given) about
        ``names``; the refresh lock is held. Raises only the helper's
        :class:`OffloadError`, and only for a ``backend`` given."""
        now = self._clock()
        failure = self._failure
        if failure is not None and now < failure.until:
            return self._failed(names, failure, now)
        # an invalidate() while the backend is asked makes this answer one
        # from before it: the caller may use it, the cache must not keep it
        epoch = self._cache.epoch
        arrived: list[float] = []
        try:
            answered = self._ask_backend(names, arrived,
                                         backend or self.backend)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything
            if isinstance(exc, OffloadError) and backend is not None \
                    and backend is not self.backend:
                raise  # the helper failed, not the service: try here
            message = self._describe(exc)
            now = self._clock()
            failure = _Failure(now + self.failure_retry_interval, now,
                               message)
            self._failure = failure
            self.stats.failures += 1
            LOG.warning(
                "Attestation by %s failed; %d host(s) count as unknown, "
                "next try in %gs: %s", self.backend.describe(), len(names),
                self.failure_retry_interval, message)
            return self._failed(names, failure, now)
        self._failure = None
        reports = self._with_unmentioned(names, answered)
        # One arrival time for the whole answer: stamped one by one, the
        # entries would expire apart and be refreshed in fragments. The
        # first chunk's: no part of the answer is kept longer than the TTL
        # after it arrived, however long the chunks after it took.
        self._cache.store(reports, arrived[0] if arrived else self._clock(),
                          epoch)
        return reports

    def _ask_backend(self, names: list[str],
                     arrived: list[float] | None = None,
                     backend: AttestationBackend | None = None) -> Answer:
        """``backend``'s (the client's own unless given) checked answer
        for ``names``, in as few chunks as its ``max_batch`` allows; the
        clock at the first chunk's arrival is appended to ``arrived``."""
        backend = backend or self.backend
        size = backend.max_batch or len(names)
        answered = Answer()
        start = time.monotonic()
        for offset in range(0, len(names), size):
            chunk = names[offset:offset + size]
            self.stats.backend_calls += 1
            self.stats.hosts_asked += len(chunk)
            answered = _merged(answered,
                               self._observed_exchange(chunk, backend))
            if arrived is not None and not arrived:
                arrived.append(self._clock())
        LOG.debug("Asked %s about %d host(s) in %.3fs",
                  self.backend.describe(), len(names),
                  time.monotonic() - start)
        return answered

    def _observed_exchange(self, chunk: list[str],
                           backend: AttestationBackend) -> Answer:
        """One checked exchange, reported to the observer with its time
        and, if it failed, its cause."""
        started = time.monotonic()
        try:
            answered = self._exchange(chunk, backend)
        except BaseException as exc:
            if not (isinstance(exc, OffloadError)
                    and backend is not self.backend):
                # the helper's failure is not the service's: the same
                # exchange is made here next, and measured
                self._notify(time.monotonic() - started, _cause_of(exc))
            raise
        self._notify(time.monotonic() - started, None)
        return answered

    def _notify(self, seconds: float, cause: Cause | None) -> None:
        observer = self.observer
        if observer is None:
            return
        try:
            observer(seconds, cause)
        except Exception:  # noqa: BLE001, S110 - measuring changes nothing
            pass

    def _exchange(self, chunk: list[str],
                  backend: AttestationBackend) -> Answer:
        """The backend's answer for ``chunk``, checked against the
        contract; raises on anything the contract forbids.

        The checks run in C over the whole answer (the common case: one
        answer of thousands of hosts, taken in while the scheduler's other
        threads wait for the GIL); each test runs only once the ones
        before it hold. A backend's reports that break the contract go
        through :meth:`_refuse`, which names the first offence.
        """
        # the client's own backend was checked once, at construction
        native = self._native if backend is self.backend else \
            bool(backend.answers_natively)
        result = self._attest_within_deadline(chunk, backend, native)
        asked = set(chunk)
        if native:
            answer = self._checked_answer(result, asked)
        else:
            if type(result) is not dict:
                raise AttestationError(
                    f"backend {self._backend_name()} answered with a "
                    f"{type(result).__name__}, not a dict", "malformed")
            # checked and converted as one copy of the client's own: the
            # backend may keep the dict it returned and change it later
            # (from a thread of its own, say), between the check and the
            # conversion; a plain dict's copy runs no code of the backend
            result = result.copy()
            reports = list(result.values())
            if not (_all_str(result)
                    and asked.issuperset(result)
                    and not set(map(type, reports)).difference(_HOST_REPORT)
                    and list(map(_HOSTNAME, reports)) == list(result)
                    and not set(map(type, map(_LEVEL, reports))).difference(
                        _TRUST_LEVEL)
                    and _all_str(map(_REASON, reports))
                    and _all_str(map(_BACKEND, reports))
                    and not set(map(type, map(_VTIME, reports))).difference(
                        _STR_OR_NONE)):
                self._refuse(result, asked)
            answer = Answer.of_reports(result)
        reasons = answer.reasons
        if self.redact or (reasons and max(map(len, reasons.values()))
                           > _MAX_REASON):
            # a reason can quote the answer, and the answer can quote
            # anything, a secret included; a backend gives most hosts one
            # of a few reasons: each distinct one is masked and bounded once
            safe = {reason: _bounded(self.redact(reason))
                    for reason in set(reasons.values())}
            answer.reasons = dict(zip(reasons, map(
                safe.__getitem__, reasons.values()), strict=True))
        return answer

    def _checked_answer(self, result: Any, asked: set[str]) -> Answer:
        """A copy of a native backend's :class:`Answer`, if it keeps the
        contract: four plain dictionaries, only names asked about (plain
        strings), the same names in every column, a real
        :class:`TrustLevel` each, a string reason and backend, a string or
        no time.

        The copy is checked, kept and handed on, never the backend's own
        dictionaries: a backend that keeps what it returned and changes it
        later (the next chunk, a thread of its own, any call the client
        makes into it) would otherwise change an answer after its check.
        Plain dictionaries only: a subclass, or any other mapping, can show
        the check one content and a copy another.
        """
        problem: str | None = None
        answer = Answer()
        if type(result) is not Answer:
            problem = f"a {type(result).__name__}, not an Answer"
        elif set(map(type, (result.levels, result.reasons, result.vtimes,
                            result.backends))).difference(_DICT):
            problem = "columns that are not plain dictionaries"
        else:
            # in C, and no code of the backend's runs: an Answer itself
            # (its own copy) of plain dictionaries
            answer = result.copy()
            levels = answer.levels
            problem = (
                "a host name that is not a string"
                if not _all_str(levels) else
                "hosts that were not asked about"
                if not asked.issuperset(levels) else
                "columns that do not hold the same hosts"
                if not (levels.keys() == answer.reasons.keys()
                        == answer.vtimes.keys() == answer.backends.keys())
                else "a level that is not a trust level"
                if set(map(type, levels.values())).difference(_TRUST_LEVEL)
                else "a reason or backend that is not a string"
                if not (_all_str(answer.reasons.values())
                        and _all_str(answer.backends.values()))
                else "a time that is neither a string nor absent"
                if set(map(type, answer.vtimes.values())).difference(
                    _STR_OR_NONE)
                else None)
        if problem is not None:
            raise AttestationError(
                f"backend {self._backend_name()} answered with {problem}",
                "malformed")
        return answer

    def _refuse(self, result: dict[Any, Any], asked: set[str]) -> None:
        """Raise for the first entry of ``result`` the backend contract
        forbids; a client that acted on it would let one host's answer
        stand for another's, or a look-alike string stand for a level."""
        for name, report in result.items():
            if type(name) is not str or name not in asked \
                    or type(report) is not HostReport \
                    or type(report.hostname) is not str \
                    or report.hostname != name:
                # masked before it is cut: a secret cut in half could no
                # longer be recognised
                raise AttestationError(
                    f"backend {self._backend_name()} answered for "
                    f"{self.redact(name)[:80]!r}, which was not asked about",
                    "malformed")
            if type(report.level) is not TrustLevel or \
                    type(report.reason) is not str or \
                    type(report.backend) is not str or \
                    type(report.vtime_text) not in _STR_OR_NONE:
                raise AttestationError(
                    f"backend {self._backend_name()} gave {name!r} a "
                    "report without a trust level, a reason, a backend "
                    "and a time or none", "malformed")
        # the checks in C refused what this loop accepts: never used as is
        raise AttestationError(
            f"backend {self._backend_name()} gave an answer that breaks "
            "the backend contract", "malformed")

    def _attest_within_deadline(self, names: list[str],
                                backend: AttestationBackend,
                                native: bool) -> Any:
        """``backend.attest(names)``, or ``attest_answer`` when
        ``native``, given up at the backend's deadline.

        A worker thread rather than a timer around the call: nothing can
        interrupt a call from outside in Python, so the caller waits for
        the worker's result with a timeout and abandons it if it is late.
        The worker is a daemon: it cannot keep the process alive.
        """
        stray = self._stray
        if stray is not None and stray.is_alive():
            raise AttestationError(
                f"{self.backend.describe()} has not ended an exchange that "
                "was abandoned at its deadline; not starting another",
                "timeout")
        self._stray = None
        budget = float(getattr(backend, "timeout", 10.0))
        outcome: list[Any] = []
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append((True, backend.attest_answer(names)
                                if native else backend.attest(names)))
            except BaseException as exc:  # noqa: BLE001 - handed over
                outcome.append((False, exc))
            finally:
                done.set()

        worker = threading.Thread(target=work, daemon=True,
                                  name="trustpool-attest")
        worker.start()
        if not done.wait(budget + _ABANDON_MARGIN):
            self._stray = worker
            raise AttestationError(
                f"{self.backend.describe()} did not answer within "
                f"{budget:g}s; the exchange was abandoned", "timeout")
        ok, value = outcome[0]
        if not ok:
            if not isinstance(value, Exception):
                # SystemExit, KeyboardInterrupt... raised by the backend in
                # the worker: a failed exchange here, never the caller's
                # own exit or interrupt
                raise AttestationError(
                    f"{self.backend.describe()} raised "
                    f"{type(value).__name__}", "other")
            raise value
        return value

    def _with_unmentioned(self, names: list[str], answered: Answer
                          ) -> Answer:
        """An answer for each of ``names``: ``answered`` (whose names the
        contract check kept to those asked), ``unknown`` for the others."""
        if len(answered) < len(names):
            absent = list(filterfalse(answered.levels.__contains__, names))
            answered.add(absent, TrustLevel.UNKNOWN, self.backend.name,
                         _NOT_MENTIONED)
        return answered

    def _failed(self, names: list[str], failure: _Failure,
                now: float) -> Answer:
        reason = (f"attestation failed {now - failure.at:.0f}s ago, next "
                  f"try in {max(0.0, failure.until - now):.0f}s: "
                  f"{failure.message}")
        return Answer.uniform(names, TrustLevel.UNKNOWN, self.backend.name,
                              reason)

    def _busy(self, names: list[str]) -> Answer:
        reason = (f"another attestation request did not finish within "
                  f"{self.max_wait:g}s")
        return Answer.uniform(names, TrustLevel.UNKNOWN, self.backend.name,
                              reason)

    def _backend_name(self) -> str:
        name = getattr(self.backend, "name", None)
        return name if isinstance(name, str) else "?"

    def _describe(self, exc: BaseException) -> str:
        """A one-line, redacted message for ``exc``: its own text when it
        is the library's error, its type and text otherwise."""
        if isinstance(exc, AttestationError):
            text = self.redact(exc)
        else:
            text = f"{type(exc).__name__}: {self.redact(exc)}"
        return _bounded(" ".join(text.split()))

    def _log_unexpected(self, during: str, exc: BaseException) -> str:
        """Log an exception that reached the outermost boundary, at most
        once a minute for the same text; returns the hosts' reason."""
        message = self._describe(exc)
        reason = f"unexpected error during {during}: {message}"
        if self._first_in_a_minute(reason):
            LOG.error("Attestation client: %s; the hosts count as unknown",
                      reason)
        return reason

    def _first_in_a_minute(self, text: str) -> bool:
        """Whether ``text`` was not logged in the last minute (and is
        now): a scheduler asks many times a second, a line per request is
        a flood."""
        now = self._clock()
        last = self._logged.get(text)
        if last is None or now - last >= _REPEAT_LOG_INTERVAL:
            if len(self._logged) > 64:
                self._logged.clear()
            self._logged[text] = now
            return True
        return False

    def _unknown(self, report: HostReport, reason: str) -> HostReport:
        """``report`` made unknown; the reason can quote the answer (its
        time), and the answer can quote anything, a secret included."""
        return report.with_level(TrustLevel.UNKNOWN,
                                 _bounded(self.redact(reason)))

    def _check_age(self, report: HostReport, now: float) -> HostReport:
        if report.level is TrustLevel.UNKNOWN:
            return report
        vtime = report.vtime
        if vtime is None:
            # No readable time, no proof of freshness: with an age limit
            # set, that is doubt, and doubt is unknown.
            seen = ("the server gave no time" if report.vtime_text is None
                    else f"the server's time {report.vtime_text[:4000]!r} "
                    "cannot be read")
            return self._unknown(report,
                f"{seen}, so max_report_age cannot be checked; it said "
                f"{report.level.value!r}")
        age = now - vtime.timestamp()
        if age > self.max_report_age:
            return self._unknown(report,
                f"stale: the server last vouched {age:.0f}s ago "
                f"(max_report_age {self.max_report_age:g}s); it said "
                f"{report.level.value!r}")
        skew = min(MAX_CLOCK_SKEW, self.max_report_age)
        if -age > skew:
            return self._unknown(report,
                f"the server's time is {-age:.0f}s ahead of ours (more than "
                f"the {skew:g}s of clock skew allowed with max_report_age); "
                f"it said {report.level.value!r}")
        return report


class _Forward:
    """``clock``, never going back: a reading earlier than one already
    given is given as that one (NaN is passed on: nothing is fresh at a
    NaN time, and nothing is kept).

    Every deadline is a time on this clock; one that went back would serve
    an answer for longer than the TTL after it arrived. The monotonic
    clock does not go back, a clock a caller passes might.
    """

    __slots__ = ("_clock", "_latest")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._latest = -math.inf

    def __call__(self) -> float:
        now = self._clock()
        latest = self._latest
        if now > latest:
            self._latest = now
            return now
        return latest if now < latest else now


def _merged(answer: Answer, newer: Answer) -> Answer:
    """``answer`` updated with ``newer``, or ``newer`` itself when
    ``answer`` is empty (a cold pass: no copy of 10,000 entries). Both
    belong to the caller: the cache keeps copies, never these."""
    if not len(answer):
        return newer
    answer.update(newer)
    return answer


def _all_str(values: Iterable[Any]) -> bool:
    """Whether every value is exactly a ``str`` (a loop in C)."""
    return not set(map(type, values)).difference(_STR)


def _distinct_names(hostnames: Iterable[Any]) -> list[str]:
    """The strings of ``hostnames``, each once, in order, as plain
    strings: a backend is asked about plain strings only, and must
    answer with them (a subclass can compare equal to a name it does not
    spell)."""
    names = list(dict.fromkeys(hostnames))
    if _all_str(names):
        return names
    return list(dict.fromkeys(
        str.__str__(n) for n in names if isinstance(n, str)))


def _names_in_order(hostnames: Iterable[Any]) -> list[str | None]:
    """Each entry of ``hostnames`` as a plain, non-empty string, or
    ``None`` where it is none; no method of the entries is called."""
    return [str.__str__(n) if isinstance(n, str) and str.__len__(n)
            else None for n in hostnames]


def _each_name(hostnames: Iterable[Any], make: Callable[[str], _T]
               ) -> list[_T | None]:
    """``make(name)`` for each name of ``hostnames`` (see
    :func:`_names_in_order`), ``None`` for the other entries; an empty list
    when ``hostnames`` itself cannot be read (what the caller zips it
    with then passes nothing). Never raises: the outermost boundaries'
    answer when something went wrong."""
    try:
        return [None if n is None else make(n)
                for n in _names_in_order(hostnames)]
    except Exception:  # noqa: BLE001 - the answer of a boundary
        return []


def _unknown_level(name: str) -> TrustLevel:
    return TrustLevel.UNKNOWN



_STR = (str,)
_HOST_REPORT = (HostReport,)
_TRUST_LEVEL = (TrustLevel,)
_STR_OR_NONE = (str, type(None))
_DICT = (dict,)
_HOSTNAME = operator.attrgetter("hostname")
_LEVEL = operator.attrgetter("level")
_REASON = operator.attrgetter("reason")
_BACKEND = operator.attrgetter("backend")
_VTIME = operator.attrgetter("vtime_text")


def _cause_of(exc: BaseException) -> Cause:
    """The library error's own cause; ``other`` for any other type."""
    return exc.cause if isinstance(exc, AttestationError) else "other"


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_REASON else \
        text[:_MAX_REASON - 3] + "..."
