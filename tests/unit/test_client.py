"""The client's time rules: TTL, negative cache, single-flight, failures.

The backend here is a scripted one (the HTTP side has its own tests); the
clock is a hand-moved one so expiry is tested without sleeping.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time

import pytest

from trustpool.attestation import (
    AttestationBackend,
    AttestationClient,
    AttestationError,
    HostReport,
    TrustLevel,
)

from tests.support.clock import Clock

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN


class ScriptedBackend(AttestationBackend):
    """Answers from ``table``; records every call."""

    name = "scripted"

    def __init__(self, table=None, clock=None):
        super().__init__(conf=None)
        self.table = dict(table or {})
        self.calls: list[list[str]] = []
        self.error: Exception | None = None
        self.clock = clock
        self.takes = 0.0
        self.vtime = None
        self.extra: dict[str, HostReport] = {}

    def attest(self, hostnames):
        self.calls.append(list(hostnames))
        if self.clock is not None:
            self.clock.advance(self.takes)
        if self.error is not None:
            raise self.error
        reports = {n: HostReport(n, self.table[n], self.name, "scripted",
                                 self.vtime)
                   for n in hostnames if n in self.table}
        reports.update(self.extra)
        return reports


class GatedBackend(ScriptedBackend):
    """Blocks in :meth:`attest` until ``gate`` is set; ``entered`` tells
    the test a call is under way, so other threads can be started then."""

    def __init__(self, table=None, error=None):
        super().__init__(table)
        self.error = error
        self.gate = threading.Event()
        self.entered = threading.Event()

    def attest(self, hostnames):
        self.entered.set()
        self.gate.wait(10)
        return super().attest(hostnames)


@pytest.fixture
def clock():
    return Clock()


def make(backend, clock, **kw):
    kw.setdefault("ttl", 60)
    kw.setdefault("failure_retry_interval", 10)
    return AttestationClient(backend, clock=clock, **kw)


def levels(reports):
    return {n: r.level for n, r in reports.items()}


def test_one_batch_then_cached_until_ttl(clock):
    backend = ScriptedBackend({"a": T, "b": U, "c": K})
    client = make(backend, clock)
    assert levels(client.levels(["a", "b", "c"])) == {"a": T, "b": U, "c": K}
    assert backend.calls == [["a", "b", "c"]]
    clock.advance(59.9)
    assert levels(client.levels(["c", "a", "b"])) == {"a": T, "b": U, "c": K}
    assert len(backend.calls) == 1
    clock.advance(0.2)
    backend.table["a"] = U
    assert client.level("a").level is U
    assert backend.calls[1] == ["a"]


def test_ttl_counts_from_when_the_answer_arrived(clock):
    backend = ScriptedBackend({"a": T}, clock=clock)
    backend.takes = 30  # a slow server
    client = make(backend, clock)
    client.levels(["a"])
    clock.advance(50)  # 80 s after the request left, 50 s after the answer
    client.levels(["a"])
    assert len(backend.calls) == 1
    clock.advance(11)
    client.levels(["a"])
    assert len(backend.calls) == 2


def test_only_stale_or_missing_names_are_asked(clock):
    backend = ScriptedBackend({"a": T, "b": T, "c": T})
    client = make(backend, clock)
    client.levels(["a"])
    clock.advance(30)
    client.levels(["b"])
    clock.advance(31)  # a is stale now, b is not
    client.levels(["a", "b", "c"])
    assert backend.calls == [["a"], ["b"], ["a", "c"]]


def test_names_are_deduplicated(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    assert set(client.levels(["a", "a", "b", "a"])) == {"a", "b"}
    assert backend.calls == [["a", "b"]]


def test_unmentioned_hosts_are_cached_as_unknown(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    names = ["a"] + [f"ghost{i}" for i in range(100)]
    for _ in range(100):
        reports = client.levels(names)
    assert len(backend.calls) == 1
    assert reports["ghost7"].level is K
    assert "did not mention" in reports["ghost7"].reason


def test_ttl_zero_asks_every_time(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock, ttl=0)
    client.levels(["a"])
    client.levels(["a"])
    assert len(backend.calls) == 2


def test_failure_is_unknown_logged_once_and_remembered(clock, caplog):
    caplog.set_level(logging.WARNING, "trustpool")
    backend = ScriptedBackend({"a": T, "b": T})
    backend.error = AttestationError("server on fire")
    client = make(backend, clock, failure_retry_interval=10)
    reports = client.levels(["a", "b"])
    assert levels(reports) == {"a": K, "b": K}
    assert "server on fire" in reports["a"].reason
    for _ in range(5):
        clock.advance(1.5)
        assert client.level("a").level is K
    assert len(backend.calls) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "server on fire" in warnings[0].getMessage()
    backend.error = None
    clock.advance(3)  # 10.5 s after the failure
    assert client.level("a").level is T
    assert len(backend.calls) == 2
    assert client.stats.failures == 1


def test_failure_never_serves_expired_trust(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    assert client.level("a").level is T
    clock.advance(61)
    backend.error = AttestationError("down")
    assert client.level("a").level is K


def test_unexpected_backend_exception_fails_closed(clock):
    backend = ScriptedBackend({"a": T})
    backend.error = KeyError("bug in a plugin")
    client = make(backend, clock)
    report = client.level("a")
    assert report.level is K
    assert "KeyError" in report.reason


def test_backend_answering_for_other_hosts_fails_closed(clock):
    backend = ScriptedBackend({"a": T})
    backend.extra = {"z": HostReport("z", T, "scripted", "spoof")}
    client = make(backend, clock)
    reports = client.levels(["a"])
    assert reports["a"].level is K
    assert "'z'" in reports["a"].reason
    assert "z" not in reports


def test_batches_are_split_only_for_backends_that_must(clock):
    backend = ScriptedBackend({n: T for n in "abcde"})
    backend.max_batch = 2
    client = make(backend, clock)
    assert levels(client.levels(list("abcde"))) == {n: T for n in "abcde"}
    assert backend.calls == [["a", "b"], ["c", "d"], ["e"]]


def test_single_flight_with_real_threads(clock):
    backend = GatedBackend({f"h{i}": T for i in range(50)})
    client = make(backend, clock)
    names = list(backend.table)
    results = []

    def worker():
        results.append(levels(client.levels(names)))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    threads[0].start()
    assert backend.entered.wait(5)
    for t in threads[1:]:
        t.start()
    backend.gate.set()
    for t in threads:
        t.join(10)
    assert len(results) == 16
    assert all(r == {n: T for n in names} for r in results)
    assert len(backend.calls) == 1


def test_threads_wait_on_one_failing_call_only(clock):
    backend = GatedBackend(error=AttestationError("timed out"))
    client = make(backend, clock)
    out = []
    threads = [threading.Thread(target=lambda: out.append(
        client.level("a").level)) for _ in range(8)]
    threads[0].start()
    assert backend.entered.wait(5)
    for t in threads[1:]:
        t.start()
    backend.gate.set()
    for t in threads:
        t.join(10)
    assert out == [K] * 8
    assert len(backend.calls) == 1


def _utc(seconds_ago: float, wall: float) -> str:
    return datetime.datetime.fromtimestamp(
        wall - seconds_ago, datetime.timezone.utc).isoformat()


@pytest.mark.parametrize(("seconds_ago", "expected", "needle"), [
    (10, T, "scripted"),
    (299, T, "scripted"),
    (301, K, "stale"),
    (-50, T, "scripted"),    # small skew is tolerated: up to 60 s
    (-61, K, "ahead"),       # beyond it, the answer proves nothing
    (-200, K, "ahead"),
    (-400, K, "ahead"),
])
def test_max_report_age(clock, seconds_ago, expected, needle):
    wall = 2_000_000_000.0
    backend = ScriptedBackend({"a": T})
    backend.vtime = _utc(seconds_ago, wall)
    client = make(backend, clock, max_report_age=300,
                  wall_clock=lambda: wall)
    report = client.level("a")
    assert report.level is expected
    assert needle in report.reason


def test_report_ages_while_cached(clock):
    wall = [2_000_000_000.0]
    backend = ScriptedBackend({"a": T})
    backend.vtime = _utc(0, wall[0])
    client = make(backend, clock, ttl=600, max_report_age=60,
                  wall_clock=lambda: wall[0])
    assert client.level("a").level is T
    wall[0] += 61
    clock.advance(61)
    assert client.level("a").level is K
    assert len(backend.calls) == 1


def test_server_time_never_extends_trust(clock):
    backend = ScriptedBackend({"a": T})
    backend.vtime = _utc(-10 ** 6, 2_000_000_000.0)  # far in the future
    client = make(backend, clock, ttl=60)
    client.level("a")
    clock.advance(61)
    backend.table["a"] = U
    assert client.level("a").level is U


def test_attest_uncached_raises_and_leaves_cache_alone(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    assert client.attest_uncached(["a", "b"])["b"].level is K
    client.levels(["a"])
    assert len(backend.calls) == 2
    backend.error = AttestationError("down")
    with pytest.raises(AttestationError):
        client.attest_uncached(["a"])


def test_invalidate_forgets_answers_and_failures(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    client.level("a")
    client.invalidate()
    client.level("a")
    assert len(backend.calls) == 2
    # a failure is remembered for failure_retry_interval...
    backend.error = AttestationError("down")
    clock.advance(61)
    assert client.level("a").level is K
    backend.error = None
    assert client.level("a").level is K
    assert len(backend.calls) == 3
    # ...unless invalidated: the next call asks again at once
    client.invalidate()
    assert client.level("a").level is T
    assert len(backend.calls) == 4


class TickingClock(Clock):
    """A clock that moves a microsecond at every read while ``ticking``."""

    ticking = False

    def __call__(self) -> float:
        if self.ticking:
            self.now += 1e-6
        return self.now


def test_a_batch_expires_as_one():
    # found by benchmarks/load.py: entries stamped one by one expired
    # microseconds apart and were then refreshed in fragments
    clock = TickingClock()

    class Stamping(ScriptedBackend):
        def attest(self, hostnames):
            clock.ticking = True  # time moves while the answer is stored
            return super().attest(hostnames)

    backend = Stamping({f"h{i}": T for i in range(1000)})
    client = make(backend, clock)
    names = list(backend.table)
    client.levels(names)
    clock.ticking = False
    clock.advance(60 - 0.0002)  # inside the spread of one-by-one stamps
    client.levels(names)
    clock.advance(0.01)
    client.levels(names)
    assert [len(c) for c in backend.calls] == [1000, 1000]


def test_waiting_for_another_refresh_is_bounded(clock):
    backend = GatedBackend({"a": T, "b": T})
    client = make(backend, clock, max_wait=0.05)
    first = threading.Thread(target=client.levels, args=(["a"],))
    first.start()
    assert backend.entered.wait(5)
    try:
        report = client.level("b")  # needs the lock the first call holds
    finally:
        backend.gate.set()
        first.join(5)
    assert report.level is K
    assert "did not finish within 0.05s" in report.reason
    assert backend.calls == [["a"]]
    assert client.level("b").level is T  # nothing was cached or remembered


def test_remembered_failure_needs_no_lock(clock):
    backend = ScriptedBackend({"a": T})
    backend.error = AttestationError("down")
    client = make(backend, clock, max_wait=0.2)
    client.level("a")
    assert client._refresh_lock.acquire(timeout=1)  # someone holds it
    try:
        assert "down" in client.level("a").reason
    finally:
        client._refresh_lock.release()


def test_unreadable_server_time_fails_the_age_check(clock):
    backend = ScriptedBackend({"a": T})
    backend.vtime = "last tuesday"
    client = make(backend, clock, max_report_age=300)
    report = client.level("a")
    assert report.level is K
    assert "'last tuesday' cannot be read" in report.reason
    plain = make(ScriptedBackend({"a": T}), clock)
    assert plain.level("a").level is T  # no age check: vtime is only data


# -- fail closed by construction (issue 14) ---------------------------------

class HangingBackend(ScriptedBackend):
    """Never returns until released: a blocking file, a plugin's bug."""

    timeout = 0.3

    def __init__(self, table=None):
        super().__init__(table)
        self.release = threading.Event()

    def attest(self, hostnames):
        self.calls.append(list(hostnames))
        self.release.wait(20)
        return {}


