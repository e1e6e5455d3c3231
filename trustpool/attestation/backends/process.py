# SPDX-License-Identifier: Apache-2.0
"""A backend's exchanges made by a helper process, for refreshes ahead.

Why a process: a scheduler with busy threads starves a refresh made in the
background. Its request, the TLS records of the answer (16 KB at most
each), the JSON and the reader's checks all need the GIL, and a thread
that gives the GIL up for each read of the socket waits for it again
behind every scheduling thread: a 10,000-host answer that costs the
process about 50 ms of CPU took 1.2-4.6 s of wall time with eight
scheduling threads on two cores (README, Benchmarks), and a refresh that
slow lands after the answers it replaces expired. The helper has a GIL of
its own: it asks the service and reads the answer with the same backend,
built from the same options, and hands the scheduler the finished columns
in one file read and one :func:`marshal.loads`.

What stays as it was: the client checks the helper's answer as it checks
any backend's (:meth:`AttestationClient._checked_answer`), stores it with
the same deadline, and uses it no longer. A failure the service or the
backend reports in the helper is a failure like any other. A failure of
the helper itself (it cannot start, dies, hangs, sends something that is
not an answer) raises :class:`OffloadError`, and the client then makes
the same refresh in its own process, as without a helper: a broken helper
costs speed, never an answer and never trust.

Only backends that answer natively (:attr:`AttestationBackend.
answers_natively`) and are installed under an entry point are offloaded:
the helper builds the backend by its entry point name, so a backend
registered in code (:func:`register_backend`) would be a different one
there.

The protocol, over two pipes and one file the parent creates (in memory,
``memfd_create``, where Linux offers it; else unlinked, mode 0600):
frames of a kind byte and a length; the options go once, as JSON, over the
request pipe (never the command line or the environment: they hold the
auth blob); each request is the marshalled list of names; each answer is
written into the file and announced by a frame with its length. marshal,
not JSON or pickle: it loads four dictionaries of 10,000 strings in about
a millisecond, and the parent loads only what its own helper wrote from
plain strings.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from trustpool.attestation.answer import Answer
from trustpool.attestation.backends.base import AttestationBackend
from trustpool.attestation.model import HostReport, TrustLevel
from trustpool.attestation.redact import Redactor
from trustpool.exceptions import AttestationError

__all__ = ["OffloadError", "ProcessBackend", "offloadable"]

LOG = logging.getLogger(__name__)

# The frames both sides speak (the helper's side: helper.py)
#: kind (one byte) and payload length of every frame
HEADER = struct.Struct("!cQ")
CONFIG, READY, ASK, ANSWER, ERROR = b"C", b"R", b"Q", b"A", b"E"
#: seconds past the backend's own deadline the parent waits for an answer:
#: the helper's backend gives up at its deadline and says so
_MARGIN = 0.5
#: failures of the helper in a row after which it is not started again
MAX_FAILURES = 3
#: the biggest answer the parent reads from the helper's file
_MAX_ANSWER = 1 << 30
PLAIN = {level: level.value for level in TrustLevel}
#: the helper's program: ``-m`` would put the working directory first on
#: the module path, where anyone who can write there could plant a module
#: (``json.py``) that the helper imports before it is handed the auth blob;
#: ``-c`` puts ``""`` (the same directory) there, taken off before anything
#: but ``sys`` is imported
_BOOT = ("import sys\n"
         "if sys.path[:1] == ['']:\n"
         "    del sys.path[0]\n"
         "from trustpool.attestation.backends.helper import main\n"
         "sys.exit(main(sys.argv[1:]))\n")
_LEVEL_OF = {level.value: level for level in TrustLevel}


class OffloadError(AttestationError):
    """The helper process failed (not the service, not the backend): the
    client makes the same exchange in its own process instead."""


def offloadable(backend: AttestationBackend) -> str | None:
    """Why ``backend``'s exchanges cannot be made by a helper, or ``None``
    when they can.

    The helper builds the class installed under ``backend``'s name: the
    name alone proves nothing (a subclass inherits it, any class can claim
    it), so that class must be ``backend``'s own."""
    from oslo_config import cfg

    from trustpool.attestation.backends import _OVERRIDES, backend_class
    cls = type(backend)
    if not cls.answers_natively:
        return f"the {cls.name} backend does not answer natively"
    if cls.name in _OVERRIDES:
        # what the helper cannot see: it loads entry points only
        return (f"the {cls.name} backend is not installed under an entry "
                "point")
    try:
        # the entry point's class, as the helper will load it (overrides
        # were ruled out above); on a throw-away ConfigOpts
        installed = backend_class(cfg.ConfigOpts(), cls.name)
    except Exception:  # noqa: BLE001 - what cannot be loaded is not it
        return (f"the {cls.name} backend is not installed under an entry "
                "point")
    if installed is not cls:
        return (f"the {cls.name} backend in use is not the one installed "
                "under that name")
    return None


