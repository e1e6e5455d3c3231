"""PollHosts answers: every accepted form, and every refusal."""

from __future__ import annotations

import datetime

import pytest

from trustpool.attestation import AttestationError, TrustLevel
from trustpool.attestation.backends.oat import parse_poll_hosts

ASKED = ["node1", "node2", "node3"]


def entry(name, level, vtime="2016-01-14T12:20:50.679+0000"):
    return {"host_name": name, "trust_lvl": level, "vtime": vtime}


@pytest.mark.parametrize(("raw", "level"), [
    ("trusted", TrustLevel.TRUSTED),
    ("TRUSTED", TrustLevel.TRUSTED),
    ("Trusted", TrustLevel.TRUSTED),
    ("untrusted", TrustLevel.UNTRUSTED),
    ("UnTrusted", TrustLevel.UNTRUSTED),
    ("unknown", TrustLevel.UNKNOWN),
    ("timeout", TrustLevel.UNKNOWN),
    ("PENDING", TrustLevel.UNKNOWN),
    ("maybe", TrustLevel.UNKNOWN),
    ("", TrustLevel.UNKNOWN),
])
def test_levels_any_case(raw, level):
    reports = parse_poll_hosts({"hosts": [entry("node1", raw)]}, ASKED)
    assert reports["node1"].level is level
    assert reports["node1"].hostname == "node1"
    assert reports["node1"].backend == "oat"


def test_unrecognised_level_says_why():
    report = parse_poll_hosts({"hosts": [entry("node1", "maybe")]},
                              ASKED)["node1"]
    assert "unrecognised trust level 'maybe'" in report.reason


def test_timeout_and_pending_name_the_server_word():
    reports = parse_poll_hosts({"hosts": [entry("node1", "timeout"),
                                          entry("node2", "pending")]}, ASKED)
    assert "'timeout'" in reports["node1"].reason
    assert "'pending'" in reports["node2"].reason


@pytest.mark.parametrize("vtime", [
    "2016-01-14T12:20:50.679+0000",      # OAT >= 1.5 / 2.x
    "2016-01-14T12:20:50Z",
    "2016-01-14T13:20:50+01:00",
    "Thu Jan 14 12:20:50 2016",          # Mt. Wilson's %c
])
def test_vtime_forms(vtime):
    report = parse_poll_hosts({"hosts": [entry("node1", "trusted", vtime)]},
                              ASKED)["node1"]
    assert report.level is TrustLevel.TRUSTED
    assert report.vtime.replace(microsecond=0) == datetime.datetime(
        2016, 1, 14, 12, 20, 50, tzinfo=datetime.timezone.utc)


def test_missing_vtime_is_allowed():
    report = parse_poll_hosts(
        {"hosts": [{"host_name": "node1", "trust_lvl": "trusted"}]},
        ASKED)["node1"]
    assert report.level is TrustLevel.TRUSTED
    assert report.vtime is None


def test_unusable_vtime_is_kept_as_sent():
    # only the optional age check acts on vtime (tests/unit/test_client.py)
    report = parse_poll_hosts(
        {"hosts": [entry("node1", "trusted", "last tuesday")]},
        ASKED)["node1"]
    assert report.level is TrustLevel.TRUSTED
    assert report.vtime_text == "last tuesday"
    assert report.vtime is None


def test_hosts_not_mentioned_are_left_out():
    reports = parse_poll_hosts({"hosts": [entry("node2", "trusted")]}, ASKED)
    assert set(reports) == {"node2"}


def test_same_host_twice_is_refused_even_with_the_same_level():
    # found by the fuzz tier: a server that repeats an entry has its
    # protocol wrong, and no entry of its answer proves anything
    with pytest.raises(AttestationError, match="twice"):
        parse_poll_hosts({"hosts": [entry("node1", "trusted"),
                                    entry("node1", "Trusted")]}, ASKED)


@pytest.mark.parametrize("level", ["\u2003trusted", "trusted\u00a0",
                                   "TRUSTED\u200b", "\u0074rusted\x00"])
def test_look_alike_levels_are_not_trusted(level):
    reports = parse_poll_hosts({"hosts": [entry("node1", level)]}, ASKED)
    assert reports["node1"].level is TrustLevel.UNKNOWN


@pytest.mark.parametrize(("data", "needle"), [
    (None, "'hosts' list"),
    ([], "'hosts' list"),
    ({}, "'hosts' list"),
    ({"hosts": {"node1": "trusted"}}, "'hosts' list"),
    ({"hosts": ["node1"]}, "hosts[0] is not an object"),
    ({"hosts": [{"host_name": "node1"}]}, "trust_lvl"),
    ({"hosts": [{"host_name": "node1", "trust_lvl": 1}]}, "trust_lvl"),
    ({"hosts": [{"host_name": 7, "trust_lvl": "trusted"}]}, "host_name"),
    ({"hosts": [{"host_name": "", "trust_lvl": "trusted"}]}, "host_name"),
    ({"hosts": [entry("evil", "trusted")]}, "not asked about: 'evil'"),
    ({"hosts": [entry("node1", "trusted"), entry("node1", "untrusted")]},
     "twice"),
])
def test_doubtful_answers_are_refused(data, needle):
    with pytest.raises(AttestationError) as err:
        parse_poll_hosts(data, ASKED)
    assert needle in str(err.value)


def test_one_spoofed_name_spoils_the_whole_answer():
    data = {"hosts": [entry("node1", "trusted")] +
            [entry(f"x{i}", "trusted") for i in range(9)]}
    with pytest.raises(AttestationError) as err:
        parse_poll_hosts(data, ASKED)
    assert "and 4 more" in str(err.value)
