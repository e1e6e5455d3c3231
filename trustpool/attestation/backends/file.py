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

import logging
import os
import stat as stat_mod
import threading
import time
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from trustpool.attestation.backends.base import AttestationBackend
from trustpool.attestation.localfiles import read_regular, require_regular
from trustpool.attestation.model import HostReport, TrustLevel, fold
from trustpool.attestation.strictjson import loads_strict
from trustpool.attestation.timeparse import parse_vtime
from trustpool.exceptions import AttestationError, ConfigurationError

__all__ = ["FileBackend", "GROUP"]

LOG = logging.getLogger(__name__)
GROUP = "trust_file"

_opts = [
    cfg.StrOpt(
        "path",
        default="/etc/nova/trust-levels.json",
        help="JSON file mapping host names to trust levels, read by the "
        "'file' attestation backend: {\"hosts\": {\"node1\": \"trusted\", "
        "\"node2\": {\"level\": \"untrusted\", \"timestamp\": \"...\"}}, "
        "\"timestamp\": \"...\"}. Read again whenever it changes; a missing "
        "or malformed file makes every host 'unknown' (when the scheduler "
        "starts, a file that cannot be opened stops it, naming this "
        "option; 'trustpool check-config' also parses it). It must be a "
        "regular "
        "file (a symbolic link to one is fine): a FIFO, device or directory "
        "is refused, as is a key given twice in one object. Whoever can "
        "write it decides which hosts are trusted: a file writable by its "
        "group or by others is warned about once."),
    cfg.IntOpt(
        "max_file_bytes",
        default=64 * 1024 * 1024,
        min=2,
        help="Largest trust file read, in bytes."),
]

_LEVELS = {level.value: level for level in TrustLevel}

#: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): what says "the
#: file changed". ctime because ``os.utime`` can put an in-place rewrite's
#: mtime back, but nothing short of the system clock moves ctime back;
#: device and inode because a rename over the file can bring a new file
#: with the old size and times.
_Signature = tuple[int, int, int, int, int]


