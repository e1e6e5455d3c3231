# SPDX-License-Identifier: Apache-2.0
"""Local files a backend reads: opened safely, and PEM files checked.

One way to open them for everyone who does (the file backend at every
request, start-up validation and ``trustpool check-config``), so that the
same promises hold everywhere: only a regular file is read, opening never
blocks (a FIFO or a device put in a file's place would hold the reader for
as long as its other end likes), and reading stops at a size limit (a huge
file cannot hang the reader or fill its memory).

PEM files are checked with the ``ssl`` module, so that what is accepted is
what OpenSSL, under requests, will load at the first request. Messages
name the path and say what is wrong; never what is in the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import ssl
import stat as stat_mod
from collections.abc import Iterator

from trustpool.exceptions import AttestationError, Cause

__all__ = ["MAX_PEM_BYTES", "LocalFileError", "ca_problem",
           "cert_chain_problem", "open_regular", "read_regular"]

#: Largest PEM file read: a system CA bundle is a few hundred kilobytes.
MAX_PEM_BYTES = 8 * 1024 * 1024
_PEM_LIMIT = "the largest PEM file trustpool reads"
_READ_CHUNK = 1024 * 1024

_KINDS = ((stat_mod.S_ISDIR, "a directory"), (stat_mod.S_ISFIFO, "a FIFO"),
          (stat_mod.S_ISSOCK, "a socket"),
          (stat_mod.S_ISCHR, "a character device"),
          (stat_mod.S_ISBLK, "a block device"))


class LocalFileError(AttestationError):
    """A local file cannot be used.

    ``str()`` is a whole sentence naming the file; :attr:`problem` says
    what is wrong without the path, for messages that name the option
    and the path themselves.
    """

    def __init__(self, message: str, path: str, problem: str,
                 cause: Cause = "other") -> None:
        super().__init__(message, cause)
        self.path = path
        self.problem = problem


def require_regular(path: str, mode: int, what: str) -> None:
    """Refuse anything but a regular file (a symbolic link to one is
    followed before this is asked).

    :raises LocalFileError: naming what ``path`` is instead.
    """
    if stat_mod.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)),
                "not a file")
    raise LocalFileError(
        f"{what} {path} is {kind}, not a regular file; it is not read",
        path, f"{kind}, not a regular file")


def os_problem(exc: OSError) -> str:
    """What an ``OSError`` from opening a file means, in a few words."""
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "not readable by this user"
    if exc.errno == errno.ENOTDIR:
        return "no such file (a part of the path is not a directory)"
    return f"cannot be read ({exc.strerror or type(exc).__name__})"


@contextlib.contextmanager
def open_regular(path: str, max_bytes: int, what: str,
                 limit: str = _PEM_LIMIT
                 ) -> Iterator[tuple[int, os.stat_result]]:
    """An open descriptor on ``path`` and its status, for a regular file
    of at most ``max_bytes`` that this process may read.

    Opened non-blocking: opening a FIFO for reading otherwise waits until
    a writer comes. The checks are made on the open descriptor, so a file
    swapped in after an earlier look is caught too.

    :param what: what the file is, for messages ("trust file").
    :param limit: what sets ``max_bytes``, for messages.
    :raises LocalFileError: when it cannot be used.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LocalFileError(f"cannot read {what} {path}: {exc.strerror}",
                             path, os_problem(exc)) from None
    except ValueError:  # a NUL character: no file has such a name
        raise LocalFileError(f"{what} {path!r} is not a usable path", path,
                             "not a usable path (a NUL character)") from None
    try:
        try:
            opened = os.fstat(fd)
        except OSError as exc:
            raise LocalFileError(
                f"cannot read {what} {path}: {exc.strerror}", path,
                os_problem(exc)) from None
        require_regular(path, opened.st_mode, what)
        if opened.st_size > max_bytes:
            raise _too_big(path, max_bytes, what, limit)
        yield fd, opened
    finally:
        os.close(fd)


