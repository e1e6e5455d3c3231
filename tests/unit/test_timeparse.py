"""Verification times in every form attestation servers send."""

from __future__ import annotations

import datetime

import pytest

from trustpool.attestation.timeparse import parse_vtime

UTC = datetime.timezone.utc


@pytest.mark.parametrize(("text", "expected"), [
    ("2016-01-14T12:20:50.679+0000",
     datetime.datetime(2016, 1, 14, 12, 20, 50, 679000, UTC)),
    ("2016-01-14T12:20:50Z", datetime.datetime(2016, 1, 14, 12, 20, 50,
                                               tzinfo=UTC)),
    ("2016-01-14T12:20:50", datetime.datetime(2016, 1, 14, 12, 20, 50,
                                              tzinfo=UTC)),
    ("2016-01-14 12:20:50.1234567Z",
     datetime.datetime(2016, 1, 14, 12, 20, 50, 123456, UTC)),
    ("2016-01-14T14:20:50+02:00",
     datetime.datetime(2016, 1, 14, 12, 20, 50, tzinfo=UTC)),
    ("2016-01-14T07:20:50-0500",
     datetime.datetime(2016, 1, 14, 12, 20, 50, tzinfo=UTC)),
    ("Tue Feb 14 09:02:48 2012",
     datetime.datetime(2012, 2, 14, 9, 2, 48, tzinfo=UTC)),
    ("Thu Mar  1 09:02:48 2012",
     datetime.datetime(2012, 3, 1, 9, 2, 48, tzinfo=UTC)),
    ("  2016-01-14T12:20:50Z ", datetime.datetime(2016, 1, 14, 12, 20, 50,
                                                  tzinfo=UTC)),
])
def test_known_forms(text, expected):
    parsed = parse_vtime(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize("text", [
    "", "yesterday", "2016-13-14T12:20:50Z", "2016-01-14T25:20:50Z",
    "Tue Foo 14 09:02:48 2012", "Xyz Feb 14 09:02:48 2012",
    "2016-01-14T12:20:50+2400", "1452774050", "2016-01-14",
])
def test_garbage_is_refused(text):
    with pytest.raises(ValueError):
        parse_vtime(text)


@pytest.mark.parametrize("value", [None, 1452774050, ["2016"], {}])
def test_non_strings_are_refused(value):
    with pytest.raises(ValueError):
        parse_vtime(value)


@pytest.mark.parametrize("text", [
    "2016-01-14T12:20:50.679+0000", "2016-01-14T12:20:50Z",
    "2016-01-14 12:20:50.1234567Z", "2016-01-14T14:20:50+02:00",
    "2016-01-14T07:20:50-0500", "2016-01-14T12:20:50",
])
def test_the_python_3_10_path_agrees(text):
    # Python 3.10's fromisoformat reads none of these offsets, so there the
    # hand-written path does the work; it must agree with the fast one.
    from trustpool.attestation import timeparse
    match = timeparse._ISO.fullmatch(text)
    assert timeparse._from_iso(match) == parse_vtime(text)
