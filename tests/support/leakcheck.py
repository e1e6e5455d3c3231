"""Watch every log record of a test run for secrets.

trustpool promises operators that the auth blob, private keys and
certificate contents never reach a log. This hooks ``Logger.callHandlers``
(which every emitted record passes, whatever handlers fixtures install or
remove) and checks each record against the secrets registered by the
tests: auth blobs, and every line of every PEM the test PKI writes.
"""

from __future__ import annotations

import json
import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_leaks: list[str] = []
_original = logging.Logger.callHandlers
_installed = False
WATCHED = ("trustpool", "urllib3", "requests", "stevedore", "oslo_config")


def register(secret: str | bytes) -> None:
    """Never let ``secret`` appear in a log record."""
    if isinstance(secret, bytes):
        secret = secret.decode()
    with _lock:
        _secrets.update(forms(secret))


def forms(secret: str) -> set[str]:
    """What to look for: a PEM's body lines; otherwise the value, each
    line of a multi-line value, and the quoted spellings (repr, JSON) under
    which a library's message shows it, with a line break as ``\\n``."""
    if "-----BEGIN" in secret:
        return {line for line in secret.splitlines()
                if line and not line.startswith("-----")}
    found = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    found.update(line.strip() for line in secret.splitlines())
    return {f for f in found if len(f) >= 8}


def scan_text(text: str) -> list[str]:
    """The secrets registered so far that ``text`` contains (for outputs
    that are not log records: CLI output, reasons, audit events)."""
    with _lock:
        return [s for s in _secrets if s in text]


def _scan(record: logging.LogRecord) -> None:
    try:
        text = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken record is not our concern
        text = str(record.msg)
    if record.exc_info and record.exc_info[1] is not None:
        text += " " + repr(record.exc_info[1])
    if record.exc_text:
        text += " " + record.exc_text
    with _lock:
        if any(secret in text for secret in _secrets):
            _leaks.append(f"{record.name}: {text[:200]}")


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    _scan(record)
    _original(self, record)


def install() -> None:
    """Start watching; loggers that could carry a secret log at DEBUG."""
    global _installed
    if _installed:
        return
    logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]
    for name in WATCHED:
        logging.getLogger(name).setLevel(logging.DEBUG)
    _installed = True


def take_leaks() -> list[str]:
    """The leaks seen since the last call, and forget them."""
    with _lock:
        leaks = list(_leaks)
        _leaks.clear()
    return leaks
