# SPDX-License-Identifier: Apache-2.0
"""Reading the audit log: files, standard input, rotated ``.gz`` files.

A log is input from the network at one remove (host names and reasons come
from attestation servers and Nova), so a bad line is counted by reason and
skipped, never fatal. What is fatal is what makes the record incomplete
without anyone noticing: a file that cannot be read or a compressed file
that is cut short or corrupt (:class:`LogReadError`, naming the file).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import stat
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from trustpool import events
from trustpool.exceptions import TrustpoolError

__all__ = ["MAX_LINE_BYTES", "STDIN", "LogReadError", "ReadStats",
           "Source", "open_sources", "read_events"]

STDIN = "-"
#: A decision lists every candidate host; 100,000 hosts are about 20 MB.
#: A longer line is counted as malformed and skipped, not held in memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Examples of malformed lines kept for the report (file, line, reason).
MAX_EXAMPLES = 20
#: Distinct unknown event types counted by name; the rest as one.
MAX_UNKNOWN_TYPES = 50
_GZIP_MAGIC = b"\x1f\x8b"


class LogReadError(TrustpoolError):
    """A log file could not be read, or a compressed one is corrupt."""


@dataclasses.dataclass
class ReadStats:
    """What the reader saw besides the events it handed on."""

    lines: int = 0
    events: int = 0
    malformed: Counter[str] = dataclasses.field(default_factory=Counter)
    examples: list[tuple[str, int, str]] = dataclasses.field(
        default_factory=list)
    unknown: Counter[str] = dataclasses.field(default_factory=Counter)
    outside_window: int = 0
    first: float | None = None
    last: float | None = None

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    @property
    def unknown_total(self) -> int:
        return sum(self.unknown.values())

    def seen(self, when: float) -> None:
        if self.first is None or when < self.first:
            self.first = when
        if self.last is None or when > self.last:
            self.last = when


@dataclasses.dataclass(frozen=True)
class Source:
    """One log to read: a path, or ``-`` for standard input."""

    name: str
    compressed: bool
    first_time: float | None

    def open(self) -> BinaryIO:
        if self.name == STDIN:
            stream: BinaryIO = sys.stdin.buffer
            # peek without consuming: is standard input compressed?
            if isinstance(stream, io.BufferedReader) and \
                    stream.peek(2)[:2] == _GZIP_MAGIC:
                return gzip.GzipFile(fileobj=stream)  # type: ignore
            return stream
        raw = open(self.name, "rb")  # noqa: SIM115 - closed by the reader
        if self.compressed:
            return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
        return raw


def _describe(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def open_sources(names: Sequence[str]) -> list[Source]:
    """Check every log can be read, and order them oldest first.

    Files are ordered by the time of their first event (rotated logs named
    in any order read as one history); standard input is read first.

    :raises LogReadError: a file cannot be opened or read, or a compressed
        file is corrupt at its start.
    """
    sources = []
    seen: set[str] = set()
    for name in names:
        if name != STDIN:
            # the same file named twice (a glob and its name) counts once
            real = os.path.realpath(name)
            if real in seen:
                continue
            seen.add(real)
        if name == STDIN:
            sources.append(Source(STDIN, False, None))
            continue
        _regular(name)
        try:
            with open(name, "rb") as raw:
                compressed = raw.read(2) == _GZIP_MAGIC
        except OSError as exc:
            raise LogReadError(
                f"cannot read {name}: {_describe(exc)}") from None
        source = Source(name, compressed, None)
        sources.append(Source(name, compressed, _first_time(source)))
    return sorted(sources, key=lambda s: (
        s.name != STDIN, s.first_time is None, s.first_time or 0.0))


def _regular(name: str) -> None:
    """Refuse what is not a regular file before reading a byte of it.

    A file is opened more than once (its first event orders the files), so
    a pipe (``<(zcat old.gz)``, a FIFO) would lose what the first reads
    took, silently; a FIFO with no writer would block, and a device such
    as ``/dev/zero`` would never end. Opened without blocking, so that a
    FIFO is named, not waited on. Standard input (``-``) is read once and
    takes a pipe.
    """
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise LogReadError(
            f"cannot read {name}: {_describe(exc)}") from None
    try:
        mode = os.fstat(handle).st_mode
    finally:
        os.close(handle)
    if stat.S_ISDIR(mode):
        raise LogReadError(f"cannot read {name}: is a directory")
    if not stat.S_ISREG(mode):
        raise LogReadError(
            f"cannot read {name}: not a regular file (a pipe or a device "
            "would be read more than once, or never end); give a stream "
            "on standard input as -, e.g. zcat old.gz | trustpool report - "
            "...")


def _first_time(source: Source, lines: int = 1000) -> float | None:
    """The time of the first event among the first lines (to order
    rotated files); ``None`` if there is none."""
    try:
        with source.open() as stream:
            for _ in range(lines):
                line = stream.readline(MAX_LINE_BYTES)
                if not line:
                    return None
                try:
                    event = events.parse_line(line)
                except events.MalformedEvent:
                    continue
                when = getattr(event, "time", None)
                if when is not None:
                    return when
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(source.name, 0, exc) from None
    return None


def _corrupt(name: str, line: int, exc: Exception) -> LogReadError:
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        what = (f"compressed file {name} is corrupt or cut short"
                f" ({' '.join(str(exc).split()) or type(exc).__name__})")
    else:
        what = f"cannot read {name}: {_describe(exc)}"  # type: ignore
    if line:
        what += f" after line {line}"
    return LogReadError(what)


def read_events(sources: Sequence[Source], stats: ReadStats, *,
                since: float | None = None, until: float | None = None
                ) -> Iterator[tuple[events.Event, str, int]]:
    """Every known event in the window ``[since, until)``, with the file
    and line it came from, in the order read; counts the rest in
    ``stats`` (malformed lines by reason, unknown types by name, events
    outside the window).

    :raises LogReadError: a file failed while being read.
    """
    for source in sources:
        number = 0
        try:
            stream = source.open()
            try:
                while True:
                    line = stream.readline(MAX_LINE_BYTES)
                    if not line:
                        break
                    number += 1
                    stats.lines += 1
                    if len(line) >= MAX_LINE_BYTES and \
                            not line.endswith(b"\n"):
                        _skip_rest(stream)
                        _malformed(stats, source.name, number,
                                   "line too long")
                        continue
                    try:
                        event = events.parse_line(line)
                    except events.MalformedEvent as exc:
                        _malformed(stats, source.name, number, str(exc))
                        continue
                    if event is None:
                        continue
                    when = event.time
                    if when is not None:
                        stats.seen(when)
                        if (since is not None and when < since) or \
                                (until is not None and when >= until):
                            stats.outside_window += 1
                            continue
                    if isinstance(event, events.Unknown):
                        key = event.event
                        if key not in stats.unknown and \
                                len(stats.unknown) >= MAX_UNKNOWN_TYPES:
                            key = "(other types)"
                        stats.unknown[key] += 1
                        continue
                    stats.events += 1
                    yield event, source.name, number
            finally:
                if source.name != STDIN:
                    stream.close()
        except (OSError, EOFError, zlib.error) as exc:
            raise _corrupt(source.name, number, exc) from None


def _skip_rest(stream: BinaryIO) -> None:
    while True:
        chunk = stream.readline(MAX_LINE_BYTES)
        if not chunk or chunk.endswith(b"\n"):
            return


def _malformed(stats: ReadStats, name: str, number: int,
               reason: str) -> None:
    stats.malformed[reason] += 1
    if len(stats.examples) < MAX_EXAMPLES:
        stats.examples.append((name, number, reason))