class FileBackend(AttestationBackend):
    """Trust levels from a local JSON file.

    The file decides which hosts are trusted, so it is held to what any
    attestation answer is: only a regular file is read (a FIFO or a device
    put in its place would block the reading thread, which holds the
    client's refresh lock, for as long as it likes), every change is seen,
    and whoever can write it is told about once.
    """

    name = "file"
    CONFIG_OPTS = [(GROUP, _opts)]
    FILE_OPTS = [(GROUP, "path", "data")]

    #: A file whose ctime or mtime is this recent is read again on the
    #: next call even if its signature did not change: timestamps have a
    #: granularity (a kernel tick on Linux), so a same-size rewrite within
    #: one tick of the previous read would look unchanged for good. This
    #: is git's "racily clean" problem and the same cure.
    settle_seconds: float = 2.0

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        group = conf[GROUP]
        self.path: str = group.path
        if not self.path:
            raise ConfigurationError("path", "must be set for the 'file' "
                                     "backend", group=GROUP)
        self._max_bytes: int = group.max_file_bytes
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._table: dict[str, HostReport] = {}
        #: (st_dev, st_ino) of files already warned about as writable
        self._warned: set[tuple[int, int]] = set()

    def describe(self) -> str:
        return f"file {self.path}"

    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        table = self._load()
        return {name: table[name] for name in hostnames if name in table}

    def list_hosts(self) -> list[str]:
        return sorted(self._load())

    def self_check(self) -> list[tuple[str, str, str, str]]:
        """The file read and parsed as a request would: an error if it
        cannot be used, a warning if it lists no host (then no host can
        be trusted, and nothing else says so)."""
        try:
            hosts = self.list_hosts()
        except AttestationError as exc:
            return [("error", GROUP, "path", str(exc))]
        if not hosts:
            return [("warning", GROUP, "path",
                     f"trust file {self.path} lists no host: every host is "
                     "'unknown', so no trusted flavor can be placed")]
        return []

    def _load(self) -> dict[str, HostReport]:
        try:
            found = os.stat(self.path)
        except OSError as exc:
            raise AttestationError(
                f"cannot read trust file {self.path}: {exc.strerror}"
            ) from None
        require_regular(self.path, found.st_mode, "trust file")
        # Bounded even if an earlier reader is stuck in the kernel (a hung
        # network file system): the caller gets an error, not a wait.
        if not self._lock.acquire(timeout=self.timeout):
            raise AttestationError(
                f"trust file {self.path}: an earlier read has not finished "
                f"within {self.timeout:g}s", "timeout")
        try:
            self._warn_if_writable(found)
            if _signature(found) != self._signature:
                raw, opened = self._read(found)
                self._table = self._parse(raw)
                settled = (time.time_ns() - max(opened.st_mtime_ns,
                                                opened.st_ctime_ns)
                           > self.settle_seconds * 1e9)
                self._signature = _signature(opened) if settled else None
            return self._table
        finally:
            self._lock.release()

    def _read(self, expected: os.stat_result
              ) -> tuple[bytes, os.stat_result]:
        """The file's bytes, and the status of the file actually read.

        Opened non-blocking and checked again on the open descriptor
        (:func:`~trustpool.attestation.localfiles.read_regular`): a FIFO
        swapped in after the ``stat`` does not block the open, and a file
        that is not regular, or not the one examined, is refused.
        """
        raw, opened = read_regular(self.path, self._max_bytes, "trust file",
                                   f"[{GROUP}] max_file_bytes")
        if (opened.st_dev, opened.st_ino) != (expected.st_dev,
                                              expected.st_ino):
            raise AttestationError(
                f"trust file {self.path} was replaced while being "
                "opened; it is read again on the next request", "other")
        return raw, opened

    def _warn_if_writable(self, found: os.stat_result) -> None:
        """Warn once per file: whoever can write it decides which hosts
        are trusted, exactly as the attestation server would."""
        writable = found.st_mode & (stat_mod.S_IWGRP | stat_mod.S_IWOTH)
        identity = (found.st_dev, found.st_ino)
        if not writable or identity in self._warned:
            return
        self._warned.add(identity)
        who = " and ".join(
            word for bit, word in ((stat_mod.S_IWGRP, "its group"),
                                   (stat_mod.S_IWOTH, "every user"))
            if writable & bit)
        LOG.warning(
            "Trust file %s is writable by %s (mode %04o): anyone who can "
            "write it can make any host trusted. Make it writable only by "
            "its owner (chmod go-w %s).", self.path, who,
            stat_mod.S_IMODE(found.st_mode), self.path)

    def _parse(self, raw: bytes) -> dict[str, HostReport]:
        where = f"trust file {self.path}"
        try:
            return self._table_of(raw, where)
        except AttestationError:
            raise
        except RecursionError:
            raise AttestationError(f"{where} is nested too deeply",
                                   "malformed") from None
        except Exception as exc:  # noqa: BLE001 - nothing else may escape
            raise AttestationError(
                f"{where} cannot be read: {type(exc).__name__}",
                "malformed") from None

    def _table_of(self, raw: bytes, where: str) -> dict[str, HostReport]:
        try:
            data = loads_strict(raw)
        except AttestationError as exc:
            raise AttestationError(f"{where} is not valid JSON: {exc}",
                                   "malformed") from None
        if not isinstance(data, dict) or not isinstance(data.get("hosts"),
                                                        dict):
            raise AttestationError(
                f"{where} must be an object with a 'hosts' object",
                "malformed")
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
                              f"{where}: hosts.{_short(name)}.timestamp")
        else:
            raw_level = entry
        if not isinstance(raw_level, str):
            raise AttestationError(
                f"{where}: hosts.{_short(name)} has no string level: "
                f"{_short(raw_level)}", "malformed")
        level = _LEVELS.get(fold(raw_level))
        if level is None:
            return HostReport(name, TrustLevel.UNKNOWN, self.name,
                              f"unrecognised level {_short(raw_level)} in "
                              f"{where}", stamp)
        return HostReport(name, level, self.name,
                          f"{where} says {level.value!r}", stamp)


def _signature(found: os.stat_result) -> _Signature:
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns,
            found.st_ctime_ns)


def _short(value: Any) -> str:
    """A value from the file for a message: short, one line, and never a
    ``repr`` of a container (a deep one would overflow the stack)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        text = repr(value) if not isinstance(value, int) or abs(
            value) < 10 ** 64 else "a huge number"
        text = "".join(c if c.isprintable() else "?" for c in text)
        # cut only far past the final bound: masking secrets comes later
        return text[:4000]
    return f"a {type(value).__name__}"


def _time(value: Any, where: str) -> str | None:
    """``value`` if it is a time trustpool can read; the file is ours, so a
    bad one is an error in the file, not a host to distrust quietly."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise AttestationError(f"{where}: not a time but {_short(value)}",
                               "malformed")
    try:
        parse_vtime(value)
    except ValueError as exc:
        raise AttestationError(f"{where}: {exc}", "malformed") from None
    return str(value)
