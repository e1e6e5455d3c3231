# SPDX-License-Identifier: Apache-2.0
"""A backend that breaks the contract after the check, or with objects
that answer one way to the check and another to the cache, trusts no
host: the client checks a copy it owns, made of plain dictionaries, and
keeps and serves nothing else."""

from __future__ import annotations

import pytest

from trustpool.attestation import (
    Answer,
    AttestationBackend,
    AttestationClient,
    AttestationError,
    HostReport,
    TrustLevel,
)

from tests.support.clock import Clock

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN


class Keeper(AttestationBackend):
    """A native backend that keeps every Answer it returned and, when the
    client next calls into it (``describe``, the next chunk), rewrites
    them: the checked answer says ``untrusted``, the mutated one
    ``trusted`` (or a host nobody asked about, or a plain string)."""

    name = "keeper"
    answers_natively = True

    def __init__(self, spoil, max_batch=None):
        super().__init__(conf=None)
        self.max_batch = max_batch
        self.spoil = spoil
        self.returned: list[Answer] = []
        self.spoiled = False

    def attest(self, hostnames):
        raise AssertionError("a native backend is asked for an Answer")

    def attest_answer(self, hostnames):
        self._spoil_kept()
        answer = Answer.columns(list(hostnames), [U] * len(hostnames),
                                ["checked"] * len(hostnames),
                                [None] * len(hostnames), self.name)
        self.returned.append(answer)
        return answer

    def describe(self):
        self._spoil_kept()
        return "keeper"

    def _spoil_kept(self):
        for answer in self.returned:
            self.spoil(answer)
            self.spoiled = True


def _to_trusted(answer):
    for name in list(answer.levels):
        answer.levels[name] = T


def _look_alike(answer):
    for name in list(answer.levels):
        answer.levels[name] = "trusted"


def _stranger(answer):
    answer.levels["zz"] = T
    answer.reasons["zz"] = answer.vtimes["zz"] = None
    answer.backends["zz"] = "keeper"


@pytest.mark.parametrize("spoil", [_to_trusted, _look_alike, _stranger],
                         ids=["to-trusted", "a-string-level", "a-stranger"])
@pytest.mark.parametrize("max_batch", [None, 1], ids=["one", "chunked"])
def test_an_answer_mutated_after_the_check_changes_nothing(spoil, max_batch):
    backend = Keeper(spoil, max_batch)
    client = AttestationClient(backend, ttl=60, clock=Clock())
    first = client.trust_in_order(["a", "b"])
    assert backend.spoiled
    assert first == [U, U]
    # "zz", never asked about, is asked now, and answered untrusted
    for _ in range(2):  # the cold pass, then the warm one from the cache
        reports = client.levels(["a", "b", "zz"])
        assert {n: r.level for n, r in reports.items()} == {
            "a": U, "b": U, "zz": U}
        assert all(type(r.level) is TrustLevel for r in reports.values())
        assert client.trust_in_order(["a", "b", "zz"]) == [U, U, U]


class _LyingValues(dict):
    """A dict whose ``values()`` shows a check what it wants to see."""

    def values(self):
        return [U for _ in self]


class _Mapping:
    """Not a dict: ``keys``/``values``/``__getitem__`` tell two stories."""

    def __init__(self, names):
        self.names = list(names)

    def __iter__(self):
        return iter(self.names)

    def keys(self):
        return dict.fromkeys(self.names).keys()

    def values(self):
        return [U for _ in self.names]

    def __getitem__(self, name):
        return T

    def __len__(self):
        return len(self.names)


class _Native(AttestationBackend):
    name = "native"
    answers_natively = True

    def __init__(self, make_answer):
        super().__init__(conf=None)
        self.make_answer = make_answer

    def attest(self, hostnames):
        raise AssertionError("a native backend is asked for an Answer")

    def attest_answer(self, hostnames):
        return self.make_answer(list(hostnames))


def _with_levels(kind):
    def make(names):
        answer = Answer.columns(names, [T] * len(names), ["ok"] * len(names),
                                [None] * len(names), "native")
        answer.levels = kind(names) if kind is _Mapping else kind(
            answer.levels)
        return answer
    return make


class _Str(str):
    pass


def _str_subclass_name(names):
    return Answer.columns([_Str(n) for n in names], [T] * len(names),
                          ["ok"] * len(names), [None] * len(names), "native")


