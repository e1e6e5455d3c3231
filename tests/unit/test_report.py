"""``trustpool report`` and ``explain`` on logs written by the tests:
parsing, the window, rotated and corrupt .gz files, malformed lines,
escaping, the row caps, the exit codes."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import os
import subprocess
import sys
import threading

import pytest

from trustpool import decision_record, events
from trustpool.attestation import HostReport, TrustLevel
from trustpool.cmd import main as cli
from trustpool.report import aggregate, reader

from tests.unit.report_logs import (
    decision,
    quarantine,
    trust_lost,
    verdict,
    write,
)

HOSTILE = '<script>document.title="pwned"</script>'
HOSTILE_ATTR = '"><img src=x onerror=alert(1)>'


def run(capsys, *args):
    code = cli.main(["--config-file", "/dev/null", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def sample(tmp_path, name="audit.jsonl"):
    """Two placements, a refusal, a drift, a trust loss, a quarantine,
    one malformed line and one event of a future type."""
    return write(tmp_path / name, [
        decision(0, ["n1", "n2"], instance="a" * 8 + "-0000-0000-0000-"
                 + "0" * 12),
        decision(10, [verdict("n1", minutes=10),
                      verdict("n2", "untrusted", minutes=10)],
                 instance="b" * 8 + "-0000-0000-0000-" + "0" * 12),
        decision(20, [verdict("n1", "unknown", reason="cannot reach it"),
                      verdict("n2", "untrusted")]),
        "not json at all",
        '{"event": "trustpool.from_the_future", "time": "2026-11-01"}',
        trust_lost(25, "n2", instances=["b" * 8 + "-0000-0000-0000-"
                                        + "0" * 12]),
        quarantine(26, "n2"),
    ])


# -- the schema -------------------------------------------------------------

def test_the_decision_record_parses_as_the_schema_says(caplog):
    caplog.set_level(logging.INFO, logger=events.AUDIT_LOGGER)
    decision_record.emit(
        wanted="trusted", valid=True, hosts=[("n1", object()),
                                             (None, object())],
        reports={"n1": HostReport("n1", TrustLevel.TRUSTED, "oat", "ok",
                                  "2026-11-22T20:59:58+00:00")},
        passed=["n1"], server="oat https://x",
        request={"request_id": "req-1", "instance_uuid": "u1",
                 "project_id": "p", "flavor": "m1.trusted"})
    [record] = [r for r in caplog.records if r.name == events.AUDIT_LOGGER]
    event = events.parse_line("2026-11-22 21:00:00.1 42 INFO "
                              "trustpool.audit " + record.getMessage())
    assert isinstance(event, events.Decision)
    assert (event.instance_uuid, event.flavor, event.passed) == \
        ("u1", "m1.trusted", ("n1",))
    assert event.hosts[0].level == "trusted"
    assert event.hosts[0].server_time == "2026-11-22T20:59:58+00:00"
    assert event.hosts[1].host is None and event.hosts[1].passed is False


def test_trust_lost_and_quarantine_events_round_trip():
    lost = events.parse_line(trust_lost(1, "n9", instances=["i1", "i2"]))
    assert isinstance(lost, events.TrustLost)
    assert (lost.host, lost.agent_id, lost.event_id, lost.severity) == \
        ("n9", "agent-n9", "ev-1", "emergency")
    assert [i.instance for i in lost.instances] == ["i1", "i2"]
    assert lost.context == {"message": "PCR 15 changed"}
    q = events.parse_line(quarantine(2, "n9", "enable"))
    assert isinstance(q, events.Quarantine) and q.action == "enable"
    with pytest.raises(ValueError, match="action"):
        events.quarantine_event(host="n", action="reboot", trigger=None,
                                reason=None)


@pytest.mark.parametrize(("line", "why"), [
    ("plain text", "not JSON"),
    ("{broken", "not JSON"),
    ("[1, 2]", "not JSON"),  # the first { is missing: no object at all
    ('{"time": "2026-11-01"}', "no event type"),
    ('{"event": "trustpool.placement_decision", "time": "x", '
     '"wanted": "trusted", "hosts": [], "passed": []}', "no valid time"),
    ('{"event": "trustpool.placement_decision", "time": "2026-11-01", '
     '"wanted": "trusted", "hosts": {}, "passed": []}', "hosts is not"),
    ('{"event": "trustpool.placement_decision", "time": "2026-11-01", '
     '"wanted": "trusted", "hosts": [{"host": 5}], "passed": []}',
     "host is not a string"),
    ('{"event": "trustpool.placement_decision", "time": "2026-11-01", '
     '"wanted": "trusted", "hosts": [{"age_seconds": "old"}], '
     '"passed": []}', "age_seconds"),
    ('{"event": "trustpool.trust_lost", "time": "2026-11-01"}',
     "without host"),
    ('{"event": "trustpool.quarantine", "time": "2026-11-01", '
     '"host": "n", "action": "explode"}', "action"),
])
def test_malformed_events_say_why(line, why):
    with pytest.raises(events.MalformedEvent, match=why):
        events.parse_line(line)


def test_unknown_event_types_are_their_own_kind():
    event = events.parse_line('{"event": "x.new", "time": "2026-11-01Z"}')
    assert event == events.Unknown("x.new", events.parse_time(
        "2026-11-01T00:00:00+00:00"))


# -- the command ------------------------------------------------------------

def test_json_report_counts_everything(tmp_path, capsys):
    code, out, err = run(capsys, "report", str(sample(tmp_path)),
                         "--format", "json")
    assert code == 1, err  # a trust loss in the window
    report = json.loads(out)
    s = report["summary"]
    assert (s["placements"], s["refusals"], s["trust_lost"],
            s["instances_on_lost_hosts"], s["malformed_lines"],
            s["unknown_events"], s["hosts_seen"]) == (2, 1, 1, 1, 1, 1, 2)
    assert s["drift"] == {"untrusted": 1, "unknown": 1}
    assert s["quarantine"] == {"disable": 1, "enable": 0, "skipped": 0,
                               "failed": 0}
    kinds = [r["record"] for r in report["records"]]
    assert kinds == ["placement", "drift", "placement", "drift", "refusal",
                     "trust_lost", "quarantine"]
    first = report["records"][0]
    assert first["host"] is None and first["admitted_hosts"] == 2
    second = report["records"][2]
    assert (second["host"], second["level"], second["backend"],
            second["age_seconds"]) == ("n1", "trusted", "oat", 30.0)
    assert report["input"]["malformed_by_reason"] == {"not JSON": 1}
    assert report["input"]["unknown_by_type"] == {
        "trustpool.from_the_future": 1}
    timeline = report["timeline"]
    assert sum(b["placements"] for b in timeline) == 2
    assert sum(b["refusals"] for b in timeline) == 1
    assert "placements    2 " in err  # the summary, on stderr


def test_exit_0_without_trust_loss_and_the_summary_on_stdout(
        tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", [decision(0, ["n1"])])
    out_path = tmp_path / "r.csv"
    code, out, err = run(capsys, "report", str(log), "--format", "csv",
                         "--output", str(out_path))
    assert code == 0, err
    assert out.startswith("window") and "written       " + str(out_path) \
        in out
    rows = list(csv.DictReader(out_path.open()))
    assert [(r["record"], r["host"], r["level"]) for r in rows] == \
        [("placement", "n1", "trusted")]


def test_window_is_inclusive_exclusive_and_naive_means_utc(tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", [decision(m, ["n1"]) for m in
                                       (0, 5, 10, 15)])
    code, out, _ = run(capsys, "report", str(log), "--format", "json",
                       "--since", "2026-11-01T00:05", "--until",
                       "2026-11-01T00:15:00Z")
    assert code == 0
    report = json.loads(out)
    assert [r["time"][11:16] for r in report["records"]] == ["00:05",
                                                             "00:10"]
    assert report["summary"]["outside_window"] == 2


def test_empty_window_exits_2_saying_where_the_events_are(tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", [decision(0, ["n1"])])
    out_path = tmp_path / "r.html"
    code, out, err = run(capsys, "report", str(log), "--since", "2027-01-01",
                         "--output", str(out_path))
    assert code == 2
    assert "no events in the window 2027-01-01T00:00:00+00:00" in err
    assert "run from 2026-11-01T00:00:00+00:00" in err
    assert "nothing written" in err
    assert not out_path.exists() and out == ""
    assert list(tmp_path.iterdir()) == [log]  # no temporary file left


def test_a_log_without_events_exits_2(tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", ["junk", "", '{"event": "x.y"}'])
    code, out, err = run(capsys, "report", str(log))
    assert code == 2 and out == ""
    assert "no events in" in err and "1 malformed, 1 of unknown" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "last tuesday"], "--since: not an ISO 8601 time"),
    (["--since", "2026-11-02", "--until", "2026-11-01"],
     "--since must be before --until"),
])
def test_bad_times_exit_2(tmp_path, capsys, args, message):
    code, _, err = run(capsys, "report", str(sample(tmp_path)), *args)
    assert code == 2 and message in err


def test_unreadable_files_exit_2_naming_them(tmp_path, capsys):
    code, _, err = run(capsys, "report", str(tmp_path / "missing.jsonl"))
    assert code == 2
    assert f"cannot read {tmp_path / 'missing.jsonl'}: No such file" in err
    code, _, err = run(capsys, "report", str(tmp_path))
    assert code == 2 and "is a directory" in err.lower()
    locked = write(tmp_path / "locked.jsonl", [decision(0, ["n1"])])
    locked.chmod(0)
    try:
        readable = open(locked, "rb")  # root reads anything
        readable.close()
    except PermissionError:
        code, _, err = run(capsys, "report", str(locked))
        assert code == 2 and "Permission denied" in err
    finally:
        locked.chmod(0o644)


def test_rotated_gz_files_are_read_oldest_first(tmp_path, capsys):
    old = tmp_path / "audit.jsonl.2.gz"
    with gzip.open(old, "wt") as f:
        f.write(decision(0, ["n1"], request="req-old") + "\n")
    middle = tmp_path / "audit.jsonl.1.gz"
    with gzip.open(middle, "wt") as f:
        f.write(decision(5, ["n1"], request="req-middle") + "\n")
    current = write(tmp_path / "audit.jsonl", [
        decision(10, [verdict("n1", "untrusted")], request="req-new")])
    code, out, _ = run(capsys, "report", str(current), str(old),
                       str(middle), "--format", "json")
    report = json.loads(out)
    assert [r["request_id"] for r in report["records"]
            if r["record"] != "drift"] == ["req-old", "req-middle",
                                           "req-new"]
    assert report["sources"] == [str(old), str(middle), str(current)]
    # read in that order, the drift is seen: trusted, then untrusted
    assert report["summary"]["drift"]["untrusted"] == 1 and code == 1


def test_a_corrupt_gz_exits_2_and_writes_nothing(tmp_path, capsys):
    good = tmp_path / "audit.jsonl.1.gz"
    with gzip.open(good, "wt") as f:
        for minute in range(2000):
            f.write(decision(minute, ["n1", "n2", "n3"]) + "\n")
    cut = tmp_path / "audit.jsonl.2.gz"
    cut.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    out_path = tmp_path / "r.html"
    code, out, err = run(capsys, "report", str(cut), "-o", str(out_path))
    assert code == 2
    assert f"compressed file {cut} is corrupt or cut short" in err
    assert "after line" in err
    assert not out_path.exists()
    garbage = tmp_path / "audit.jsonl.3.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    code, _, err = run(capsys, "report", str(garbage))
    assert code == 2 and f"compressed file {garbage} is corrupt" in err


def test_standard_input_plain_and_compressed(tmp_path):
    text = (decision(0, ["n1"]) + "\n").encode()
    for data in (text, gzip.compress(text)):
        result = subprocess.run(
            [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
             "/dev/null", "report", "-", "--format", "json"],
            input=data, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["summary"]["placements"] == 1


def test_malformed_lines_are_counted_never_fatal(tmp_path, capsys):
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"\n".join([
        decision(0, ["n1"]).encode(), b'{"event": "\xff\xfe"}',
        b'{"event": "trustpool.placement_decision"}', b"{" * 100000,
        b"", decision(1, ["n1"]).encode()]) + b"\n")
    code, out, _ = run(capsys, "report", str(log), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["summary"]["placements"] == 2
    assert report["summary"]["malformed_lines"] == 3
    assert report["input"]["malformed_by_reason"] == {
        "not UTF-8": 1, "decision hosts is not a list": 1, "not JSON": 1}
    assert [e["line"] for e in report["input"]["malformed_examples"]] == \
        [2, 3, 4]


def test_an_overlong_line_is_skipped_not_held(tmp_path, monkeypatch,
                                              capsys):
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 1000)
    log = tmp_path / "a.jsonl"
    log.write_text(decision(0, ["n1"]) + "\n"
                   + decision(1, [f"host{i}" for i in range(50)]) + "\n"
                   + decision(2, ["n2"]) + "\n")
    code, out, _ = run(capsys, "report", str(log), "--format", "json")
    report = json.loads(out)
    assert report["summary"]["placements"] == 2
    assert report["input"]["malformed_by_reason"] == {"line too long": 1}


# -- the page ---------------------------------------------------------------

def hostile_log(tmp_path):
    return write(tmp_path / "hostile.jsonl", [
        decision(0, [verdict(HOSTILE), verdict(HOSTILE_ATTR, "untrusted",
                                               reason=HOSTILE)],
                 flavor=HOSTILE_ATTR, instance=HOSTILE, request=HOSTILE),
        decision(1, [verdict("n1", "unknown", reason=HOSTILE_ATTR)]),
        trust_lost(2, HOSTILE, instances=[HOSTILE], event_id=HOSTILE),
        json.dumps({"event": HOSTILE, "time": "2026-11-01"}),
    ])


def test_everything_from_the_log_is_escaped(tmp_path, capsys):
    code, page, _ = run(capsys, "report", str(hostile_log(tmp_path)))
    assert code == 1
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" \
        in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    # nothing to fetch: no source, link or stylesheet URL; and a policy
    # that forbids scripts and connections even if escaping failed
    for needle in ("src=\"", "href=", "url(", "@import", "http-equiv="
                   "\"refresh"):
        assert needle not in page
    assert "default-src 'none'" in page
    # the only URL is the SVG namespace name
    assert page.count("http:") + page.count("https:") == \
        page.count("http://www.w3.org/2000/svg") == 1


def test_csv_cells_cannot_become_formulas(tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", [
        decision(0, [verdict("=HYPERLINK(\"http://x\")", "untrusted",
                             reason="+cmd|calc")], flavor="@flavor")])
    code, out, _ = run(capsys, "report", str(log), "--format", "csv")
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["flavor"] == "'@flavor"
    assert row["reason"].startswith("1 x +cmd")  # not at the cell start
    assert all(not v.startswith(("=", "+", "@")) for v in row.values())


def test_rows_are_capped_on_the_page_but_not_in_csv(tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", [decision(m, ["n1"]) for m in
                                       range(12)])
    code, page, _ = run(capsys, "report", str(log), "--max-rows", "5")
    assert code == 0
    assert page.count("<tr><td>2026-11-01") == 5
    assert 'data-left-out="7"' in page and "7 more placements" in page
    code, out, _ = run(capsys, "report", str(log), "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 12


def test_the_page_has_the_summary_and_a_drawn_chart(tmp_path, capsys):
    code, page, _ = run(capsys, "report", str(sample(tmp_path)))
    assert 'data-key="placements">2<' in page
    assert 'data-key="refusals">1<' in page
    assert 'data-key="malformed_lines">1<' in page
    assert page.count('class="bar trusted"') >= 2
    assert 'class="bar refusals"' in page
    assert 'class="marker trust_lost"' in page
    assert page.endswith("</html>\n")


# -- bounded aggregation ----------------------------------------------------

def test_buckets_widen_and_totals_survive(tmp_path):
    agg = aggregate.Aggregator()
    minute = 0
    for day in range(40):  # 40 days, one decision an hour
        for hour in range(24):
            minute = day * 1440 + hour * 60
            hosts = [verdict(f"n{i}", minutes=minute) for i in range(3)]
            if hour == 3:
                hosts = [verdict("n0", "untrusted", minutes=minute)]
            agg.add(events.parse_line(decision(minute, hosts)))
    timeline = agg.timeline()
    assert len(timeline) <= aggregate.MAX_BUCKETS
    assert agg.width == 21600  # six hours
    assert sum(b["placements"] for b in timeline) == 40 * 23
    assert sum(b["refusals"] for b in timeline) == 40
    # the worst level in the bucket: n0 was untrusted at 03:00
    night = [b for b in timeline if b["start"].endswith("T00:00:00+00:00")]
    assert all(b["untrusted"] == 1 and b["trusted"] == 2 for b in night)


def test_hosts_beyond_the_cap_are_counted_not_tracked(monkeypatch):
    monkeypatch.setattr(aggregate, "MAX_HOSTS", 3)
    agg = aggregate.Aggregator()
    agg.add(events.parse_line(decision(0, [f"n{i}" for i in range(5)])))
    assert agg.summary()["hosts_seen"] == 3
    assert agg.summary()["untracked_host_observations"] >= 2


# -- explain, with the file backend and no Nova -------------------------------

INSTANCE = "aaaaaaaa-0000-0000-0000-000000000000"


@pytest.fixture
def file_conf(tmp_path):
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"hosts": {"n1": "trusted",
                                           "n2": "untrusted"}}))
    conf = tmp_path / "nova.conf"
    conf.write_text(f"[trusted_computing]\nbackend = file\n"
                    f"[trust_file]\npath = {trust}\n")
    return conf, trust


def explain(capsys, conf, *args):
    code = cli.main(["--config-file", str(conf), "explain", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_explain_still_trusted_exits_0(tmp_path, capsys, file_conf):
    conf, _ = file_conf
    log = write(tmp_path / "a.jsonl", [decision(0, ["n1"],
                                                instance=INSTANCE)])
    code, out, err = explain(capsys, conf, INSTANCE, "--audit-log", str(log),
                             "--format", "json")
    assert code == 0, err
    story = json.loads(out)
    assert story["nova"]["note"].startswith("Nova not asked: "
                                            "[trustpool_nova]")
    [host] = story["hosts"]
    assert host["host"] == "n1" and host["then"]["level"] == "trusted"
    assert host["now"]["level"] == "trusted" and story["drifted"] is False


def test_explain_drift_now_and_in_the_logs_exits_1(tmp_path, capsys,
                                                    file_conf):
    conf, trust = file_conf
    log = write(tmp_path / "a.jsonl", [
        decision(0, ["n1"], instance=INSTANCE),
        decision(5, [verdict("n1", "untrusted")]),
        trust_lost(6, "n1", instances=[INSTANCE])])
    code, out, _ = explain(capsys, conf, INSTANCE, "--audit-log", str(log),
                           "--no-nova")
    assert code == 1
    assert "since placement: seen untrusted at 2026-11-01T00:05" in out
    assert "trust lost at 2026-11-01T00:06" in out
    assert "DRIFTED" in out
    trust.write_text(json.dumps({"hosts": {"n1": "untrusted"}}))
    log = write(tmp_path / "b.jsonl", [decision(0, ["n1"],
                                                instance=INSTANCE)])
    code, out, _ = explain(capsys, conf, INSTANCE, "--audit-log", str(log),
                           "--no-nova")
    assert code == 1 and "now:  untrusted" in out


def test_explain_unknown_instance_and_bad_input_exit_2(tmp_path, capsys,
                                                       file_conf):
    conf, _ = file_conf
    log = write(tmp_path / "a.jsonl", [decision(0, ["n1"])])
    code, out, err = explain(capsys, conf, INSTANCE, "--audit-log", str(log))
    assert code == 2 and out == ""
    assert f"instance {INSTANCE} is not in the logs" in err
    code, _, err = explain(capsys, conf, "not-a-uuid", "--audit-log", str(log))
    assert code == 2 and "not an instance UUID: 'not-a-uuid'" in err
    code, _, err = explain(capsys, conf, INSTANCE, "--audit-log",
                           str(tmp_path / "nope"))
    assert code == 2 and "cannot read" in err


def test_explain_a_refused_instance_exits_1(tmp_path, capsys, file_conf):
    conf, _ = file_conf
    log = write(tmp_path / "a.jsonl", [decision(
        0, [verdict("n2", "untrusted")], instance=INSTANCE)])
    code, out, _ = explain(capsys, conf, INSTANCE, "--audit-log", str(log))
    assert code == 1 and "no logged decision admitted it" in out


def test_the_last_event_is_in_the_last_bucket(tmp_path, capsys):
    # a refusal that is the last event, on a bucket boundary (found by the
    # browser test: the chart dropped it)
    log = write(tmp_path / "a.jsonl", [
        decision(0, ["n1"]), decision(115, [verdict("n1", "untrusted")])])
    code, out, _ = run(capsys, "report", str(log), "--format", "json")
    timeline = json.loads(out)["timeline"]
    assert sum(b["refusals"] for b in timeline) == 1
    assert timeline[-1]["refusals"] == 1 and timeline[-1]["untrusted"] == 1
    # with --until the end is exclusive: an event at until is outside
    code, out, _ = run(capsys, "report", str(log), "--format", "json",
                       "--until", "2026-11-01T01:55:00+00:00")
    report = json.loads(out)
    assert report["summary"]["outside_window"] == 1
    assert sum(b["placements"] for b in report["timeline"]) == 1


def test_events_written_to_the_audit_logger_are_read_back(caplog):
    caplog.set_level(logging.INFO, logger=events.AUDIT_LOGGER)
    events.write(json.loads(trust_lost(3, "n4", instances=["i9"])))
    [record] = [r for r in caplog.records if r.name == events.AUDIT_LOGGER]
    event = events.parse_line(record.getMessage())
    assert isinstance(event, events.TrustLost) and event.host == "n4"


def test_the_report_file_follows_the_umask(tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", [decision(0, ["n1"])])
    old = os.umask(0o027)
    try:
        run(capsys, "report", str(log), "-o", str(tmp_path / "r.html"))
    finally:
        os.umask(old)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o640


def test_a_file_named_twice_is_read_once(tmp_path, capsys):
    log = write(tmp_path / "a.jsonl", [decision(0, ["n1"])])
    code, out, _ = run(capsys, "report", str(log), str(tmp_path / "."
                                                      / "a.jsonl"),
                       "--format", "json")
    assert json.loads(out)["summary"]["placements"] == 1


class _Nova:
    """Where Nova says a server runs (the real API is in tests/nova)."""

    def __init__(self, servers):
        self.servers = servers

    def server(self, server_id):
        return self.servers.get(server_id)


def test_explain_a_host_no_decision_admitted_exits_1(tmp_path, capsys,
                                                     file_conf):
    conf, _ = file_conf
    log = write(tmp_path / "a.jsonl", [decision(0, ["n1"],
                                                instance=INSTANCE)])
    # moved to n2 without the scheduler (a forced evacuation, say)
    nova = _Nova({INSTANCE: {"OS-EXT-SRV-ATTR:host": "n2",
                             "OS-EXT-SRV-ATTR:hypervisor_hostname": "n2"}})
    code = cli.main(["--config-file", str(conf), "explain", INSTANCE,
                     "--audit-log", str(log)], compute_api=nova)
    out = capsys.readouterr().out
    assert code == 1
    assert "Nova: runs on n2" in out
    assert "it runs on n2, which no logged decision admitted it to " \
        "(the latest admitted it to n1)" in out
    # Nova has forgotten it: the logged host is explained instead
    code = cli.main(["--config-file", str(conf), "explain", INSTANCE,
                     "--audit-log", str(log)], compute_api=_Nova({}))
    out = capsys.readouterr().out
    assert code == 0 and "Nova does not know the instance" in out


def test_explain_picks_the_decision_that_admitted_the_current_host(
        tmp_path, capsys, file_conf):
    conf, _ = file_conf
    log = write(tmp_path / "a.jsonl", [
        decision(0, ["n2x"], instance=INSTANCE, request="req-first"),
        decision(5, ["n1"], instance=INSTANCE, request="req-moved")])
    nova = _Nova({INSTANCE: {"OS-EXT-SRV-ATTR:host": "n1"}})
    code = cli.main(["--config-file", str(conf), "explain", INSTANCE,
                     "--audit-log", str(log), "--format", "json"],
                    compute_api=nova)
    story = json.loads(capsys.readouterr().out)
    assert code == 0
    assert story["decisions"] == 2
    assert story["placed"]["request_id"] == "req-moved"


# -- what is not a regular file -----------------------------------------------

def _in_thread(target):
    """Run ``target`` in a daemon thread; what it returned, or a timeout
    (a report that blocks must fail the test, not hang it)."""
    result = []
    worker = threading.Thread(target=lambda: result.append(target()),
                              daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "the report blocked"
    return result[0]


@pytest.mark.parametrize("command", ["report", "explain"])
def test_a_pipe_is_refused_not_read_in_part(tmp_path, capsys, command):
    """``trustpool report <(zcat old.gz)``: the file is opened more than
    once (its first event orders the files), so a pipe would lose what the
    first opens read, and the report would be silently incomplete."""
    log = sample(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def writer():
        try:
            with open(fifo, "wb") as out:
                out.write(log.read_bytes())
        except OSError:
            pass

    feeding = threading.Thread(target=writer, daemon=True)
    feeding.start()
    args = ["report", "--format", "csv", "--output",
            str(tmp_path / "out.csv"), str(fifo)] if command == "report" \
        else ["explain", "aaaaaaaa-0000-0000-0000-000000000000",
                  "--audit-log", str(fifo)]
    code = _in_thread(lambda: cli.main(["--config-file", "/dev/null",
                                        *args]))
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot read {fifo}: not a regular file" in err
    assert "Traceback" not in err
    with contextlib.suppress(OSError):        # let the writer end
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))


def test_a_fifo_without_writer_and_a_device_are_refused_at_once(
        tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for name in (str(fifo), "/dev/zero"):
        code = _in_thread(lambda name=name: cli.main(
            ["--config-file", "/dev/null", "report", "--format", "json",
             "--output", str(tmp_path / "out.json"), name]))
        err = capsys.readouterr().err
        assert code == 2
        assert f"cannot read {name}: not a regular file" in err