class ProcessBackend(AttestationBackend):
    """``inner``'s :meth:`attest_answer`, made by a helper process that
    builds the same backend from the same options.

    Started at the first exchange, never at construction: nothing runs for
    a client that is never refreshed ahead. Exchanges are one at a time
    (the client's refresh lock); a lock here keeps it so for any caller.
    """

    name = "process"
    answers_natively = True

    def __init__(self, inner: AttestationBackend, *,
                 command: Sequence[str] | None = None) -> None:
        super().__init__(inner.conf)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.secrets = tuple(inner.secrets)
        #: the helper's own deadline, plus its time to hand the answer over
        self.timeout = float(inner.timeout) + _MARGIN + 0.1
        self._command = list(command) if command is not None else [
            sys.executable, "-c", _BOOT]
        self._lock = threading.Lock()
        self._helper: _Helper | None = None
        self._failures = 0
        #: why the helper is not used any more, once it failed too often
        self.broken: str | None = None
        self.closed = False
        #: exchanges the helper answered (the service's failures included)
        self.answered = 0
        #: seconds the last exchange spent starting a helper: once per
        #: helper, not part of how long a refresh takes (the client's
        #: lead must not grow for it)
        self.started_in = 0.0

    def describe(self) -> str:
        return self.inner.describe()

    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        return self.attest_answer(hostnames).reports()

    def attest_answer(self, hostnames: Sequence[str]) -> Answer:
        with self._lock:
            if self.broken is not None or self.closed:
                why = self.broken or "closed"
                raise OffloadError(f"the helper process is not used: {why}")
            deadline = time.monotonic() + float(self.inner.timeout) + _MARGIN
            self.started_in = 0.0
            try:
                try:
                    helper = self._running(deadline)
                    answer = helper.ask(list(hostnames), deadline)
                except AttestationError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the machinery's
                    # an option that does not travel as JSON, no file
                    # descriptor left...: the helper's failure, not the
                    # service's
                    raise OffloadError(
                        f"the helper process failed: {type(exc).__name__}: "
                        f"{exc}") from None
                except BaseException:
                    # a green thread killed, an interrupt: the helper may
                    # be mid-answer, out of step with the next request
                    self._stop_helper(kill=True)
                    raise
            except AttestationError as exc:
                if type(exc) is not OffloadError:
                    # the service's or the backend's failure, told by a
                    # helper that works
                    self._failures = 0
                    self.answered += 1
                    raise
                self._stop_helper(kill=True)
                self._failures += 1
                if self._failures >= MAX_FAILURES:
                    self.broken = f"{self._failures} failures in a row, " \
                        f"the last: {exc}"
                    LOG.warning("Refreshes ahead of %s are made in the "
                                "scheduler's own process from now on: the "
                                "helper process failed %s", self.describe(),
                                Redactor(self.secrets)(self.broken))
                raise
            self._failures = 0
            self.answered += 1
            return answer

    def pid(self) -> int | None:
        """The helper's process id while one runs (for tests)."""
        helper = self._helper
        return None if helper is None else helper.proc.pid

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._stop_helper()

    # -- internals -------------------------------------------------------

    def _running(self, deadline: float) -> _Helper:
        """The helper, started if none runs; its start counts against the
        exchange's deadline (the client abandons the call at it)."""
        helper = self._helper
        if helper is not None and helper.owner != os.getpid():
            # a fork of the process that started it: the pipes are shared
            # with the parent's helper; leave them to it and start another
            helper.forget()
            helper = self._helper = None
        if helper is None:
            problem = offloadable(self.inner)
            if problem is not None:
                self.broken = problem
                raise OffloadError(f"the helper process is not used: "
                                   f"{problem}")
            started = time.monotonic()
            helper = self._helper = _Helper.start(
                self._command, _options_of(self.inner), deadline)
            self.started_in = time.monotonic() - started
        return helper

    def _stop_helper(self, kill: bool = False) -> None:
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.stop(kill)