def _str_subclass_reason(names):
    return Answer.columns(names, [T] * len(names),
                          [_Str("ok") for _ in names], [None] * len(names),
                          "native")


@pytest.mark.parametrize("make_answer", [
    _with_levels(_LyingValues), _with_levels(_Mapping),
    _with_levels(type("PlainSubclass", (dict,), {})),
    _str_subclass_name, _str_subclass_reason,
], ids=["lying-values", "not-a-dict", "dict-subclass", "str-subclass-name",
        "str-subclass-reason"])
def test_a_native_answer_of_look_alike_containers_trusts_no_host(
        make_answer):
    client = AttestationClient(_Native(make_answer), ttl=60, clock=Clock())
    assert client.trust_in_order(["a", "b"]) == [K, K]
    reports = client.levels(["a", "b"])
    assert {r.level for r in reports.values()} == {K}
    assert "answered with" in reports["a"].reason


class _Shifty(dict):
    """A reports dict whose second reading of ``values()`` gives each
    host the next host's report: the check reads it once, whatever
    converts it would read it again."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = 0

    def values(self):
        self.read += 1
        values = list(super().values())
        return values if self.read == 1 else values[1:] + values[:1]


class _Reporting(AttestationBackend):
    name = "reporting"

    def __init__(self, make_reports):
        super().__init__(conf=None)
        self.make_reports = make_reports

    def attest(self, hostnames):
        return self.make_reports()


@pytest.mark.parametrize("make_reports", [
    lambda: _Shifty({"a": HostReport("a", U, "reporting", "no"),
                     "b": HostReport("b", T, "reporting", "yes")}),
    lambda: type("Sub", (dict,), {})(
        a=HostReport("a", T, "reporting", "yes")),
    lambda: {"a": HostReport("a", T, None, "yes")},
    lambda: {"a": HostReport("a", T, "reporting", "yes", 12)},
    lambda: {_Str("a"): HostReport(_Str("a"), T, "reporting", "yes")},
    lambda: {"a": HostReport("a", T, "reporting", _Str("yes"))},
], ids=["shifting-values", "dict-subclass", "backend-not-a-string",
        "vtime-not-a-string", "str-subclass-name", "str-subclass-reason"])
def test_reports_of_look_alike_containers_trust_no_host(make_reports):
    client = AttestationClient(_Reporting(make_reports), ttl=60,
                               clock=Clock())
    reports = client.levels(["a", "b"])
    assert {n: r.level for n, r in reports.items()} == {"a": K, "b": K}
    assert client.trust_in_order(["a", "b"]) == [K, K]


def test_a_stranger_named_after_the_secret_shows_none_of_it():
    """The name of a host nobody asked about is masked before it is cut
    for the message: cut first, a secret's first characters would show
    and no longer be recognised as the secret."""
    secret = "s3cr3t-blob-0123456789abcdef"
    name = "x" * 70 + secret
    backend = _Reporting(lambda: {name: HostReport(name, T, "reporting",
                                                   "yes")})
    backend.secrets = (secret,)
    client = AttestationClient(backend, ttl=60, clock=Clock())
    reason = client.level("a").reason
    assert "not asked about" in reason
    assert secret[:6] not in reason


class _Slow(AttestationBackend):
    """Answers every host ``trusted``, ``takes`` seconds of the clock a
    call, one host a call."""

    name = "slow"
    max_batch = 1

    def __init__(self, clock, takes):
        super().__init__(conf=None)
        self.clock = clock
        self.takes = takes
        self.down = False

    def attest(self, hostnames):
        if self.down:
            raise AttestationError("the service is down", "connect")
        self.clock.advance(self.takes)
        return {n: HostReport(n, T, self.name, "ok") for n in hostnames}


def test_a_chunked_answer_expires_a_ttl_after_its_first_part_arrived():
    """One deadline for the whole answer, from its first chunk's arrival:
    the answer for ``a`` is never served longer than the TTL after it
    arrived, however long the chunks after it take."""
    clock = Clock()
    backend = _Slow(clock, 30)
    client = AttestationClient(backend, ttl=60, clock=clock)
    start = clock.now
    assert client.trust_in_order(["a", "b", "c"]) == [T, T, T]
    assert clock.now == start + 90  # "a" arrived at start + 30
    clock.now = start + 30 + 60 - 0.5
    assert client.stats.backend_calls == 3
    assert client.trust_in_order(["a"]) == [T]  # still fresh, from cache
    assert client.stats.backend_calls == 3
    backend.down = True
    clock.now = start + 30 + 60 + 0.5
    assert client.trust_in_order(["a"]) == [K]


class _Unreadable:
    """A sequence of names that cannot be read."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        raise ValueError("names broke")

    def __iter__(self):
        raise ValueError("names broke")


