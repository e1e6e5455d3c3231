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