def _options_of(backend: AttestationBackend) -> dict[str, Any]:
    """The backend's name and the values of the options it reads, as the
    helper needs them to build the same backend, and the values of its
    secret options (masked in whatever the helper logs, from the start:
    building the backend can log)."""
    conf = backend.conf
    groups: dict[str, dict[str, Any]] = {}
    secrets = list(backend.secrets)
    for group, opts in type(backend).CONFIG_OPTS:
        values = groups.setdefault(group, {})
        for opt in opts:
            values[opt.dest] = value = conf[group][opt.dest]
            if opt.secret and isinstance(value, str) and value:
                secrets.append(value)
    return {"backend": type(backend).name, "groups": groups,
            "secrets": secrets}


class _Helper:
    """One running helper process and the parent's ends of its pipes."""

    def __init__(self, proc: subprocess.Popen[bytes], ask_fd: int,
                 reply_fd: int, answer_fd: int) -> None:
        self.proc = proc
        self.ask_fd = ask_fd
        self.reply_fd = reply_fd
        self.answer_fd = answer_fd
        self.owner = os.getpid()

    @classmethod
    def start(cls, command: list[str], options: dict[str, Any],
              deadline: float) -> _Helper:
        ask_r, ask_w = os.pipe()
        reply_r, reply_w = os.pipe()
        answer_fd = _answer_file()
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own module
                [*command, str(ask_r), str(reply_w), str(answer_fd)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                pass_fds=(ask_r, reply_w, answer_fd), close_fds=True,
                # a session of its own: a terminal's Ctrl-C is the
                # scheduler's to handle; the helper ends when it does
                start_new_session=True)
        except OSError as exc:
            for fd in (ask_r, ask_w, reply_r, reply_w, answer_fd):
                os.close(fd)
            raise OffloadError(f"the helper process could not start: "
                               f"{exc}", "other") from None
        os.close(ask_r)
        os.close(reply_w)
        os.set_blocking(ask_w, False)
        helper = cls(proc, ask_w, reply_r, answer_fd)
        try:
            helper._send(CONFIG, json.dumps(options).encode(), deadline)
            kind, payload = helper._receive(deadline)
            if kind != READY:
                raise helper._refusal(kind, payload, "starting")
        except BaseException:
            helper.stop(kill=True)
            raise
        return helper

    def ask(self, names: list[str], deadline: float) -> Answer:
        self._send(ASK, marshal.dumps(names, 4), deadline)
        kind, payload = self._receive(deadline)
        if kind == ERROR:
            # the backend's own failure, as it would have raised it here
            cause, message = _error_of(payload)
            raise AttestationError(message, cause)  # type: ignore[arg-type]
        if kind != ANSWER or len(payload) != 8:
            raise self._refusal(kind, payload, "answering")
        (size,) = struct.unpack("!Q", payload)
        if size > _MAX_ANSWER:
            raise OffloadError(f"the helper announced an answer of {size} "
                               "bytes")
        data = os.pread(self.answer_fd, size, 0)
        if len(data) != size:
            raise OffloadError("the helper's answer file is shorter than "
                               "it announced")
        return _answer_of(data)

    def stop(self, kill: bool = False) -> None:
        """End the helper: at the end of its request pipe, or killed when
        ``kill`` (it failed: nothing it says is waited for) or when it
        does not end within a second."""
        self.forget()
        proc = self.proc
        if proc.poll() is not None:
            return
        if not kill:
            try:
                proc.wait(1.0)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        proc.wait(5.0)

    def forget(self) -> None:
        """Close this process's ends of the pipes and the answer file
        (after a fork: the parent's copies keep its helper going)."""
        for fd in (self.ask_fd, self.reply_fd, self.answer_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- frames ------------------------------------------------------

    def _send(self, kind: bytes, payload: bytes, deadline: float) -> None:
        """Write one frame by ``deadline``: the request pipe does not
        block (a request can outgrow the pipe, and a helper that stopped
        reading would hold the write for ever); ``os.writev``, not
        ``os.write``, which eventlet replaces with one that retries a
        broken pipe for ever and blocks its hub on a full one."""
        view = memoryview(HEADER.pack(kind, len(payload)) + payload)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not any(select.select(
                    [], [self.ask_fd], [self.ask_fd], left)):
                raise OffloadError("the helper process did not take the "
                                   "request in time", "timeout")
            try:
                view = view[os.writev(self.ask_fd, [view]):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise self._ended() from None
            except OSError as exc:
                raise OffloadError(f"the helper process does not take "
                                   f"requests: {exc}") from None

    def _receive(self, deadline: float) -> tuple[bytes, bytes]:
        kind, size = HEADER.unpack(self._read(HEADER.size, deadline))
        if size > 1 << 20:
            raise OffloadError(f"the helper sent a frame of {size} bytes")
        return kind, self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        chunks = []
        while size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reply_fd], [], [],
                                              left)[0]:
                raise OffloadError("the helper process did not answer in "
                                   "time", "timeout")
            try:
                chunk = os.read(self.reply_fd, size)
            except OSError as exc:
                raise OffloadError(f"the helper's answer could not be "
                                   f"read: {exc}") from None
            if not chunk:
                raise self._ended()
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _ended(self) -> OffloadError:
        try:
            status: int | None = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            status = None
        return OffloadError(f"the helper process ended (exit status "
                            f"{status})")

    def _refusal(self, kind: bytes, payload: bytes, doing: str
                 ) -> OffloadError:
        if kind == ERROR:
            return OffloadError(f"the helper process failed {doing}: "
                                f"{_error_of(payload)[1]}")
        return OffloadError(f"the helper process sent a {kind!r} frame "
                            f"{doing}")


