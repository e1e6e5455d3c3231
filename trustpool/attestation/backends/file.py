# SPDX-License-Identifier: Apache-2.0
"""A local JSON file as the attestation service: labs, demos, pipelines.

For sites whose attestation runs out of band (a pipeline that writes its
verdicts to a file) and for labs without an attestation server. The file::

    {
      "timestamp": "2026-11-22T10:00:00Z",
      "hosts": {
        "node1": "trusted",
        "node2": {"level": "untrusted", "timestamp": "2026-11-22T09:58:12Z"}
      }
    }

``timestamp`` (top level or per host) is optional and becomes the report's
server time. The file is read again whenever it changes; a missing or
malformed file fails closed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from trustpool.attestation.backends.base import AttestationBackend
from trustpool.attestation.model import HostReport, TrustLevel
from trustpool.attestation.timeparse import parse_vtime
from trustpool.exceptions import AttestationError, ConfigurationError

__all__ = ["FileBackend", "GROUP"]

GROUP = "trust_file"

_opts = [
    cfg.StrOpt(
        "path",
        default="/etc/nova/trust-levels.json",
        help="JSON file mapping host names to trust levels, read by the "
        "'file' attestation backend: {\"hosts\": {\"node1\": \"trusted\", "
        "\"node2\": {\"level\": \"untrusted\", \"timestamp\": \"...\"}}, "
        "\"timestamp\": \"...\"}. Read again whenever it changes; a missing "
        "or malformed file makes every host 'unknown'."),
    cfg.IntOpt(
        "max_file_bytes",
        default=64 * 1024 * 1024,
        min=2,
        help="Largest trust file read, in bytes."),
]

_LEVELS = {level.value: level for level in TrustLevel}


class FileBackend(AttestationBackend):
    """Trust levels from a local JSON file."""

    name = "file"
    CONFIG_OPTS = [(GROUP, _opts)]

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        group = conf[GROUP]
        self.path: str = group.path
        if not self.path:
            raise ConfigurationError("path", "must be set for the 'file' "
                                     "backend", group=GROUP)
        self._max_bytes: int = group.max_file_bytes
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._table: dict[str, HostReport] = {}

    def describe(self) -> str:
        return f"file {self.path}"

    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        table = self._load()
        return {name: table[name] for name in hostnames if name in table}

    def list_hosts(self) -> list[str]:
        return sorted(self._load())

    def _load(self) -> dict[str, HostReport]:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise AttestationError(
                f"cannot read trust file {self.path}: {exc.strerror}"
            ) from None
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if signature != self._signature:
                self._table = self._parse(self._read(stat.st_size))
                self._signature = signature
            return self._table

    def _read(self, size: int) -> bytes:
        if size > self._max_bytes:
            raise AttestationError(
                f"trust file {self.path} has {size} bytes, over "
                f"[{GROUP}] max_file_bytes ({self._max_bytes})")
        try:
            with open(self.path, "rb") as handle:
                return handle.read(self._max_bytes + 1)
        except OSError as exc:
            raise AttestationError(
                f"cannot read trust file {self.path}: {exc.strerror}"
            ) from None

    def _parse(self, raw: bytes) -> dict[str, HostReport]:
        where = f"trust file {self.path}"
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AttestationError(f"{where} is not valid JSON: {exc}"
                                   ) from None
        if not isinstance(data, dict) or not isinstance(data.get("hosts"),
                                                        dict):
            raise AttestationError(
                f"{where} must be an object with a 'hosts' object")
        default_time = _time(data.get("timestamp"), f"{where}: timestamp")
        table: dict[str, HostReport] = {}
        for name, entry in data["hosts"].items():
            table[name] = self._entry(name, entry, default_time, where)
        return table

    def _entry(self, name: str, entry: Any, default_time: Any,
               where: str) -> HostReport:
        stamp = default_time
        if isinstance(entry, dict):
            raw_level = entry.get("level")
            if "timestamp" in entry:
                stamp = _time(entry["timestamp"],
                              f"{where}: hosts.{name}.timestamp")
        else:
            raw_level = entry
        if not isinstance(raw_level, str):
            raise AttestationError(
                f"{where}: hosts.{name} has no string level: {raw_level!r}")
        level = _LEVELS.get(raw_level.strip().lower())
        if level is None:
            return HostReport(name, TrustLevel.UNKNOWN, self.name,
                              f"unrecognised level {raw_level!r} in {where}",
                              stamp)
        return HostReport(name, level, self.name,
                          f"{where} says {level.value!r}", stamp)


def _time(value: Any, where: str) -> str | None:
    """``value`` if it is a time trustpool can read; the file is ours, so a
    bad one is an error in the file, not a host to distrust quietly."""
    if value is None:
        return None
    try:
        parse_vtime(value)
    except ValueError as exc:
        raise AttestationError(f"{where}: {exc}") from None
    return str(value)