def test_a_hung_backend_is_abandoned_at_its_deadline_and_remembered(clock):
    backend = HangingBackend({"a": T})
    client = make(backend, clock, failure_retry_interval=30)
    try:
        start = time.monotonic()
        report = client.level("a")
        elapsed = time.monotonic() - start
        assert report.level is K
        assert "did not answer within 0.3s" in report.reason
        assert elapsed < 0.3 + 1.0
        # remembered: the next caller neither waits nor asks again
        start = time.monotonic()
        assert client.level("a").level is K
        assert time.monotonic() - start < 0.1
        assert len(backend.calls) == 1
        # after the retry interval, a worker still stuck means no new call:
        # one stray thread at most, whatever the peer does
        clock.advance(31)
        report = client.level("a")
        assert report.level is K
        assert "has not ended an exchange" in report.reason
        assert len(backend.calls) == 1
    finally:
        backend.release.set()


def test_a_stray_that_ended_lets_the_next_call_through(clock):
    backend = HangingBackend({"a": T})
    client = make(backend, clock, failure_retry_interval=1)
    client.level("a")
    backend.release.set()
    client._stray.join(5)
    clock.advance(2)
    backend.attest = lambda names: {"a": HostReport("a", T, "s", "ok")}
    assert client.level("a").level is T


