# SPDX-License-Identifier: Apache-2.0
"""The decision record: one JSON event per trusted placement decision.

(Not the drift report, ``trustpool audit``, which asks the Nova API what
runs where; this is what the filter decided, as it decided it.)

Emitted by TrustedFilter on the ``trustpool.audit`` logger at INFO, as a
single line of JSON, for every scheduling request whose flavor carries
``trust:trusted_host``. By default it joins nova-scheduler's own log;
``[trusted_computing] audit_log_file`` sends it to a file of its own
(:func:`send_to_file`) and ``audit_record = False`` turns it off. The
schema is stable; fields are only ever added, and
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
import logging.handlers
import os
import stat
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from trustpool import events
from trustpool.attestation.model import HostReport

__all__ = ["AUDIT_LOGGER", "SCHEMA_VERSION", "emit", "enabled",
           "file_problem", "send_to_file", "stop_sending_to_file"]

AUDIT_LOGGER = events.AUDIT_LOGGER
SCHEMA_VERSION = events.SCHEMA_VERSION
_LOG = logging.getLogger(AUDIT_LOGGER)
#: where this module reports that it cannot write the record: the
#: scheduler's own log, never the audit file
_OWN_LOG = logging.getLogger(__name__)


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


class _AuditFile(logging.handlers.WatchedFileHandler):
    """The audit file: bare JSON lines, reopened after logrotate moves it.

    A write that fails (disk full, the directory removed) must not reach
    the scheduling request and must not print a traceback per request:
    the first failure is one warning in the scheduler's own log, then
    silence until a write succeeds again.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, encoding="utf-8")
        self.setFormatter(logging.Formatter("%(message)s"))
        self._failing = False
        self._error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self._error = None
        try:
            # reopening after a rotation raises from here, a failed write
            # comes back through handleError
            super().emit(record)
        except Exception as exc:  # noqa: BLE001 - never into the request
            self._error = exc
        if self._error is None:
            self._failing = False
        elif not self._failing:
            self._failing = True
            _OWN_LOG.warning(
                "trustpool cannot write the audit record to %s (%s: %s); "
                "decision events are lost until it can",
                self.baseFilename, type(self._error).__name__, self._error)

    def _open(self) -> Any:
        """The file for appending, refused when it is not a regular file:
        what stands at the path can change after start-up (a rotation), and
        opening a FIFO that nobody reads would block the scheduling request
        that writes, and every request after it. Opened without blocking,
        checked, then made blocking again."""
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND
                     | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{self.baseFilename} is not a regular file")
            os.set_blocking(fd, True)
            return open(fd, "a", encoding=self.encoding,  # noqa: SIM115
                        errors=self.errors)
        except BaseException:
            os.close(fd)
            raise

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        self._error = sys.exc_info()[1] or RuntimeError("write failed")


_route_lock = threading.Lock()
_route: dict[str, Any] = {}


def send_to_file(path: str) -> None:
    """Write the decision record to ``path`` only, one JSON line an event.

    Why a hook of our own rather than a logging recipe: oslo.log
    configures nova-scheduler from nova.conf (``log_file``, formats,
    ``debug``, ``default_log_levels``) unless ``log_config_append`` is set,
    and then it hands *all* of logging to that file and ignores those
    options. No nova.conf setting can give one logger a handler of its
    own. So the filter, built after oslo.log's set-up, adds one handler to
    the ``trustpool.audit`` logger and stops the events from propagating
    into the main log; everything else keeps what nova.conf says. The file
    is a ``WatchedFileHandler`` (as oslo.log's own default), so logrotate
    can move it. A level already set on the logger (``default_log_levels``)
    is kept; otherwise it is INFO, whatever the main log's level.

    Idempotent for the same path; a new path replaces the old handler.
    (With ``log_config_append``, oslo.log's reload on SIGHUP resets every
    logger when that file changed, which removes this handler too: route
    the logger in that file instead.)

    :raises ValueError: with :func:`file_problem`'s reason.
    :raises OSError: when it still cannot be opened for appending.
    """
    problem = file_problem(path)
    if problem:
        raise ValueError(problem)
    with _route_lock:
        old = _route.get("handler")
        if old is not None and old.baseFilename == os.path.abspath(path):
            return
        handler = _AuditFile(path)  # OSError: the caller names the option
        if old is not None:
            _LOG.removeHandler(old)
            old.close()
        else:
            _route["saved"] = (_LOG.level, _LOG.propagate)
        _LOG.addHandler(handler)
        _LOG.propagate = False
        if _LOG.level == logging.NOTSET:
            _LOG.setLevel(logging.INFO)
        _route["handler"] = handler


def file_problem(path: str) -> str | None:
    """Why this process could not append to ``path``, or ``None``.

    Shared by the filter's start-up and ``trustpool check-config``, so both
    say the same; each reason names the path. Something that exists but is
    not a regular file is refused: opening a FIFO would block the
    scheduler's start-up, and a directory or device is no audit record.
    """
    if not os.path.isabs(path):
        return f"{path!r} is not an absolute path"
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return f"cannot look at {path}: {exc.strerror or exc}"
    if mode is not None:
        if not stat.S_ISREG(mode):
            return f"{path} exists and is not a regular file"
        if not os.access(path, os.W_OK):
            return f"not writable by this user: {path}"
        return None
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return f"no such directory: {directory} (for {path})"
    if not os.access(directory, os.W_OK | os.X_OK):
        return (f"cannot create {path}: its directory is not writable by "
                "this user")
    return None


def stop_sending_to_file() -> None:
    """Undo :func:`send_to_file`: the logger's level and propagation are
    as before, the file is closed. For tests and re-configuration."""
    with _route_lock:
        handler = _route.pop("handler", None)
        if handler is None:
            return
        _LOG.removeHandler(handler)
        handler.close()
        level, propagate = _route.pop("saved")
        _LOG.setLevel(level)
        _LOG.propagate = propagate
