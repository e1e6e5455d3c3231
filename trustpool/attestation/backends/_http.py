# SPDX-License-Identifier: Apache-2.0
"""HTTPS plumbing shared by the HTTP backends.

Two things requests does not do on its own and a scheduler needs: a hard
deadline for the whole answer (requests' read timeout is per socket read,
so a server dripping one byte at a time could hold a scheduling request
forever), and a cap on the size of the answer.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection

from trustpool.exceptions import AttestationError

__all__ = ["HttpSettings", "JsonClient"]

_CHUNK = 256 * 1024


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """How to reach one HTTP(S) service. Holds paths, never key material."""

    verify: bool | str = True
    cert_file: str | None = None
    key_file: str | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_bytes: int = 64 * 1024 * 1024
    #: the name the server's certificate must carry, when it is not the
    #: host connected to (Keylime 6.x certificates name no IP address)
    server_name: str | None = None

    def cert(self) -> str | tuple[str, str] | None:
        if self.cert_file and self.key_file:
            return (self.cert_file, self.key_file)
        return self.cert_file


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = urllib3.connection.HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = urllib3.connection.HTTPSConnection


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """An adapter on urllib3's own connection classes.

    Test harnesses and instrumentation (wsgi-intercept in Nova's functional
    tests, for one) replace ``HTTPSConnectionPool.ConnectionCls`` for the
    whole process; the replacements can drop TLS settings. The trust
    decision must not depend on what else is loaded in nova-scheduler, so
    the pools here name their connection classes themselves.
    """

    def __init__(self, server_name: str | None = None) -> None:
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._server_name:
            kwargs["server_hostname"] = self._server_name
            kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _HTTPPool, "https": _HTTPSPool}


class JsonClient:
    """One ``requests.Session`` with TLS settings fixed at creation."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._session = requests.Session()
        adapter = _PinnedAdapter(settings.server_name)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.verify = settings.verify
        self._session.cert = settings.cert()
        # Proxies from the environment would also put another host in the
        # trust path; the attestation server is reached directly.
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, url: str, *,
                headers: dict[str, str] | None = None,
                body: Any = None) -> tuple[int, Any]:
        """Send one request and return ``(status, decoded JSON body)``.

        :raises AttestationError: on any transport or TLS failure, a status
            outside 2xx (except 404, returned to the caller), a body over
            the size cap or past the deadline, or a body that is not JSON.
        """
        settings = self.settings
        deadline = (time.monotonic() + settings.connect_timeout
                    + settings.read_timeout)
        try:
            response = self._session.request(
                method, url, headers=headers, json=body, stream=True,
                # Answers must come from the server we named: a redirect
                # would hand the trust decision to another host.
                allow_redirects=False,
                timeout=(settings.connect_timeout, settings.read_timeout))
        except requests.exceptions.SSLError as exc:
            raise AttestationError(f"TLS failure talking to {url}: "
                                   f"{_root_cause(exc)}") from None
        except requests.exceptions.Timeout:
            raise AttestationError(f"timed out talking to {url}") from None
        except requests.exceptions.RequestException as exc:
            raise AttestationError(f"cannot reach {url}: "
                                   f"{_root_cause(exc)}") from None
        with response:
            status = response.status_code
            if status == 404:
                return status, None
            if not 200 <= status < 300:
                raise AttestationError(
                    f"{url} answered HTTP {status} {response.reason}"
                    f"{_location(response)}")
            raw = self._read_body(response, url, deadline)
        try:
            return status, json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise AttestationError(
                f"{url} answered with a body that is not JSON ({kind}): "
                f"{exc}") from None

    def _read_body(self, response: requests.Response, url: str,
                   deadline: float) -> bytes:
        limit = self.settings.max_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise AttestationError(
                f"{url} announced a {declared}-byte answer, over the "
                f"{limit}-byte limit (max_response_bytes)")
        sock = _socket_of(response)
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AttestationError(self._late(url))
                if sock is not None:
                    sock.settimeout(min(remaining, self.settings.read_timeout))
                chunk = response.raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise AttestationError(
                        f"{url} sent more than {limit} bytes "
                        f"(max_response_bytes)")
                parts.append(chunk)
        except AttestationError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3 has many types
            if _is_timeout(exc):
                if time.monotonic() >= deadline - 0.05:
                    raise AttestationError(self._late(url)) from None
                raise AttestationError(
                    f"{url} sent nothing for {self.settings.read_timeout:g}s "
                    f"(read_timeout)") from None
            raise AttestationError(
                f"connection broke while reading the answer of {url}: "
                f"{_root_cause(exc)}") from None
        return b"".join(parts)

    def _late(self, url: str) -> str:
        budget = self.settings.connect_timeout + self.settings.read_timeout
        return (f"{url} did not finish its answer within {budget:g}s "
                f"(connect_timeout + read_timeout)")


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed response, to tighten its timeout."""
    conn = getattr(response.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _is_timeout(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, (TimeoutError, socket.timeout)) or (
                "timed out" in str(exc).lower()):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _root_cause(exc: BaseException) -> str:
    """The innermost message, which is the one that says what went wrong."""
    for _ in range(10):
        inner = (getattr(exc, "reason", None) if isinstance(
            getattr(exc, "reason", None), BaseException) else None)
        if inner is None and exc.args and isinstance(exc.args[0],
                                                     BaseException):
            inner = exc.args[0]
        inner = inner or exc.__cause__
        if inner is None:
            break
        exc = inner
    text = str(exc) or type(exc).__name__
    return text[:300]


def _location(response: requests.Response) -> str:
    target = response.headers.get("Location")
    return f" (redirect to {target!r} not followed)" if target else ""