@pytest.mark.parametrize("error", [
    RecursionError("maximum recursion depth exceeded"),
    OverflowError("date value out of range"),
    UnicodeEncodeError("latin-1", "\u20ac", 0, 1, "ordinal not in range"),
    KeyError("hosts"), MemoryError(), ZeroDivisionError()])
def test_any_exception_type_is_unknown_and_remembered(clock, error, caplog):
    backend = ScriptedBackend({"a": T})
    backend.error = error
    client = make(backend, clock)
    with caplog.at_level(logging.WARNING, "trustpool"):
        report = client.level("a")
        client.level("a")
    assert report.level is K
    assert type(error).__name__ in report.reason
    assert len(backend.calls) == 1
    assert len([r for r in caplog.records if "failed" in r.message]) == 1
    with pytest.raises(AttestationError):
        client.attest_uncached(["a"])


def test_levels_never_raises_even_when_its_own_code_does(clock, caplog):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)

    def broken(names, now):
        raise RuntimeError("bug in the cache")

    client._cache.lookup = broken
    with caplog.at_level(logging.ERROR, "trustpool"):
        reports = client.levels(["a", "b"])
        client.levels(["a", "b"])
    assert levels(reports) == {"a": K, "b": K}
    assert "RuntimeError: bug in the cache" in reports["a"].reason
    # logged once, not once per scheduling request
    assert len(caplog.records) == 1