class _Touchy(str):
    """A name whose own methods raise."""

    def __len__(self):
        raise ValueError("len broke")

    def __bool__(self):
        raise ValueError("bool broke")


class _Trusting(AttestationBackend):
    name = "trusting"

    def __init__(self):
        super().__init__(conf=None)
        self.asked: list[list[str]] = []

    def attest(self, hostnames):
        self.asked.append(list(hostnames))
        return {n: HostReport(n, T, self.name, "ok") for n in hostnames}


@pytest.mark.parametrize("hostnames", [_Unreadable(), None, 5],
                         ids=["unreadable", "None", "an-int"])
def test_names_that_cannot_be_read_raise_nothing(hostnames):
    client = AttestationClient(_Trusting(), ttl=60, clock=Clock())
    assert client.trust_in_order(hostnames) == []
    assert client.levels_in_order(hostnames) == []


def test_an_iterator_of_names_is_read_once_and_an_odd_entry_is_none():
    client = AttestationClient(_Trusting(), ttl=60, clock=Clock())
    assert client.trust_in_order(iter([["unhashable"], "a"])) == [None, T]
    assert [r and r.level for r in client.levels_in_order(
        iter([["unhashable"], "b"]))] == [None, T]


def test_a_name_whose_methods_raise_is_asked_about_as_its_string():
    backend = _Trusting()
    client = AttestationClient(backend, ttl=60, clock=Clock())
    assert client.trust_in_order([_Touchy("a"), None, "b"]) == [T, None, T]
    assert [r and r.level for r in client.levels_in_order(
        [_Touchy("c"), ""])] == [T, None]
    assert all(type(n) is str for names in backend.asked for n in names)


def test_a_str_subclass_name_is_answered_as_its_plain_string():
    backend = _Trusting()
    client = AttestationClient(backend, ttl=60, clock=Clock())
    assert client.levels([_Str("a"), "a"])["a"].level is T
    assert client.attest_uncached([_Str("b")])["b"].level is T
    assert backend.asked == [["a"], ["b"]]
    assert all(type(n) is str for names in backend.asked for n in names)


class _Reordering(list):
    """A list of names that reads backwards after its first reading."""

    def __init__(self, names):
        super().__init__(names)
        self.readings = 0

    def __iter__(self):
        self.readings += 1
        names = list(list.__iter__(self))
        return iter(names if self.readings == 1 else names[::-1])


def test_the_levels_are_in_the_order_of_one_reading_of_the_names():
    backend = _Reporting(lambda: {
        "a": HostReport("a", T, "reporting", "ok"),
        "b": HostReport("b", U, "reporting", "no")})
    client = AttestationClient(backend, ttl=60, clock=Clock())
    assert client.trust_in_order(["a", "b"]) == [T, U]  # now cached
    assert client.trust_in_order(_Reordering(["a", "b"])) == [T, U]


@pytest.mark.parametrize("back_to", [1030.0, float("-inf")])
def test_a_clock_that_goes_back_never_serves_an_answer_longer(back_to):
    """A clock that goes back (a caller's own, or -inf) does not make an
    expired answer fresh again: the client never reads its clock earlier
    than it already did."""
    clock = Clock(1000.0)
    backend = _Slow(clock, 0)
    backend.max_batch = None
    client = AttestationClient(backend, ttl=60, clock=clock)
    assert client.trust_in_order(["a"]) == [T]      # until 1060
    backend.down = True
    clock.now = 1059.5
    assert client.trust_in_order(["a"]) == [T]
    clock.now = 1060.5
    assert client.trust_in_order(["a"]) == [K]
    clock.now = back_to
    assert client.trust_in_order(["a"]) == [K]
    assert client.levels(["a"])["a"].level is K
