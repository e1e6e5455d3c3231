"""Refreshing ahead: callers stop waiting, and trust is never extended.

Real threads (the refresh runs in one of its own), a hand-moved clock (so
"before" and "after" a deadline are exact, not a matter of sleeping).
"""

from __future__ import annotations

import threading
import time

import pytest

from trustpool.attestation import AttestationClient, TrustLevel
from trustpool.exceptions import AttestationError

from tests.support.clock import Clock
from tests.unit.test_client import (
    GatedBackend,
    HangingBackend,
    ScriptedBackend,
)

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN
TTL, LEAD = 10.0, 2.5


@pytest.fixture
def clock():
    return Clock(1000.0)


def make(backend, clock, **kw):
    kw.setdefault("ttl", TTL)
    kw.setdefault("failure_retry_interval", 30)
    kw.setdefault("refresh_ahead", LEAD)
    return AttestationClient(backend, clock=clock, **kw)


def settle(client):
    """Wait for the refresh thread to have nothing left to do (it then
    waits for more to come due, or ends: see test_the_thread_ends_*)."""
    assert client._ahead_idle.wait(10), "the refresh ahead never settled"


def test_no_thread_before_an_answer_is_due(clock):
    before = threading.active_count()
    client = make(ScriptedBackend({"a": T}), clock)
    client.level("a")
    clock.advance(TTL - LEAD - 0.1)
    client.level("a")
    assert client._ahead is None
    assert threading.active_count() == before


def test_a_due_answer_is_refreshed_before_it_expires(clock):
    backend = ScriptedBackend({"a": T, "b": T})
    client = make(backend, clock)
    client.levels(["a", "b"])
    clock.advance(TTL - LEAD + 0.5)          # 2 s before the deadline
    assert client.level("a").level is T      # the old answer, still valid
    client.level("b")
    settle(client)
    assert client.stats.refreshes_ahead >= 1
    refreshed = {n for call in backend.calls[1:] for n in call}
    assert refreshed == {"a", "b"}
    calls = len(backend.calls)
    # past the first answer's deadline: the refreshed answer serves, and no
    # caller asks the service itself
    clock.advance(LEAD)
    backend.table["a"] = U                   # what a new request would see
    assert client.level("a").level is T
    assert len(backend.calls) == calls


