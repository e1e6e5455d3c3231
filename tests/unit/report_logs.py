"""Audit log lines for the report's tests, in the schema of
:mod:`trustpool.events` (the decision record's own output is checked
against the same parser in test_report.py)."""

from __future__ import annotations

import datetime
import json

from trustpool import events

T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)


def at(minutes: float) -> str:
    return (T0 + datetime.timedelta(minutes=minutes)).isoformat()


def verdict(host, level="trusted", *, passed=None, minutes=0.0,
            reason=None, age=30.0, backend="oat"):
    return {"host": host, "level": level,
            "passed": level == "trusted" if passed is None else passed,
            "server_time": at(minutes - age / 60), "age_seconds": age,
            "backend": backend,
            "reason": reason or f"attestation server says '{level}'"}


def decision(minutes, hosts, *, instance="11111111-1111-1111-1111-"
             "111111111111", flavor="m1.trusted", wanted="trusted",
             valid=True, request=None):
    entries = [h if isinstance(h, dict) else verdict(h, minutes=minutes)
               for h in hosts]
    return json.dumps({
        "event": events.PLACEMENT_DECISION, "schema_version": 1,
        "time": at(minutes), "request_id": request or f"req-{minutes}",
        "instance_uuid": instance, "project_id": "proj", "flavor": flavor,
        "wanted": wanted, "valid_request": valid,
        "attestation_server": "oat https://oat.example.org:8443/x",
        "hosts": entries,
        "passed": [h["host"] for h in entries if h["passed"]]})


def trust_lost(minutes, host, instances=(), event_id="ev-1"):
    return json.dumps(events.trust_lost_event(
        host=host, agent_id=f"agent-{host}", event_id=event_id,
        event_time="Sun Nov  1 00:00:00 2026", severity="emergency",
        context={"message": "PCR 15 changed"},
        instances=[{"instance": i} for i in instances],
        when=events.parse_time(at(minutes))))


def quarantine(minutes, host, action="disable"):
    return json.dumps(events.quarantine_event(
        host=host, action=action, trigger="revocation",
        reason="trustpool: quarantined", when=events.parse_time(
            at(minutes))))


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path