def test_names_that_cannot_be_read_get_no_report(clock):
    client = make(ScriptedBackend({"a": T}), clock)

    def names():
        yield "a"
        raise ValueError("host list broke")

    assert client.levels(names()) == {}
    assert client.levels([["unhashable"]]) == {}
    assert client.levels(["a", 7, None]).keys() == {"a"}


@pytest.mark.parametrize("answer", [
    {"a": HostReport("a", "trusted", "s", "a plain string level")},
    {"a": HostReport("a", T, "s", None)},
    {"a": ("a", T, "s", "a tuple, not a report")},
    ["a"],
])
def test_look_alike_answers_are_refused(clock, answer):
    backend = ScriptedBackend()
    backend.attest = lambda names: answer
    client = make(backend, clock)
    assert client.level("a").level is K


def test_overflowing_server_time_is_unknown_not_an_exception(clock):
    backend = ScriptedBackend({"a": T})
    backend.vtime = "9999-12-31T23:59:59-23:59"
    client = make(backend, clock, max_report_age=300)
    report = client.level("a")
    assert report.level is K
    assert "cannot be read" in report.reason


@pytest.mark.parametrize("level", [T, U])
def test_no_server_time_is_no_proof_of_freshness(clock, level):
    backend = ScriptedBackend({"a": level})
    client = make(backend, clock, max_report_age=300)
    report = client.level("a")
    assert report.level is K
    assert "gave no time" in report.reason
    # without an age limit, a missing time is nobody's business
    assert make(backend, clock).level("a").level is level


