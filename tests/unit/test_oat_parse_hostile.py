# SPDX-License-Identifier: Apache-2.0
"""The PollHosts reader is public: given Python objects rather than
JSON's (a list or dict subclass, a ``str`` subclass for a name, a level
or a time), it reads one snapshot of the answer, the same one for its
loops in C and for the entry-by-entry loop, and takes nothing but plain
strings as names and levels; a look-alike makes no host trusted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustpool.attestation.backends.oat import (
    _parse_common,
    _parse_entry_by_entry,
    parse_poll_answer,
    parse_poll_hosts,
)
from trustpool.attestation.model import TrustLevel
from trustpool.exceptions import AttestationError

ASKED = ["a", "b", "c"]
T = TrustLevel.TRUSTED


class Flipping(list):
    """A hosts list that shows its first reading to the first reader and
    ``later`` to every reader after it."""

    def __init__(self, first, later):
        super().__init__(first)
        self.later = later
        self.readings = 0

    def __iter__(self):
        self.readings += 1
        return iter(list.__iter__(self) if self.readings == 1
                    else self.later)


class TwoFaced(dict):
    """An answer whose ``get`` and ``[]`` give different host lists."""

    def __init__(self, by_get, by_item):
        super().__init__(hosts=by_get)
        self.by_item = by_item

    def __getitem__(self, key):
        return self.by_item


class Alias(str):
    """Equal to every string, with the hash of ``a``: a stranger that
    passes for host ``a``."""

    def __hash__(self):
        return hash("a")

    def __eq__(self, other):
        return True


class Proud(str):
    """A level word that folds to ``trusted`` whatever it spells."""

    def strip(self, chars=None):
        return "trusted"

    def lower(self):
        return "trusted"


def _untrusted(name="a"):
    return {"host_name": name, "trust_lvl": "untrusted"}


def _trusted(name="a"):
    return {"host_name": name, "trust_lvl": "trusted"}


def _trusted_levels(data):
    try:
        reports = parse_poll_hosts(data, ASKED, "oat")
    except AttestationError:
        return set()
    return {n for n, r in reports.items() if r.level is T}


def test_a_hosts_list_is_read_once():
    hosts = Flipping([_untrusted()], [_trusted()])
    assert parse_poll_hosts({"hosts": hosts}, ASKED)["a"].level is \
        TrustLevel.UNTRUSTED


def test_the_hosts_are_read_from_one_look_up():
    data = TwoFaced([_untrusted()], [_trusted()])
    assert parse_poll_hosts(data, ASKED)["a"].level is TrustLevel.UNTRUSTED


@pytest.mark.parametrize("entry", [
    {"host_name": Alias("zz"), "trust_lvl": "trusted"},
    {"host_name": "a", "trust_lvl": Proud("bogus")},
    {"host_name": "a", "trust_lvl": Proud("untrusted")},
], ids=["a-name-passing-for-another", "a-proud-level", "a-proud-untrusted"])
def test_look_alike_strings_make_no_host_trusted(entry):
    assert _trusted_levels({"hosts": [entry]}) == set()
    assert _trusted_levels({"hosts": [entry, _untrusted("b")]}) == set()


def test_a_time_that_is_a_string_subclass_is_no_time():
    entry = {"host_name": "a", "trust_lvl": "trusted",
             "vtime": type("Stamp", (str,), {})("2026-12-02T00:00:00Z")}
    answer = parse_poll_answer({"hosts": [entry]}, ASKED)
    assert answer.vtimes == {"a": None}
    entry["trust_lvl"] = "Trusted"  # the loop's other branch
    answer = parse_poll_answer({"hosts": [entry]}, ASKED)
    assert answer.vtimes == {"a": None}


class Picky(dict):
    """An entry whose ``get`` is its own (the loop calls it once a key)."""

    def get(self, key, default=None):
        return super().get(key, default)


names = st.one_of(st.sampled_from(ASKED), st.just("zz"),
                  st.builds(Alias, st.sampled_from(["zz", "a"])),
                  st.builds(type("Name", (str,), {}), st.sampled_from(ASKED)))
words = st.one_of(st.sampled_from(["trusted", "untrusted", "Trusted ",
                                   "pending"]),
                  st.builds(Proud, st.sampled_from(["bogus", "untrusted"])))
vtimes = st.one_of(st.none(), st.just("2026-12-02T00:00:00Z"),
                   st.builds(type("Stamp", (str,), {}), st.just("t")))


@st.composite
def entries(draw):
    entry = {"host_name": draw(names), "trust_lvl": draw(words)}
    if draw(st.booleans()):
        entry["vtime"] = draw(vtimes)
    return Picky(entry) if draw(st.integers(0, 4)) == 0 else entry


def _plain_trusted(entry, name):
    """Whether ``entry``, read as plain data, says ``name`` is trusted."""
    found = dict.get(entry, "host_name")
    word = dict.get(entry, "trust_lvl")
    return (type(found) is str and found == name and type(word) is str
            and word.strip(" \t").lower() == "trusted")


@settings(max_examples=400, deadline=None)
@given(st.lists(entries(), max_size=5), st.booleans())
def test_no_look_alike_is_read_as_trusted(hosts, flip):
    answer = Flipping(hosts, [_trusted(n) for n in ASKED]) if flip else hosts
    try:
        reports = parse_poll_hosts({"hosts": answer}, ASKED, "oat")
    except AttestationError:
        return
    for name, report in reports.items():
        assert type(name) is str and type(report.hostname) is str
        assert type(report.vtime_text) in (str, type(None))
        if report.level is T:
            assert any(_plain_trusted(e, name) for e in hosts), (name, hosts)
    expected = _parse_entry_by_entry(list(hosts), set(ASKED), "oat")
    assert reports == expected
    fast = _parse_common(list(hosts), set(ASKED), "oat")
    assert fast is None or fast.reports() == expected