def read_regular(path: str, max_bytes: int, what: str,
                 limit: str = _PEM_LIMIT) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` and the status of the file actually read.

    :raises LocalFileError: as :func:`open_regular` does, and when the file
        grows past ``max_bytes`` while it is read.
    """
    with open_regular(path, max_bytes, what, limit) as (fd, opened):
        parts: list[bytes] = []
        size = 0
        try:
            while size <= max_bytes:
                chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - size))
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise LocalFileError(
                f"cannot read {what} {path}: {exc.strerror}", path,
                os_problem(exc)) from None
    if size > max_bytes:  # it grew while it was read
        raise _too_big(path, max_bytes, what, limit)
    return b"".join(parts), opened


def _too_big(path: str, max_bytes: int, what: str,
             limit: str) -> LocalFileError:
    return LocalFileError(
        f"{what} {path} has more than {max_bytes} bytes ({limit})", path,
        f"more than {max_bytes} bytes ({limit})", "malformed")


def ca_problem(path: str) -> str | None:
    """Why ``path`` is not a PEM file of CA certificates OpenSSL can
    load, or ``None``.

    :raises LocalFileError: when it cannot be read at all.
    """
    data, _ = read_regular(path, MAX_PEM_BYTES, "CA file")
    return _certificates_problem(data)


def _certificates_problem(data: bytes) -> str | None:
    if not data.strip():
        return "an empty file"
    # cadata takes ASCII text; bytes outside it can only be in the text
    # around the PEM blocks, which OpenSSL skips.
    text = data.decode("latin-1").encode("ascii", "replace").decode("ascii")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        return f"holds no PEM certificate that OpenSSL can load{_why(exc)}"
    return None


def cert_chain_problem(cert_path: str, key_path: str | None
                       ) -> tuple[str, str] | None:
    """Why the client certificate and its key cannot be used, as
    ``("cert" or "key", problem)``, or ``None``.

    ``key_path`` ``None``: the key must be in the certificate file, as
    requests then expects. A key encrypted with a passphrase is refused:
    nothing can type it in for nova-scheduler.

    :raises LocalFileError: when a file cannot be read at all.
    """
    data, _ = read_regular(cert_path, MAX_PEM_BYTES, "client certificate")
    problem = _certificates_problem(data)
    if problem:
        return "cert", problem
    if key_path:
        with open_regular(key_path, MAX_PEM_BYTES, "private key") as (
                key_fd, _):
            return _chain_problem(cert_path, _reopenable(key_path, key_fd),
                                  has_key_file=True)
    return _chain_problem(cert_path, None, has_key_file=False)


def _chain_problem(cert_path: str, key_path: str | None,
                   has_key_file: bool) -> tuple[str, str] | None:
    asked = []

    def no_passphrase() -> bytes:
        asked.append(True)
        return b""

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with open_regular(cert_path, MAX_PEM_BYTES, "client certificate") as (
            cert_fd, _):
        try:
            context.load_cert_chain(_reopenable(cert_path, cert_fd),
                                    key_path, password=no_passphrase)
        except (ssl.SSLError, ValueError, OSError) as exc:
            where = "key" if has_key_file else "cert"
            if asked:
                return where, ("a private key encrypted with a "
                               "passphrase, which nothing can type in for "
                               "the service")
            if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
                return "key", "not the private key of the client certificate"
            if has_key_file:
                return "key", ("holds no PEM private key that OpenSSL can "
                               f"load{_why(exc)}")
            return "cert", ("holds no PEM private key after the certificate"
                            ", and no key file is set")
    return None


def _reopenable(path: str, fd: int) -> str:
    """A name OpenSSL can open that is the file already opened (and
    checked) as ``fd``: ``load_cert_chain`` takes only names, and opening
    the configured name again could meet a FIFO swapped in meanwhile."""
    name = f"/proc/self/fd/{fd}"
    return name if os.path.exists(name) else path


def _why(exc: BaseException) -> str:
    """OpenSSL's reason code, if it gave one (never file content)."""
    reason = getattr(exc, "reason", None)
    return f" (OpenSSL: {reason})" if isinstance(reason, str) else ""
