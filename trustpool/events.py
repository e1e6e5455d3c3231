# SPDX-License-Identifier: Apache-2.0
"""The audit events on ``trustpool.audit``: names, fields, one parser.

Everything that writes an audit event (TrustedFilter's decision record
today; the revocation service and quarantine of issue 16 later) and
everything that reads them (``trustpool report``, ``trustpool explain``)
agrees on this module, so a field is named once. Standard library only:
the filter inside nova-scheduler imports it, and so do the operator
commands.

One event is one line of JSON (a prefix before the object, as oslo.log or
syslog write one, is skipped by the reader). Every event has ``event`` (its
type), ``schema_version`` and ``time`` (ISO 8601 with an offset, when
trustpool acted). Fields are only ever added; ``schema_version`` changes if
one ever changes meaning. Readers count and skip event types they do not
know, so a newer writer never breaks an older report.

``trustpool.placement_decision`` (written by TrustedFilter, one per
scheduling request of a flavor with ``trust:trusted_host``; see
:mod:`trustpool.decision_record`)::

    {"event": "trustpool.placement_decision", "schema_version": 1,
     "time": "...", "request_id": "req-...", "instance_uuid": "...",
     "project_id": "...", "flavor": "m1.trusted", "wanted": "trusted",
     "valid_request": true, "attestation_server": "oat https://...",
     "hosts": [{"host": "node1", "level": "trusted", "passed": true,
                "server_time": "...", "age_seconds": 2.1,
                "backend": "oat", "reason": "..."}],
     "passed": ["node1"]}

``trustpool.trust_lost`` (to be written by the revocation service, issue
16: a host lost trust; its trust trait was removed)::

    {"event": "trustpool.trust_lost", "schema_version": 1, "time": "...",
     "host": "node1", "agent_id": "d432fbb3-...",
     "source": "keylime-revocation",
     "event_id": "...", "event_time": "Tue Nov 24 10:00:00 2026",
     "severity": "emergency", "context": {...},
     "trait_removed": true,
     "instances": [{"instance": "6a1f...", "name": "web-1",
                    "project_id": "...", "flavor": "m1.trusted"}]}

``event_time`` is the verifier's own time, as it wrote it (Keylime 6.6
writes ``time.asctime()``); ``severity`` is its ``severity_label``;
``context`` its ``context`` (any JSON); ``instances`` the instances of
trusted flavors running on the host when trust was lost (the drift report
for that one host).

``trustpool.quarantine`` (written by :mod:`trustpool.quarantine`:
trustpool disabled or re-enabled a host's nova-compute service)::

    {"event": "trustpool.quarantine", "schema_version": 1, "time": "...",
     "host": "cmp1", "action": "disable",
     "trigger": "untrusted_attestations",
     "reason": "trustpool: quarantined: 3 untrusted attestations in a row
                (node1.example) at 2026-12-01T21:40:00+00:00",
     "event_id": "..." or null, "instances": [],
     "service_id": "5e1f...", "nodes": ["node1.example"], "passes": 3}

``host`` is the nova-compute service host that was acted on; ``nodes``
the names the attestation service knows its compute nodes by;
``action`` is ``disable`` or ``enable``; ``trigger`` says why
(``revocation``, ``untrusted_attestations``, ``trusted_attestations``);
``reason`` the service's ``disabled_reason`` (for a disable); ``passes``
the length of the run of attestations that triggered it (absent for a
revocation); ``event_id`` the revocation's.

``trustpool.quarantine_skipped`` (written by :mod:`trustpool.quarantine`:
a quarantine or release was due and NOT done)::

    {"event": "trustpool.quarantine_skipped", "schema_version": 1,
     "time": "...", "host": "cmp1", "action": "disable",
     "trigger": "revocation", "outcome": "skipped",
     "why": "disabled by someone else (reason 'maintenance'): trustpool
             never touches it", "event_id": "..." or null,
     "nodes": ["node1.example"]}

``outcome`` is ``skipped`` (the service was disabled by someone else, or
re-enabled or re-labelled by someone else while quarantined: trustpool
leaves it alone) or ``failed`` (the Nova API failed or lists no such
service; the action is tried again at the next pass that calls for it).

No event holds a secret: host names, ids, levels, times and reasons only.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "AUDIT_LOGGER", "KNOWN_EVENTS", "PLACEMENT_DECISION", "QUARANTINE",
    "QUARANTINE_ACTIONS", "QUARANTINE_OUTCOMES", "QUARANTINE_SKIPPED",
    "SCHEMA_VERSION", "TRUST_LOST", "Decision", "Event", "InstanceRef",
    "MalformedEvent", "Quarantine", "QuarantineSkipped", "TrustLost",
    "Unknown", "Verdict", "format_time", "parse", "parse_line",
    "parse_time", "quarantine_event", "quarantine_skipped_event",
    "trust_lost_event", "write",
]

AUDIT_LOGGER = "trustpool.audit"
SCHEMA_VERSION = 1

PLACEMENT_DECISION = "trustpool.placement_decision"
TRUST_LOST = "trustpool.trust_lost"
QUARANTINE = "trustpool.quarantine"
QUARANTINE_SKIPPED = "trustpool.quarantine_skipped"
KNOWN_EVENTS = (PLACEMENT_DECISION, TRUST_LOST, QUARANTINE,
                QUARANTINE_SKIPPED)
QUARANTINE_ACTIONS = ("disable", "enable")
#: why a due quarantine action was not done
QUARANTINE_OUTCOMES = ("skipped", "failed")

#: Event type names of unknown events are reported; cut long ones short.
_MAX_TYPE_NAME = 100


class MalformedEvent(ValueError):
    """A line that is not a well-formed event; the message says why in a
    few words (it is counted by reason, so it must not quote the line)."""


class Verdict(NamedTuple):
    """One candidate host of a decision, as the filter saw it (a named
    tuple: a month's report builds millions)."""

    host: str | None
    level: str | None
    passed: bool
    server_time: str | None
    age_seconds: float | None
    backend: str | None
    reason: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """A ``trustpool.placement_decision``."""

    time: float
    request_id: str | None
    instance_uuid: str | None
    project_id: str | None
    flavor: str
    wanted: str
    valid: bool
    server: str | None
    hosts: tuple[Verdict, ...]
    passed: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceRef:
    """An instance on a host, as a trust-loss or quarantine event lists
    it."""

    instance: str
    name: str | None = None
    project_id: str | None = None
    flavor: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TrustLost:
    """A ``trustpool.trust_lost``."""

    time: float
    host: str
    agent_id: str | None
    source: str | None
    event_id: str | None
    event_time: str | None
    severity: str | None
    context: Any
    trait_removed: bool | None
    instances: tuple[InstanceRef, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Quarantine:
    """A ``trustpool.quarantine``."""

    time: float
    host: str
    action: str
    trigger: str | None
    reason: str | None
    event_id: str | None
    instances: tuple[InstanceRef, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class QuarantineSkipped:
    """A ``trustpool.quarantine_skipped``: an action due, not done."""

    time: float
    host: str
    action: str
    trigger: str | None
    outcome: str
    why: str | None
    event_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Unknown:
    """An event of a type this version does not know (counted, skipped)."""

    event: str
    time: float | None


Event = Decision | TrustLost | Quarantine | QuarantineSkipped | Unknown


def format_time(when: float) -> str:
    """The events' spelling of a time: ISO 8601, UTC, with the offset."""
    return datetime.datetime.fromtimestamp(
        when, datetime.timezone.utc).isoformat()


def parse_time(text: str) -> float:
    """An ISO 8601 time as POSIX seconds; a time without an offset is
    taken as UTC (the events always carry one; people typing ``--since``
    often do not).

    :raises ValueError: not an ISO 8601 time.
    """
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = text.strip()
    if text.endswith(("Z", "z")):  # Python 3.10 does not read "Z"
        text = text[:-1] + "+00:00"
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _instances(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"instance": i["instance"], "name": i.get("name"),
             "project_id": i.get("project_id"), "flavor": i.get("flavor")}
            for i in items]


def trust_lost_event(*, host: str, agent_id: str | None, event_id: str | None,
                     event_time: str | None, severity: str | None,
                     context: Any, instances: Sequence[Mapping[str, Any]],
                     trait_removed: bool = True,
                     source: str = "keylime-revocation",
                     when: float | None = None) -> dict[str, Any]:
    """The ``trustpool.trust_lost`` event to log (as one JSON line on
    :data:`AUDIT_LOGGER`); ``instances`` are mappings with ``instance`` and
    optionally ``name``, ``project_id``, ``flavor``."""
    return {
        "event": TRUST_LOST, "schema_version": SCHEMA_VERSION,
        "time": format_time(time.time() if when is None else when),
        "host": host, "agent_id": agent_id, "source": source,
        "event_id": event_id, "event_time": event_time,
        "severity": severity, "context": context,
        "trait_removed": trait_removed, "instances": _instances(instances),
    }


def quarantine_event(*, host: str, action: str, trigger: str | None,
                     reason: str | None, event_id: str | None = None,
                     instances: Sequence[Mapping[str, Any]] = (),
                     when: float | None = None) -> dict[str, Any]:
    """The ``trustpool.quarantine`` event to log; ``action`` is one of
    :data:`QUARANTINE_ACTIONS`."""
    if action not in QUARANTINE_ACTIONS:
        raise ValueError(f"action {action!r} is not one of "
                         f"{QUARANTINE_ACTIONS}")
    return {
        "event": QUARANTINE, "schema_version": SCHEMA_VERSION,
        "time": format_time(time.time() if when is None else when),
        "host": host, "action": action, "trigger": trigger,
        "reason": reason, "event_id": event_id,
        "instances": _instances(instances),
    }


def quarantine_skipped_event(*, host: str, action: str,
                             trigger: str | None, outcome: str,
                             why: str, event_id: str | None = None,
                             when: float | None = None) -> dict[str, Any]:
    """The ``trustpool.quarantine_skipped`` event to log: ``action`` (one
    of :data:`QUARANTINE_ACTIONS`) was due and not done, ``outcome`` (one
    of :data:`QUARANTINE_OUTCOMES`) says which way, ``why`` in words."""
    if action not in QUARANTINE_ACTIONS:
        raise ValueError(f"action {action!r} is not one of "
                         f"{QUARANTINE_ACTIONS}")
    if outcome not in QUARANTINE_OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of "
                         f"{QUARANTINE_OUTCOMES}")
    return {
        "event": QUARANTINE_SKIPPED, "schema_version": SCHEMA_VERSION,
        "time": format_time(time.time() if when is None else when),
        "host": host, "action": action, "trigger": trigger,
        "outcome": outcome, "why": why, "event_id": event_id,
    }


def write(event: Mapping[str, Any]) -> None:
    """Log an event built here as one JSON line on :data:`AUDIT_LOGGER`
    (INFO), where the decision record goes too."""
    logging.getLogger(AUDIT_LOGGER).info("%s", json.dumps(event))


def parse_line(line: bytes | str) -> Event | None:
    """Parse one line of the audit log; ``None`` for a blank line.

    Anything before the first ``{`` (a log prefix) is skipped.

    :raises MalformedEvent: the line is not a well-formed event.
    """
    start = line.find(b"{") if isinstance(line, bytes) else line.find("{")
    if start < 0:
        if not line.strip():
            return None
        raise MalformedEvent("not JSON")
    try:
        obj = json.loads(line[start:])
    except UnicodeDecodeError:
        raise MalformedEvent("not UTF-8") from None
    except (ValueError, RecursionError):
        raise MalformedEvent("not JSON") from None
    return parse(obj)


def parse(obj: Any) -> Event:
    """One decoded event.

    :raises MalformedEvent: not an object, no ``event`` type, or a field
        of a known event with the wrong type.
    """
    if not isinstance(obj, dict):
        raise MalformedEvent("not a JSON object")
    kind = obj.get("event")
    if not isinstance(kind, str) or not kind:
        raise MalformedEvent("no event type")
    if kind == PLACEMENT_DECISION:
        return _decision(obj)
    if kind == TRUST_LOST:
        return _trust_lost(obj)
    if kind == QUARANTINE:
        return _quarantine(obj)
    if kind == QUARANTINE_SKIPPED:
        return _quarantine_skipped(obj)
    when = obj.get("time")
    try:
        stamp = parse_time(when) if isinstance(when, str) else None
    except ValueError:
        stamp = None
    return Unknown(kind[:_MAX_TYPE_NAME], stamp)


def _event_time(obj: dict[str, Any]) -> float:
    try:
        return parse_time(obj["time"])
    except (KeyError, ValueError, OverflowError):
        raise MalformedEvent("no valid time") from None


def _text(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEvent(f"{what} {key} is not a string")


_TEXT_TYPES = frozenset({str, type(None)})


def _text_fields(entry: Mapping[str, Any], what: str) -> None:
    """Raise for the first field of a verdict that is not text."""
    for key in ("host", "level", "server_time", "backend", "reason"):
        _text(entry, key, what)


def _required(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if isinstance(value, str) and value:
        return value
    raise MalformedEvent(f"{what} without {key}")


def _decision(obj: dict[str, Any]) -> Decision:
    what = "decision"
    hosts = obj.get("hosts")
    passed = obj.get("passed")
    if not isinstance(hosts, list):
        raise MalformedEvent("decision hosts is not a list")
    if not isinstance(passed, list) or not all(
            isinstance(p, str) for p in passed):
        raise MalformedEvent("decision passed is not a list of names")
    verdicts = []
    for entry in hosts:  # the hot loop of a month's report: kept plain
        if type(entry) is not dict:
            raise MalformedEvent("decision host is not an object")
        get = entry.get
        host, level = get("host"), get("level")
        server_time, backend, reason = (get("server_time"), get("backend"),
                                        get("reason"))
        if not {type(host), type(level), type(server_time), type(backend),
                type(reason)} <= _TEXT_TYPES:
            _text_fields(entry, "decision")
        age = get("age_seconds")
        if age is not None and (type(age) not in (int, float)
                                or not math.isfinite(age)):
            raise MalformedEvent("decision age_seconds is not a number")
        verdicts.append(Verdict(host, level, get("passed") is True,
                                server_time, age, backend, reason))
    flavor = obj.get("flavor")
    if not isinstance(flavor, str):
        flavor = "?" if flavor is None else str(flavor)
    valid = obj.get("valid_request")
    return Decision(
        time=_event_time(obj), request_id=_text(obj, "request_id", what),
        instance_uuid=_text(obj, "instance_uuid", what),
        project_id=_text(obj, "project_id", what), flavor=flavor,
        wanted=_required(obj, "wanted", what), valid=valid is not False,
        server=_text(obj, "attestation_server", what),
        hosts=tuple(verdicts), passed=tuple(passed))


def _instance_refs(obj: Mapping[str, Any], what: str
                   ) -> tuple[InstanceRef, ...]:
    items = obj.get("instances", [])
    if not isinstance(items, list):
        raise MalformedEvent(f"{what} instances is not a list")
    refs = []
    for item in items:
        if isinstance(item, str):  # a bare id is enough
            refs.append(InstanceRef(item))
            continue
        if not isinstance(item, dict):
            raise MalformedEvent(f"{what} instance is not an object")
        refs.append(InstanceRef(
            _required(item, "instance", what), _text(item, "name", what),
            _text(item, "project_id", what), _text(item, "flavor", what)))
    return tuple(refs)


def _trust_lost(obj: dict[str, Any]) -> TrustLost:
    what = "trust_lost"
    removed = obj.get("trait_removed")
    return TrustLost(
        time=_event_time(obj), host=_required(obj, "host", what),
        agent_id=_text(obj, "agent_id", what),
        source=_text(obj, "source", what),
        event_id=_text(obj, "event_id", what),
        event_time=_text(obj, "event_time", what),
        severity=_text(obj, "severity", what), context=obj.get("context"),
        trait_removed=removed if isinstance(removed, bool) else None,
        instances=_instance_refs(obj, what))


def _quarantine(obj: dict[str, Any]) -> Quarantine:
    what = "quarantine"
    action = obj.get("action")
    if action not in QUARANTINE_ACTIONS:
        raise MalformedEvent("quarantine action is not disable or enable")
    return Quarantine(
        time=_event_time(obj), host=_required(obj, "host", what),
        action=action,
        trigger=_text(obj, "trigger", what),
        reason=_text(obj, "reason", what),
        event_id=_text(obj, "event_id", what),
        instances=_instance_refs(obj, what))


def _quarantine_skipped(obj: dict[str, Any]) -> QuarantineSkipped:
    what = "quarantine_skipped"
    action = obj.get("action")
    if action not in QUARANTINE_ACTIONS:
        raise MalformedEvent(f"{what} action is not disable or enable")
    outcome = obj.get("outcome")
    if outcome not in QUARANTINE_OUTCOMES:
        raise MalformedEvent(f"{what} outcome is not skipped or failed")
    return QuarantineSkipped(
        time=_event_time(obj), host=_required(obj, "host", what),
        action=action, trigger=_text(obj, "trigger", what),
        outcome=outcome, why=_text(obj, "why", what),
        event_id=_text(obj, "event_id", what))
