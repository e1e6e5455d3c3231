"""Property-based proof of the fail-closed rule (hypothesis).

Random sequences of attestation answers, faults, clock advances and
scheduling requests go through TrustedFilter and the real client, with a
scripted backend and a hand-moved clock. Two checks after every request:

* safety (the promise to operators): a host passes a ``trusted`` request
  only if its most recent *successful* answer, received within the TTL,
  said ``trusted`` — whatever faults happened;
* exactness: the passing set is exactly what a small model of the cache,
  the failure memory and the exact-match rule predicts, so the filter
  cannot satisfy safety by rejecting everything.

``tox -e property`` runs the thorough profile (10,000 examples); the
default run uses a smaller one.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from nova import objects
from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool.attestation import (
    AttestationBackend,
    AttestationClient,
    AttestationError,
    HostReport,
    TrustLevel,
)
from trustpool.filter import TrustedFilter

from tests.support.clock import Clock

objects.register_all()

HOSTS = ["h0", "h1", "h2", "h3", "h4"]
LEVELS = ["trusted", "untrusted", "unknown"]
TTL = 9.5             # clock moves in whole seconds: never on a boundary
RETRY = 2.5
FAULTS = ["error", "crash", "spoof", "conflict"]

settings.register_profile(
    "default", max_examples=300, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", max_examples=10_000, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("TRUSTPOOL_HYPOTHESIS_PROFILE",
                                     "default"))


class Backend(AttestationBackend):
    """Answers from ``table`` or misbehaves as ``fault`` says; records
    every answer the client could have accepted."""

    name = "prop"

    def __init__(self, clock: Clock) -> None:
        super().__init__(None)
        self.clock = clock
        self.table: dict[str, str] = {}
        self.fault: str | None = None
        self.successes: dict[str, tuple[float, str]] = {}
        self.calls = 0

    def attest(self, hostnames):
        self.calls += 1
        if self.fault == "error":
            raise AttestationError("scripted failure")
        if self.fault == "crash":
            raise RuntimeError("plugin bug")
        answer = {n: HostReport(n, TrustLevel(self.table[n]), self.name, "t")
                  for n in hostnames if n in self.table}
        if self.fault == "spoof":
            answer["intruder"] = HostReport("intruder", TrustLevel.TRUSTED,
                                            self.name, "spoof")
            return answer
        if self.fault == "conflict" and len(hostnames) > 1:
            # h0's slot carries h1's report: one host's answer standing in
            # for another's
            answer[hostnames[0]] = HostReport(
                hostnames[1], TrustLevel.TRUSTED, self.name, "not h0's")
            return answer
        for n in hostnames:
            self.successes[n] = (self.clock.now,
                                 self.table.get(n, "unknown"))
        return answer


def request_spec(wanted: str | None) -> objects.RequestSpec:
    extra = {} if wanted is None else {"trust:trusted_host": wanted}
    return objects.RequestSpec(flavor=objects.Flavor(extra_specs=extra))


class Host:
    def __init__(self, name: str) -> None:
        self.nodename = name
        self.host = f"svc-{name}"

    def __repr__(self) -> str:
        return self.nodename


class FailClosed(RuleBasedStateMachine):

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(0.0)
        self.backend = Backend(self.clock)
        client = AttestationClient(self.backend, ttl=TTL,
                                   failure_retry_interval=RETRY,
                                   clock=self.clock)
        conf = cfg.ConfigOpts()
        tp_conf.register_opts(conf)
        conf([], default_config_files=[])
        self.filter = TrustedFilter(conf, client=client)
        # the model
        self.cache: dict[str, tuple[float, str]] = {}
        self.failure_until = -1.0
        self.requests = 0

    @rule(host=st.sampled_from(HOSTS),
          level=st.sampled_from([*LEVELS, None]))
    def server_says(self, host, level):
        if level is None:
            self.backend.table.pop(host, None)
        else:
            self.backend.table[host] = level

    @rule(fault=st.sampled_from([None, None, *FAULTS]))
    def server_fault(self, fault):
        self.backend.fault = fault

    # around the TTL (9.5 s) and the retry interval (2.5 s) on purpose
    @rule(seconds=st.sampled_from([0, 1, 2, 3, 4, 7, 9, 10, 11, 12, 13, 20]))
    def time_passes(self, seconds):
        self.clock.now += seconds

    @rule(wanted=st.sampled_from([*LEVELS, "trusted", "bogus", None]),
          names=st.lists(st.sampled_from(HOSTS), min_size=1, unique=True))
    def schedule(self, wanted, names):
        self.requests += 1
        hosts = [Host(n) for n in names]
        calls_before = self.backend.calls
        passed = {h.nodename for h in
                  self.filter.filter_all(hosts, request_spec(wanted))}
        expected = self.model(wanted, names,
                              self.backend.calls > calls_before)
        assert passed == expected, (wanted, names, passed, expected)
        if wanted == "trusted":
            for name in passed:
                arrival, level = self.backend.successes[name]
                assert self.clock.now - arrival < TTL
                assert level == "trusted"

    def model(self, wanted, names, backend_called) -> set[str]:
        if wanted is None:
            return set(names)
        if wanted not in LEVELS:
            return set()
        now = self.clock.now
        levels = {}
        missing = []
        for name in names:
            entry = self.cache.get(name)
            if entry is not None and now - entry[0] < TTL:
                levels[name] = entry[1]
            else:
                missing.append(name)
        if missing:
            if now < self.failure_until:
                assert not backend_called, "asked during the failure window"
                levels.update({n: "unknown" for n in missing})
            else:
                assert backend_called, "no request for stale hosts"
                if self.backend.fault is not None and not (
                        self.backend.fault == "conflict"
                        and len(missing) == 1):
                    self.failure_until = now + RETRY
                    levels.update({n: "unknown" for n in missing})
                else:
                    for n in missing:
                        level = self.backend.table.get(n, "unknown")
                        self.cache[n] = (now, level)
                        levels[n] = level
        else:
            assert not backend_called, "asked although all were fresh"
        return {n for n, level in levels.items() if level == wanted}

    @invariant()
    def no_request_without_need(self):
        assert self.backend.calls <= self.requests


TestFailClosed = FailClosed.TestCase