def _answer_file() -> int:
    """A file for the helper's answers that no other user can open: in
    memory where Linux offers it (``memfd_create``), else an unlinked
    temporary file (mode 0600)."""
    try:
        return os.memfd_create("trustpool-answer")
    except (AttributeError, OSError):
        with tempfile.TemporaryFile(prefix="trustpool-answer-") as answer:
            return os.dup(answer.fileno())


def _error_of(payload: bytes) -> tuple[str, str]:
    try:
        error = json.loads(payload)
        return str(error["cause"]), str(error["message"])[:1000]
    except Exception:  # noqa: BLE001 - any garbage is the helper's fault
        return "other", "the helper process sent an unreadable error"


def _answer_of(data: bytes) -> Answer:
    """The :class:`Answer` the helper marshalled; the client checks it as
    it checks any backend's."""
    try:
        # its own helper's, from plain strings only: see the module's doc
        columns = marshal.loads(data)  # noqa: S302
        levels, reasons, vtimes, backends = columns
        answer = Answer()
        answer.levels = dict(zip(levels, map(_LEVEL_OF.__getitem__,
                                             levels.values()), strict=True))
    except Exception as exc:  # noqa: BLE001 - any garbage is the helper's
        raise OffloadError(f"the helper's answer cannot be read: "
                           f"{type(exc).__name__}") from None
    answer.reasons, answer.vtimes, answer.backends = reasons, vtimes, backends
    return answer