def test_secrets_are_masked_in_every_reason(clock):
    secret = "blob-line-one\nblob-line-two"
    backend = ScriptedBackend({"a": T})
    backend.secrets = (secret,)
    backend.error = ValueError(f"Invalid header value {secret!r}")
    client = make(backend, clock)
    reason = client.level("a").reason
    assert "blob-line" not in reason
    assert "***" in reason
    with pytest.raises(AttestationError) as err:
        client.attest_uncached(["a"])
    assert "blob-line" not in str(err.value)


def test_allowed_skew_is_capped_by_a_smaller_age_limit(clock):
    wall = 2_000_000_000.0
    backend = ScriptedBackend({"a": T})
    backend.vtime = _utc(-20, wall)
    client = make(backend, clock, max_report_age=10,
                  wall_clock=lambda: wall)
    assert "10s of clock skew" in client.level("a").reason


def test_a_secret_echoed_as_the_server_time_is_masked(clock):
    """Found by a fresh-eyes review: the age check quoted the server's
    unreadable time into the reason after the backend's reason had been
    masked."""
    backend = ScriptedBackend({"a": T})
    backend.secrets = ("s3cr3t-blob-VALUE-42",)
    backend.vtime = "s3cr3t-blob-VALUE-42"
    client = make(backend, clock, max_report_age=600)
    report = client.level("a")
    assert report.level is K
    assert "s3cr3t" not in report.reason and "***" in report.reason


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(),
                                 GeneratorExit()],
                         ids=["SystemExit", "KeyboardInterrupt",
                              "GeneratorExit"])
def test_a_backend_that_raises_a_base_exception_is_a_failure(clock, exc):
    """The call runs in a worker thread, which hands over whatever it
    raised; re-raised in the caller, a plugin's ``sys.exit()`` would end
    the scheduler's request (or its process), not make hosts unknown."""
    class Exiting(ScriptedBackend):
        def attest(self, hostnames):
            raise exc

    client = make(Exiting({"a": T}), clock)
    report = client.level("a")
    assert report.level is K
    assert type(exc).__name__ in report.reason
    with pytest.raises(AttestationError):
        client.attest_uncached(["a"])


@pytest.mark.parametrize("ahead", [60, 61, 600])
def test_refresh_ahead_not_shorter_than_the_ttl_is_refused(clock, ahead):
    # every answer would be due from its arrival: a refresh per request
    with pytest.raises(ValueError, match="refresh_ahead .* shorter than"):
        make(ScriptedBackend(), clock, refresh_ahead=ahead)
    make(ScriptedBackend(), clock, refresh_ahead=59.9)


def test_an_answer_asked_before_invalidate_is_not_kept(clock):
    backend = GatedBackend({"a": T})
    client = make(backend, clock)
    worker = threading.Thread(target=client.levels, args=(["a"],))
    worker.start()
    assert backend.entered.wait(10)
    client.invalidate()          # while the answer is on its way
    backend.table["a"] = U       # what the service says after it
    backend.gate.set()
    worker.join(10)
    assert client.level("a").level is U
    assert len(backend.calls) == 2


