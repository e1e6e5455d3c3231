"""ReportCache: deadlines, one per answer, and a bounded size."""

from __future__ import annotations

from trustpool.attestation import Answer, HostReport, TrustLevel
from trustpool.attestation.cache import ReportCache


def report(name):
    return HostReport(name, TrustLevel.TRUSTED, "t", "r")


class Cache(ReportCache):
    """The cache with reports in and out, as the tests write them."""

    def store(self, reports, now, epoch=None):
        super().store(Answer.of_reports(reports), now, epoch)

    def lookup(self, names, now):
        found, missing = super().lookup(names, now)
        return found.reports(), missing

    def lookup_ahead(self, names, now, within):
        found, missing, due = super().lookup_ahead(names, now, within)
        return found.reports(), missing, due


def test_fresh_until_the_deadline():
    cache = Cache(ttl=10, maxsize=100)
    cache.store({"a": report("a"), "b": report("b")}, now=100.0)
    found, missing = cache.lookup(["a", "b", "c"], now=109.99)
    assert set(found) == {"a", "b"} and missing == ["c"]
    found, missing = cache.lookup(["a", "b"], now=110.0)
    assert found == {} and missing == ["a", "b"]


def test_ttl_zero_keeps_nothing():
    cache = Cache(ttl=0, maxsize=100)
    cache.store({"a": report("a")}, now=1.0)
    assert len(cache) == 0
    assert cache.lookup(["a"], now=1.0) == ({}, ["a"])


def test_size_bound_drops_expired_first_then_oldest():
    cache = Cache(ttl=10, maxsize=3)
    cache.store({"old": report("old")}, now=0.0)         # expired at 10
    cache.store({"a": report("a"), "b": report("b")}, now=5.0)
    cache.store({"c": report("c")}, now=12.0)
    assert len(cache) == 3
    assert cache.lookup(["old"], now=12.0)[1] == ["old"]
    cache.store({"d": report("d")}, now=13.0)             # a is the oldest
    assert len(cache) == 3
    found, missing = cache.lookup(["a", "b", "c", "d"], now=13.0)
    assert missing == ["a"]


def test_refreshed_entry_moves_to_the_young_end():
    cache = Cache(ttl=100, maxsize=2)
    cache.store({"a": report("a"), "b": report("b")}, now=0.0)
    cache.store({"a": report("a")}, now=1.0)
    cache.store({"c": report("c")}, now=2.0)
    found, missing = cache.lookup(["a", "b", "c"], now=3.0)
    assert missing == ["b"]


def test_in_order_only_when_every_name_is_fresh():
    cache = Cache(ttl=10, maxsize=100)
    cache.store({"a": report("a"), "b": report("b")}, now=100.0)
    cache.store({"c": report("c")}, now=105.0)
    # the levels, in order, and the earliest deadline among the names
    assert cache.levels_in_order(["c", "a", "a"], 109.9) == (
        [report("c").level, report("a").level, report("a").level], 110.0)
    # one name expired, missing or not a name: the caller looks up
    assert cache.levels_in_order(["c", "a"], 110.0) is None
    assert cache.levels_in_order(["a", "z"], 100.0) is None
    assert cache.levels_in_order(["a", None], 100.0) is None
    assert cache.levels_in_order([], 100.0) is None
    # lookup's fast path: the same split as entry by entry
    assert cache.lookup(["a", "c"], 109.0) == (
        {"a": report("a"), "c": report("c")}, [])
    assert cache.lookup(["a", "c"], 110.0) == ({"c": report("c")}, ["a"])
    assert cache.lookup_ahead(["a", "c"], 101.0, 5.0) == (
        {"a": report("a"), "c": report("c")}, [], [])
    assert cache.lookup_ahead(["a", "c"], 106.0, 5.0) == (
        {"a": report("a"), "c": report("c")}, [], ["a"])


def test_no_deadline_no_entry():
    # a broken clock (NaN) gives no deadline that can be compared
    cache = Cache(ttl=10, maxsize=100)
    cache.store({"a": report("a")}, now=float("nan"))
    assert len(cache) == 0
    assert cache.lookup(["a"], 0.0) == ({}, ["a"])


def test_an_answer_from_before_a_clear_is_not_kept():
    cache = Cache(ttl=10, maxsize=100)
    epoch = cache.epoch
    cache.clear()
    cache.store({"a": report("a")}, now=0.0, epoch=epoch)
    assert len(cache) == 0
    cache.store({"a": report("a")}, now=0.0, epoch=cache.epoch)
    assert len(cache) == 1


def _columns(snap):
    a = snap.answer
    return (dict(a.levels), dict(a.reasons), dict(a.vtimes),
            dict(a.backends), dict(snap.deadlines))


def test_a_published_snapshot_is_never_changed():
    """What a look-up reads without a lock is never written to: a store
    (partial, whole, over the size bound) and a clear each publish a new
    snapshot and leave the one before exactly as it was."""
    cache = ReportCache(ttl=10, maxsize=3)
    seen = []
    for names, now in ((["a", "b"], 1.0), (["b", "c"], 2.0),
                       (["a", "b", "c"], 3.0), (["d"], 4.0),
                       (["e", "f"], 20.0)):
        seen.append((cache._now, _columns(cache._now)))
        cache.store(Answer.uniform(names, TrustLevel.TRUSTED, "t", "r"),
                    now)
    seen.append((cache._now, _columns(cache._now)))
    cache.clear()
    for snap, columns in seen:
        assert _columns(snap) == columns
    assert len(cache) == 0


def test_readers_see_one_whole_store_or_the_one_before():
    """Threads read while another stores answers that alternate between
    all trusted and all untrusted: every read is of one answer, never
    half of one, and never waits for a store."""
    import threading

    names = [f"h{i}" for i in range(2000)]
    cache = ReportCache(ttl=1e9, maxsize=10_000)
    levels = (TrustLevel.TRUSTED, TrustLevel.UNTRUSTED)
    cache.store(Answer.uniform(names, levels[0], "t", "r"), 0.0)
    stop = threading.Event()
    mixed = []

    def read():
        while not stop.is_set():
            hit = cache.levels_in_order(names, 1.0)
            assert hit is not None
            if len(set(hit[0])) != 1:
                mixed.append(hit)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for r in readers:
        r.start()
    try:
        for i in range(300):
            cache.store(Answer.uniform(names, levels[i % 2], "t", "r"),
                        float(i))
    finally:
        stop.set()
        for r in readers:
            r.join(10)
    assert not mixed
