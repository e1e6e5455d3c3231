"""The warm pass (:meth:`AttestationClient.levels_in_order` answered from
the cache with loops in C) against the general path (:meth:`levels`), on
random histories: answers stored and changed, the clock moved forwards,
backwards, to NaN and infinity, the cache invalidated, the service
failing, and requests with repeated, empty and non-string names.

Two clients with the same history, one asked the fast way and one the
general way, must give the same levels and make the same backend calls;
and the fast one must never give ``trusted`` without proof: from the
latest answer for that host, arrived less than a TTL ago on the clock,
or from an answer fetched for that very call.
"""

from __future__ import annotations

import math
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustpool.attestation import (
    Answer,
    AttestationClient,
    HostReport,
    TrustLevel,
)

from tests.support.clock import Clock
from tests.unit.test_client import ScriptedBackend

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN
TTL = 60.0
NAMES = ["a", "b", "c", "", "d"]
#: mostly plain names, so that many requests can take the warm pass
_entry = st.one_of(st.sampled_from(NAMES[:3]), st.sampled_from(NAMES),
                   st.none(), st.integers(0, 2))
_odd_times = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, TTL,
                              TTL - 1e-3])
_step = st.one_of(
    st.tuples(st.just("ask"), st.lists(_entry, max_size=6)),
    st.tuples(st.just("tick"), st.one_of(st.floats(-100, 200), _odd_times)),
    st.tuples(st.just("table"), st.dictionaries(
        st.sampled_from(NAMES), st.sampled_from([T, U, K, None]))),
    st.tuples(st.just("invalidate"), st.none()),
    st.tuples(st.just("fail"), st.booleans()),
)


class _NativeScripted(ScriptedBackend):
    """The scripted service, answering as trustpool's own readers do: an
    :class:`Answer` for the client to check as a whole."""

    answers_natively = True

    def attest_answer(self, hostnames):
        return Answer.of_reports(self.attest(hostnames))


class _Client:
    def __init__(self, refresh_ahead: float, native: bool = False) -> None:
        self.clock = Clock()
        self.backend = (_NativeScripted if native else ScriptedBackend)({})
        self.client = AttestationClient(
            self.backend, ttl=TTL, failure_retry_interval=10,
            clock=self.clock, refresh_ahead=refresh_ahead)

    def apply(self, kind: str, arg: object) -> None:
        if kind == "tick":
            assert isinstance(arg, float)
            if math.isfinite(arg) and math.isfinite(self.clock.now):
                self.clock.advance(arg)
            else:  # to NaN/inf, or back from there
                self.clock.now = arg if not math.isfinite(arg) \
                    else 1000.0 + arg
        elif kind == "table":
            assert isinstance(arg, dict)
            self.backend.table = {k: v for k, v in arg.items()
                                  if v is not None}
        elif kind == "invalidate":
            self.client.invalidate()
        elif kind == "fail":
            self.backend.error = RuntimeError("down") if arg else None

    def settle(self) -> None:
        """Let a refresh ahead started by the last call end."""
        ahead = self.client._ahead
        if ahead is not None:
            ahead.join(10)


@settings(max_examples=200, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(_step, max_size=25), st.sampled_from([0.0, 15.0]),
       st.sampled_from(["levels_in_order", "trust_in_order"]),
       st.booleans())
def test_the_warm_pass_answers_as_the_general_path(steps, refresh_ahead,
                                                   method, native):
    """Both in-order methods (reports, or levels alone), with a backend
    that answers with reports or natively with an :class:`Answer`."""
    fast, slow = _Client(refresh_ahead, native), _Client(refresh_ahead)
    #: name -> (arrival, level) of the latest answer the backend gave
    latest: dict[str, tuple[float, TrustLevel | None]] = {}
    for kind, arg in steps:
        fast.apply(kind, arg)
        slow.apply(kind, arg)
        if kind == "invalidate":
            latest.clear()
        if kind != "ask":
            continue
        calls = len(fast.backend.calls)
        found = getattr(fast.client, method)(arg)
        got = [r if r is None or isinstance(r, TrustLevel) else r.level
               for r in found]
        fast.settle()
        general = slow.client.levels(n for n in arg
                                     if isinstance(n, str) and n)
        slow.settle()
        want = [general.get(n) if isinstance(n, str) and n else None
                for n in arg]
        assert got == [r and r.level for r in want], arg
        assert fast.backend.calls == slow.backend.calls
        fetched = set()
        if fast.backend.error is None:
            for call in fast.backend.calls[calls:]:
                for name in call:
                    latest[name] = (fast.clock.now,
                                    fast.backend.table.get(name))
                    fetched.add(name)
        for name, level in zip(arg, got, strict=True):
            if level is not T or name in fetched:
                continue
            arrived, level = latest[name]
            assert level is T and fast.clock.now < arrived + TTL, (
                name, latest[name], fast.clock.now)


class _Switching(ScriptedBackend):
    """Every host at :attr:`level`, each answer a little slow. Once
    :attr:`armed`, the next call reads its level, then waits at
    :attr:`gate`: an answer that says trusted is in flight while the test
    switches."""

    level = T

    def __init__(self) -> None:
        super().__init__({})
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def attest(self, hostnames):
        level = self.level
        if self.armed.is_set() and not self.entered.is_set():
            self.entered.set()
            self.gate.wait(10)
        time.sleep(0.002)
        return {n: HostReport(n, level, self.name, "switching")
                for n in hostnames}


def test_no_trusted_warm_pass_after_an_invalidate_with_real_threads():
    """Four threads ask the warm way while answers arrive, are refreshed
    ahead and expire (real clock); with a trusted answer in flight, the
    service turns every host untrusted and the cache is invalidated: no
    call that started after that may find a host trusted."""
    backend = _Switching()
    client = AttestationClient(backend, ttl=0.3, refresh_ahead=0.1)
    names = [f"node-{i}" for i in range(200)]
    switched: list[float] = []
    late_trust: list[float] = []
    done = threading.Event()

    def ask() -> None:
        while not done.is_set():
            started = time.monotonic()
            found = client.levels_in_order(names)
            if switched and started > switched[0] and any(
                    r is not None and r.level is T for r in found):
                late_trust.append(started - switched[0])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        backend.armed.set()
        assert backend.entered.wait(10)
        backend.level = U
        client.invalidate()
        switched.append(time.monotonic())
        backend.gate.set()
        time.sleep(0.5)
    finally:
        backend.gate.set()
        done.set()
        for thread in threads:
            thread.join(10)
        client.close()
    assert not late_trust