def test_levels_in_order_answers_as_levels(clock):
    backend = ScriptedBackend({"a": T, "b": U, "c": T})
    client = make(backend, clock, refresh_ahead=10)
    names = ["a", None, "b", "", "a", "x", 7, "c"]
    first = client.levels_in_order(names)
    assert [r and r.level for r in first] == [T, None, U, None, T, K, None, T]
    assert backend.calls == [["a", "b", "x", "c"]]
    # warm: the same reports from the cache, in order, duplicates too
    warm = ["c", "a", "a", "b", "x"]
    assert client.levels_in_order(warm) == [first[7], first[0], first[0],
                                            first[2], first[5]]
    assert len(backend.calls) == 1
    # due for a refresh ahead, then expired: never served past a deadline
    clock.advance(55)
    backend.table["a"] = U
    assert client.levels_in_order(["a"])[0].level is T
    client.close()
    assert client.stats.refreshes_ahead == 1
    clock.advance(60)
    backend.error = AttestationError("down")
    assert [r.level for r in client.levels_in_order(["a", "b"])] == [K, K]


def test_levels_in_order_checks_age(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock, max_report_age=30)
    # no server time: unknown with an age limit, cached or not
    assert client.levels_in_order(["a"])[0].level is K
    assert client.levels_in_order(["a"])[0].level is K


def test_levels_in_order_of_strings_only_answers_as_levels(clock):
    """Every name a string (the filter's usual list): the path in C."""
    backend = ScriptedBackend({"a": T, "b": U})
    client = make(backend, clock)
    found = client.levels_in_order(["a", "", "b", "a", "x"])
    assert [r and r.level for r in found] == [T, None, U, T, K]
    assert backend.calls == [["a", "b", "x"]]


def _large_answer(size: int = 50) -> dict[str, HostReport]:
    return {f"h{i}": HostReport(f"h{i}", T, "s", "fine") for i in range(size)}


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda a: a.update(h7=a["h8"]), id="another-hosts-report"),
    pytest.param(lambda a: a.update(h7=a["h7"]._replace(level="trusted")),
                 id="a-string-for-a-level"),
    pytest.param(lambda a: a.update(h7=a["h7"]._replace(reason=None)),
                 id="no-reason"),
    pytest.param(lambda a: a.update(h7=tuple(a["h7"])), id="a-plain-tuple"),
    pytest.param(lambda a: a.update(x=HostReport("x", T, "s", "fine")),
                 id="a-host-not-asked-about"),
])
def test_one_bad_report_spoils_a_large_answer(clock, spoil):
    """The contract is checked over the whole answer at once (loops in
    C); one bad report among many still spoils every one."""
    answer = _large_answer()
    spoil(answer)
    backend = ScriptedBackend()
    backend.attest = lambda names: answer
    reports = make(backend, clock).levels([f"h{i}" for i in range(50)])
    assert {r.level for r in reports.values()} == {K}
    assert all("not asked about" in r.reason or "without a trust level"
               in r.reason for r in reports.values())


@pytest.mark.parametrize("reason", ["echo s3cr3t-blob-42", "x" * 10_000])
def test_reasons_of_a_large_answer_are_masked_and_bounded(clock, reason):
    answer = _large_answer()
    answer["h3"] = answer["h3"]._replace(reason=reason)
    backend = ScriptedBackend()
    if "s3cr3t" in reason:  # else nothing to mask: bounding alone
        backend.secrets = ("s3cr3t-blob-42",)
    backend.attest = lambda names: answer
    reports = make(backend, clock).levels([f"h{i}" for i in range(50)])
    assert {r.level for r in reports.values()} == {T}
    assert "s3cr3t" not in reports["h3"].reason
    assert len(reports["h3"].reason) < 10_000
    assert reports["h5"].reason == "fine"