def test_a_refreshed_answer_replaces_trust_with_what_it_says(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    client.level("a")
    clock.advance(TTL - 1)
    backend.table["a"] = U
    assert client.level("a").level is T      # old answer, inside its TTL
    settle(client)
    assert client.level("a").level is U      # the refresh landed: at once


@pytest.mark.parametrize("max_wait", [0.05, None])
def test_a_hung_refresh_never_extends_trust(clock, max_wait):
    backend = HangingBackend({"a": T})       # abandoned after 0.3 s
    backend.attest = ScriptedBackend.attest.__get__(backend)
    client = make(backend, clock, max_wait=max_wait)
    try:
        assert client.level("a").level is T
        hang = HangingBackend.attest.__get__(backend)
        backend.attest = hang                # from now on, every call hangs
        clock.advance(TTL - 1)
        assert client.level("a").level is T  # inside its TTL: still valid
        assert client._ahead is not None and client._ahead.is_alive()
        clock.advance(1)                     # exactly at the deadline
        report = client.level("a")
        assert report.level is K, report
        clock.advance(0.5)
        assert client.level("a").level is K
    finally:
        backend.release.set()
        settle(client)


def test_a_failed_refresh_is_remembered_and_hosts_expire_on_time(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    client.level("a")
    backend.error = RuntimeError("verifier down")
    clock.advance(TTL - 1)
    assert client.level("a").level is T
    settle(client)
    assert client.stats.failures == 1
    assert client.level("a").level is T      # its own deadline is not yet
    settle(client)
    assert len(backend.calls) == 2           # failure remembered: no retry
    clock.advance(1)
    report = client.level("a")
    assert report.level is K
    assert "verifier down" in report.reason
    assert len(backend.calls) == 2


def test_hosts_nobody_asks_about_are_not_refreshed(clock):
    backend = ScriptedBackend({"a": T, "idle": T})
    client = make(backend, clock)
    client.levels(["a", "idle"])
    clock.advance(TTL - 1)
    client.level("a")
    settle(client)
    assert backend.calls[1:] == [["a"]]
    clock.advance(1)
    client.level("idle")                     # expired: asked in the open
    assert backend.calls[-1] == ["idle"]


def test_one_refresh_at_a_time_and_later_dues_join_it(clock):
    backend = GatedBackend({"a": T, "b": T})
    backend.gate.set()
    client = make(backend, clock)
    client.levels(["a", "b"])
    backend.gate.clear()
    backend.entered.clear()
    clock.advance(TTL - 1)
    client.level("a")                        # starts the refresh; it blocks
    assert backend.entered.wait(5)
    running = client._ahead
    client.level("b")                        # due too: joins, no 2nd thread
    assert client._ahead is running
    backend.gate.set()
    settle(client)
    assert backend.calls[1:] == [["a"], ["b"]]
    assert client.stats.refreshes_ahead == 2


def test_closed_client_starts_no_refresh(clock):
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    client.level("a")
    client.close()
    clock.advance(TTL - 1)
    assert client.level("a").level is T
    assert client._ahead is None
    assert len(backend.calls) == 1


def test_off_by_default_in_the_library(clock):
    backend = ScriptedBackend({"a": T})
    client = AttestationClient(backend, ttl=TTL, clock=clock)
    client.level("a")
    clock.advance(TTL - 0.5)
    client.level("a")
    assert client._ahead is None and len(backend.calls) == 1


@pytest.mark.parametrize("max_wait", [None, 5.0])
def test_an_answer_found_fresh_is_not_served_after_waiting_past_it(
        clock, max_wait):
    """A caller that found ``a`` fresh, then waited for the refresh lock
    (held by the refresh ahead) for a host it lacks, must not hand out the
    ``a`` it looked up before waiting once ``a``'s deadline has passed."""
    backend = GatedBackend({"a": T, "new": T})
    backend.gate.set()
    client = make(backend, clock, max_wait=max_wait)
    assert client.level("a").level is T
    backend.gate.clear()
    backend.entered.clear()
    clock.advance(TTL - 1)
    client.level("a")                        # the refresh ahead; it blocks
    assert backend.entered.wait(5)
    backend.table["a"] = U                   # what that refresh will say
    looked = threading.Event()
    lookup_ahead = client._cache.lookup_ahead

    def spied(*args):
        found = lookup_ahead(*args)
        looked.set()
        return found

    client._cache.lookup_ahead = spied
    result = {}
    caller = threading.Thread(
        target=lambda: result.update(client.levels(["a", "new"])))
    caller.start()                           # finds a fresh; waits for new
    assert looked.wait(5)
    clock.advance(2)                         # a's first deadline passes
    backend.gate.set()
    caller.join(10)
    settle(client)
    assert result["a"].level is not T, result["a"]


def test_close_between_the_check_and_the_start_starts_no_refresh(clock):
    """close() that comes after a caller found answers due and checked the
    client open, but before it started the refresh: no thread starts on a
    closed backend (close() would not have waited for it)."""
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    client.level("a")
    clock.advance(TTL - 1)
    guard = client._ahead_guard

    class Racing:
        """The guard, with close() run by another thread just before the
        caller takes it."""

        def __init__(self):
            self.raced = False

        def __enter__(self):
            if not self.raced:
                self.raced = True
                closer = threading.Thread(target=client.close)
                closer.start()
                closer.join(10)
            return guard.__enter__()

        def __exit__(self, *exc):
            return guard.__exit__(*exc)

    client._ahead_guard = Racing()
    assert client.level("a").level is T      # still within its TTL
    assert client._ahead is None
    assert len(backend.calls) == 1


def test_the_warm_pass_in_order_refreshes_what_is_due(clock):
    """The scheduler's warm pass (answers in order, no dictionary built)
    answers from the cache inside the refresh window too, and starts the
    refresh of the names due there; a name not due is not asked about."""
    backend = ScriptedBackend({"a": T, "b": T, "c": T})
    client = make(backend, clock)
    client.levels(["a", "b"])
    clock.advance(TTL - LEAD - 1)
    client.level("c")                        # c is due a second later
    clock.advance(1.5)                       # a, b due; c not yet
    calls = len(backend.calls)
    found = client.levels_in_order(["a", "b", "c", "a"])
    assert [r.hostname for r in found] == ["a", "b", "c", "a"]
    settle(client)
    assert [sorted(call) for call in backend.calls[calls:]] == [["a", "b"]]
    assert client.stats.refreshes_ahead == 1


def test_the_warm_pass_in_order_never_outlives_a_failed_refresh(clock):
    """A refresh ahead that fails leaves each answer its own deadline:
    from it on, the warm pass finds the hosts unknown."""
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    client.level("a")
    clock.advance(TTL - 1)
    backend.error = AttestationError("down", "connect")
    assert client.levels_in_order(["a"])[0].level is T
    settle(client)
    assert client.stats.failures == 1
    clock.advance(1)                         # the answer's own deadline
    assert client.levels_in_order(["a"])[0].level is K


def test_a_slow_refresh_starts_the_next_one_earlier(clock):
    """A refresh ahead that took longer than two thirds of the lead moves
    the next ones earlier (one and a half times the longest of the last
    four, at most nine tenths of the TTL), so that they land before
    the answers expire; the answers' deadlines do not move."""
    backend = ScriptedBackend({"a": T}, clock=clock)
    client = make(backend, clock)
    client.level("a")                        # arrives at 1000, until 1010
    assert client._lead() == LEAD

    def refresh_ahead_at(now, takes):
        backend.takes = takes
        clock.now = now
        refreshes = client.stats.refreshes_ahead
        assert client.level("a").level is T  # answered from the cache
        settle(client)
        return client.stats.refreshes_ahead - refreshes

    assert refresh_ahead_at(1007.6, takes=2.0) == 1   # arrives at 1009.6
    assert client._lead() == 3.0
    # due 3 s before its deadline of 1019.6, not 2.5 s: at 1016.6
    assert refresh_ahead_at(1016.5, takes=0.0) == 0
    assert refresh_ahead_at(1016.7, takes=0.0) == 1   # arrives at 1016.7
    assert client._lead() == 3.0             # the longest of the last four
    assert refresh_ahead_at(1023.8, takes=7.0) == 1   # arrives at 1030.8
    assert client._lead() == 0.9 * TTL       # 10.5 s, capped at 9 s
    # the answer is served until its own deadline, and not a moment after
    backend.error = AttestationError("down", "connect")
    clock.now = 1040.79
    assert client.level("a").level is T
    settle(client)
    clock.now = 1040.8
    assert client.level("a").level is K


def test_one_thread_serves_refresh_after_refresh(clock):
    """The refresh thread waits for the next answers due instead of
    ending: no caller pays for starting a thread once per refresh."""
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    try:
        client.level("a")
        clock.advance(TTL - 1)
        client.level("a")
        settle(client)
        first = client._ahead
        assert first is not None and first.is_alive()
        clock.advance(TTL - 1)               # the refreshed answer due
        assert client.level("a").level is T
        settle(client)
        assert client._ahead is first and first.is_alive()
        assert client.stats.refreshes_ahead == 2
        assert len(backend.calls) == 3
    finally:
        client.close()
    assert not first.is_alive()


def test_close_ends_the_waiting_thread_at_once(clock):
    client = make(ScriptedBackend({"a": T}), clock, ttl=3600.0)
    client.level("a")
    clock.advance(3600.0 - 1)
    client.level("a")
    settle(client)
    ahead = client._ahead
    assert ahead.is_alive()                  # waiting for more, an hour
    client.close()
    assert not ahead.is_alive()              # close did not wait an hour


def test_the_thread_ends_when_nothing_comes_due_for_a_ttl():
    """Real time: a thread nobody hands answers to ends by itself."""
    client = AttestationClient(ScriptedBackend({"a": T}), ttl=1.0,
                               refresh_ahead=0.9)
    try:
        client.level("a")
        time.sleep(0.2)
        client.level("a")                    # due: a refresh ahead
        settle(client)
        ahead = client._ahead
        assert ahead is not None
        ahead.join(10)
        assert not ahead.is_alive()
        assert not client._ahead_running
        client.level("a")                    # expired: asked in this call
        time.sleep(0.2)
        client.level("a")                    # due again: a new thread
        settle(client)
        assert client._ahead is not ahead
        assert client.stats.refreshes_ahead >= 2
    finally:
        client.close()


def test_a_thread_that_is_gone_is_replaced(clock):
    """After a fork, the parent's refresh thread does not exist in the
    child: a caller that finds it gone starts one, even with the names
    already waiting in the due list."""
    backend = ScriptedBackend({"a": T})
    client = make(backend, clock)
    try:
        client.level("a")
        gone = threading.Thread(target=lambda: None)
        gone.start()
        gone.join()
        client._ahead, client._ahead_running = gone, True
        client._due["a"] = None
        clock.advance(TTL - 1)
        client.level("a")
        settle(client)
        assert client._ahead is not gone
        assert client.stats.refreshes_ahead == 1
        assert len(backend.calls) == 2
    finally:
        client.close()


def test_a_ttl_beyond_the_platform_timeout_does_not_break_the_thread(
        clock, caplog):
    """attestation_auth_timeout has no maximum; Event.wait raises
    OverflowError past threading.TIMEOUT_MAX."""
    client = make(ScriptedBackend({"a": T}), clock, ttl=1e10)
    try:
        client.level("a")
        clock.advance(1e10 - 1)
        client.level("a")
        settle(client)
        assert client._ahead.is_alive() and client.stats.refreshes_ahead == 1
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        client.close()
