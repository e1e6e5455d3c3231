# SPDX-License-Identifier: Apache-2.0
"""The decision record: one JSON event per trusted placement decision.

(Not the drift report, ``trustpool audit``, which asks the Nova API what
runs where; this is what the filter decided, as it decided it.)

Emitted by TrustedFilter on the ``trustpool.audit`` logger at INFO, as a
single line of JSON, for every scheduling request whose flavor carries
``trust:trusted_host``. Route it like any logger (oslo.log
``log_config_append``, or ``default_log_levels = trustpool.audit=WARN`` to
turn it off). The schema is stable; fields are only ever added, and
``schema_version`` changes if one ever changes meaning::

    {"event": events.PLACEMENT_DECISION, "schema_version": 1,
     "time": "2026-11-22T21:00:00.123456+00:00",
     "request_id": "req-...", "instance_uuid": "...", "project_id": "...",
     "flavor": "m1.trusted", "wanted": "trusted", "valid_request": true,
     "attestation_server": "oat https://oat.example.org:8443/...",
     "hosts": [{"host": "node1", "level": "trusted", "passed": true,
                "server_time": "2026-11-22T20:59:58+00:00",
                "age_seconds": 2.1, "backend": "oat",
                "reason": "attestation server says 'trusted'"}],
     "passed": ["node1"]}

No secrets: the event holds host names, levels, times and reasons only.
The names of every audit event and their fields are in
:mod:`trustpool.events`, which ``trustpool report`` reads them with.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from trustpool import events
from trustpool.attestation.model import HostReport

__all__ = ["AUDIT_LOGGER", "SCHEMA_VERSION", "emit", "enabled"]

AUDIT_LOGGER = events.AUDIT_LOGGER
SCHEMA_VERSION = events.SCHEMA_VERSION
_LOG = logging.getLogger(AUDIT_LOGGER)


def enabled() -> bool:
    """Whether anyone listens; building an event for 10,000 hosts is not
    free, so the filter asks first."""
    return _LOG.isEnabledFor(logging.INFO)


def emit(*, wanted: str, valid: bool,
         hosts: Sequence[tuple[str | None, Any]],
         reports: dict[str, HostReport], passed: Sequence[str],
         server: str, request: dict[str, Any]) -> dict[str, Any]:
    """Log the decision; returns the event (for tests)."""
    now = time.time()
    entries = []
    passed_set = set(passed)
    for name, _host in hosts:
        report = reports.get(name) if name else None
        entry: dict[str, Any] = {"host": name, "passed": name in passed_set}
        if report is None:
            entry.update(level=None, server_time=None, age_seconds=None,
                         backend=None, reason="not asked: " + (
                             "no host name" if not name else
                             "invalid trust:trusted_host value"))
        else:
            vtime = report.vtime
            entry.update(
                level=report.level.value,
                server_time=vtime.isoformat() if vtime else None,
                age_seconds=round(now - vtime.timestamp(), 1)
                if vtime else None,
                backend=report.backend, reason=report.reason)
        entries.append(entry)
    event = {
        "event": events.PLACEMENT_DECISION,
        "schema_version": SCHEMA_VERSION,
        "time": datetime.datetime.fromtimestamp(
            now, datetime.timezone.utc).isoformat(),
        **request,
        "wanted": wanted,
        "valid_request": valid,
        "attestation_server": server,
        "hosts": entries,
        "passed": list(passed),
    }
    _LOG.info("%s", json.dumps(event, sort_keys=False))
    return event
