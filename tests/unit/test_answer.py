# SPDX-License-Identifier: Apache-2.0
"""Answers as columns: the same reports as a report per host, and a
native backend's answer checked as a whole, every breach of the contract
making the hosts unknown with the breach named."""

from __future__ import annotations

import pytest

from trustpool.attestation import (
    Answer,
    AttestationBackend,
    AttestationClient,
    HostReport,
    TrustLevel,
)

from tests.support.clock import Clock

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN


def test_columns_give_back_the_reports_they_were_made_of():
    reports = {"a": HostReport("a", T, "x", "ok", "2026-12-02T00:00:00Z"),
               "b": HostReport("b", U, "y", "no")}
    answer = Answer.of_reports(reports)
    assert answer.reports() == reports
    assert answer.select(["b"]).reports() == {"b": reports["b"]}
    assert answer.reports_in_order(["b", None, "a", "z", "b"]) == [
        reports["b"], None, reports["a"], None, reports["b"]]
    answer.update(Answer.uniform(["b", "c"], K, "x", "down"))
    assert answer.reports()["b"] == HostReport("b", K, "x", "down")
    assert list(answer.levels) == ["a", "b", "c"]
    answer.set(HostReport("a", K, "x", "stale", "t"))
    assert answer.report("a") == HostReport("a", K, "x", "stale", "t")
    assert len(answer) == 3 and "c" in answer and "z" not in answer


class Native(AttestationBackend):
    """A backend that answers natively with whatever it is given."""

    name = "native"
    answers_natively = True

    def __init__(self, answer):
        super().__init__(conf=None)
        self.answer = answer

    def attest(self, hostnames):
        raise AssertionError("a native backend is asked for an Answer")

    def attest_answer(self, hostnames):
        return self.answer


class _Always(dict):
    """A column that says trusted whatever it holds."""

    def __getitem__(self, key):
        return T

    def get(self, key, default=None):
        return T


def _columns(**changes):
    answer = Answer.columns(["a", "b"], [T, T], ["ok", "ok"], [None, "t"],
                            "native")
    for column, value in changes.items():
        setattr(answer, column, value)
    return answer


@pytest.mark.parametrize(("answer", "named"), [
    ({"a": HostReport("a", T, "native", "ok")}, "not an Answer"),
    (_columns(levels={"a": T, "b": T, "zz": T}), "not asked about"),
    (_columns(reasons={"a": "ok"}), "do not hold the same hosts"),
    (_columns(vtimes={"b": "t", "a": None, "c": None}),
     "do not hold the same hosts"),
    (_columns(levels={"a": "trusted", "b": T}), "not a trust level"),
    (_columns(reasons={"a": "ok", "b": 1}), "reason or backend"),
    (_columns(backends={"a": "native", "b": None}), "reason or backend"),
    (_columns(vtimes={"a": 1.5, "b": None}), "neither a string"),
    (_columns(levels=_Always({"a": K, "b": K})), "not plain dictionaries"),
])
def test_a_native_answer_that_breaks_the_contract_trusts_no_host(
        answer, named):
    client = AttestationClient(Native(answer), ttl=60, clock=Clock())
    reports = client.levels(["a", "b"])
    assert {r.level for r in reports.values()} == {K}
    assert named in reports["a"].reason
    assert client.trust_in_order(["a", "b"]) == [K, K]


def test_a_native_answer_that_keeps_the_contract_is_used_and_cached():
    backend = Native(_columns())
    client = AttestationClient(backend, ttl=60, clock=Clock())
    assert client.trust_in_order(["a", "b", "c", None, ""]) == [
        T, T, K, None, None]
    backend.answer = None  # never asked again while the answer is fresh
    assert client.levels_in_order(["b"])[0] == HostReport(
        "b", T, "native", "ok", "t")
    assert client.stats.backend_calls == 1


class _TwoFaced(dict):
    """Reports that pass the first look and say trusted on the second."""

    def __init__(self, honest):
        super().__init__(honest)
        self.looks = 0

    def values(self):
        self.looks += 1
        if self.looks == 1:
            return super().values()
        return [r._replace(level=T) for r in super().values()]


class _Reporting(AttestationBackend):
    name = "reporting"

    def __init__(self, answer):
        super().__init__(conf=None)
        self.answer = answer

    def attest(self, hostnames):
        return self.answer


def test_reports_are_checked_and_used_from_one_snapshot():
    """A dict subclass whose values change between looks is refused (only
    a plain dict is copied without running the backend's code), and a
    plain dict is used as it was checked."""
    answer = _TwoFaced({"a": HostReport("a", U, "reporting", "no")})
    client = AttestationClient(_Reporting(answer), ttl=60, clock=Clock())
    assert client.trust_in_order(["a"]) == [K]
    assert "not a dict" in client.level("a").reason
    plain = AttestationClient(_Reporting(
        {"a": HostReport("a", U, "reporting", "no")}), ttl=60, clock=Clock())
    assert plain.trust_in_order(["a"]) == [U]
