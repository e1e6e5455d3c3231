# SPDX-License-Identifier: Apache-2.0
"""The PollHosts reader's loops in C read every answer exactly as the
entry-by-entry loop does, or leave it to that loop (which refuses what
must be refused, naming the entry)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trustpool.attestation.backends.oat import (
    _parse_common,
    _parse_entry_by_entry,
    parse_poll_hosts,
)
from trustpool.attestation.model import TrustLevel
from trustpool.exceptions import AttestationError

ASKED = ["a", "b", "c", "d"]

names = st.one_of(st.sampled_from(ASKED), st.sampled_from(["", "zz", "A"]),
                  st.none(), st.integers(0, 3), st.lists(st.just("a")))
words = st.one_of(st.sampled_from(["trusted", "untrusted", "unknown",
                                   "timeout", "pending"]),
                  st.sampled_from([" Trusted", "TRUSTED", "trusted\t",
                                   "bogus", ""]),
                  st.none(), st.integers(), st.lists(st.just("trusted")))
vtimes = st.one_of(st.none(), st.just(""), st.just("2026-12-02T00:00:00Z"),
                   st.integers(), st.lists(st.just("x")))


@st.composite
def entries(draw):
    entry = {}
    for key, values in (("host_name", names), ("trust_lvl", words),
                        ("vtime", vtimes)):
        if draw(st.integers(0, 9)):  # mostly present
            entry[key] = draw(values)
    return entry if draw(st.integers(0, 19)) else draw(
        st.sampled_from([[], "x", None]))


@settings(max_examples=500, deadline=None)
@given(st.lists(entries(), max_size=6))
def test_the_fast_reader_agrees_with_the_loop(answer):
    try:
        expected = _parse_entry_by_entry(answer, set(ASKED), "oat")
    except AttestationError:
        expected = None
    fast = _parse_common(answer, set(ASKED), "oat")
    if expected is None:
        assert fast is None  # refused: the loop names the entry
    elif fast is not None:
        assert fast.reports() == expected
        assert list(fast.reports()) == list(expected)
    whole = None
    try:
        whole = parse_poll_hosts({"hosts": answer}, ASKED, "oat")
    except AttestationError:
        assert expected is None
    else:
        assert whole == expected


def test_the_common_answer_is_read_in_c():
    answer = [{"host_name": "a", "trust_lvl": "trusted", "vtime": "t"},
              {"host_name": "b", "trust_lvl": "timeout"},
              {"host_name": "c", "trust_lvl": "untrusted", "vtime": ""}]
    fast = _parse_common(answer, set(ASKED), "oat")
    assert fast is not None
    assert [(r.hostname, r.level, r.vtime_text)
            for r in fast.reports().values()] == [
        ("a", TrustLevel.TRUSTED, "t"), ("b", TrustLevel.UNKNOWN, None),
        ("c", TrustLevel.UNTRUSTED, None)]
    # a name twice, a stranger, an odd spelling: the loop decides
    assert _parse_common(answer + answer[:1], set(ASKED), "oat") is None
    assert _parse_common([{"host_name": "zz", "trust_lvl": "trusted"}],
                         set(ASKED), "oat") is None
    assert _parse_common([{"host_name": "a", "trust_lvl": "Trusted"}],
                         set(ASKED), "oat") is None
