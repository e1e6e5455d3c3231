# SPDX-License-Identifier: Apache-2.0
"""The helper process of :class:`~trustpool.attestation.backends.process.
ProcessBackend`: :func:`main` with ``ASK REPLY ANSWER`` (three file
descriptors its parent passes), started as ``python -c`` with the working
directory taken off the module path (``process._BOOT``).

A module of its own, imported by the helper only.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import struct
import sys
from typing import Any

from trustpool.attestation.backends.base import AttestationBackend
from trustpool.attestation.backends.process import (
    ANSWER,
    ERROR,
    HEADER,
    PLAIN,
    READY,
)
from trustpool.attestation.redact import Redactor
from trustpool.exceptions import AttestationError


def main(argv: list[str]) -> int:
    """Serve one parent: build the backend from the options it sends,
    answer each request with the backend's answer, end at the end of the
    request pipe (the parent closed it, or ended)."""
    ask_fd, reply_fd, answer_fd = (int(arg) for arg in argv[:3])
    link = _Link(ask_fd, reply_fd)
    try:
        first = link.frame()
        if first is None:
            return 1
        options = json.loads(first[1])
        # the secret options' values, known before the backend is built
        # (building it can log); the backend's own secrets are among them
        known = [str(secret) for secret in options.get("secrets", ())]
        redact = Redactor(known)
        _quiet_logs(redact)
        try:
            backend = _build(options)
        except Exception as exc:  # noqa: BLE001 - told to the parent
            link.error("other", redact(f"{type(exc).__name__}: {exc}"))
            return 1
        redact = Redactor([*known, *backend.secrets])
        link.send(READY)
        try:
            _serve(link, backend, redact, answer_fd)
        finally:
            backend.close()
    except BrokenPipeError:
        pass  # the parent has gone: nobody to answer
    return 0


class _Link:
    """The helper's ends of its two pipes, speaking frames."""

    def __init__(self, ask_fd: int, reply_fd: int) -> None:
        self.ask_fd = ask_fd
        self.reply_fd = reply_fd

    def _read(self, size: int) -> bytes | None:
        chunks = []
        while size:
            chunk = os.read(self.ask_fd, size)
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def frame(self) -> tuple[bytes, bytes] | None:
        """The next frame, or ``None`` at the end of the pipe."""
        header = self._read(HEADER.size)
        if header is None:
            return None
        kind, size = HEADER.unpack(header)
        payload = self._read(size)
        return None if payload is None else (kind, payload)

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        data = memoryview(HEADER.pack(kind, len(payload)) + payload)
        while data:
            data = data[os.write(self.reply_fd, data):]

    def error(self, cause: str, message: str) -> None:
        self.send(ERROR, json.dumps({"cause": cause,
                                     "message": message}).encode())


def _serve(link: _Link, backend: AttestationBackend, redact: Redactor,
           answer_fd: int) -> None:
    """Answer requests until the end of the request pipe."""
    while (request := link.frame()) is not None:
        try:
            # the parent's list of names
            names = marshal.loads(request[1])  # noqa: S302
            answer = backend.attest_answer(names)
            # plain strings only: marshal refuses a subclass of str, and
            # a level is one (TrustLevel)
            data = marshal.dumps((
                dict(zip(answer.levels, map(PLAIN.__getitem__,
                                            answer.levels.values()),
                         strict=True)),
                answer.reasons, answer.vtimes, answer.backends), 4)
        except AttestationError as exc:
            link.error(exc.cause, str(exc))  # masked by the backend's guard
            continue
        except Exception as exc:  # noqa: BLE001 - told to the parent
            link.error("malformed", redact(
                f"the answer cannot be handed over: {type(exc).__name__}"))
            continue
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(answer_fd, view[offset:], offset)
        link.send(ANSWER, struct.pack("!Q", len(data)))


def _build(options: dict[str, Any]) -> AttestationBackend:
    """The backend the parent uses, from its name and option values."""
    from oslo_config import cfg

    from trustpool.attestation.backends import backend_class
    conf = cfg.ConfigOpts()
    cls = backend_class(conf, options["backend"])
    conf([], project="trustpool", default_config_files=[],
         default_config_dirs=[])
    for group, values in options["groups"].items():
        for name, value in values.items():
            conf.set_override(name, value, group)
    if not cls.answers_natively:
        raise ValueError(f"the {cls.name} backend does not answer natively")
    return cls(conf)


class _Masked(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        record.exc_info = record.exc_text = None
        return True


def _quiet_logs(redact: Redactor) -> None:
    """Warnings and errors to the inherited standard error, masked: the
    parent logs every failure it is told about."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Masked(redact))
    handler.setFormatter(logging.Formatter(
        "trustpool refresh helper %(process)d: %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
