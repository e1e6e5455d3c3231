"""The contract of every attestation backend, proven for each of them.

castellan's shape: :class:`BackendContract` states once what
``AttestationBackend.attest`` and ``list_hosts`` promise (their docstrings
in ``trustpool/attestation/backends/base.py``) as test methods; these
tests should pass against any backend. Each backend has one subclass whose
``service`` fixture starts the real thing it talks to (a loopback HTTPS
server, a trust file on disk) and knows how to fill it with trust levels,
break it and hang it.

Backends are built only through public names (``load_backend`` and the
``trustpool.attestation`` exports) from a config file, the way nova.conf
reaches them: oslo.config reads a group's values from the parsed files
whenever the group gets registered, so this does not depend on when or by
whom the backend's options are registered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
import traceback
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest
from oslo_config import cfg

from trustpool.attestation import (
    AttestationBackend,
    AttestationError,
    HostReport,
    TrustLevel,
    load_backend,
)

from tests.support import leakcheck
from tests.support.oat_server import OATServer, Request, Response

TRUSTED, UNTRUSTED, UNKNOWN = (TrustLevel.TRUSTED, TrustLevel.UNTRUSTED,
                               TrustLevel.UNKNOWN)

#: What the service knows. "node-pending" is a host it knows and cannot
#: vouch for either way (OAT "unknown", Keylime PENDING).
KNOWN = {"node-t1": TRUSTED, "node-t2": TRUSTED, "node-u1": UNTRUSTED,
         "node-pending": UNKNOWN, "node-other-t": TRUSTED,
         "node-other-u": UNTRUSTED}
#: A subset of it, plus one host the service never heard of.
ASKED = ["node-t1", "node-t2", "node-u1", "node-pending", "node-ghost"]
#: Odd names a caller may ask about: Nova keeps host names in
#: String(255) columns, so none is longer.
ASKED_ODD = ["x" * 255, "odd\x1b[2J\nname\u202e"]
#: Odd names a garbled or hostile service may send: any length.
SERVED_ODD = ["y" * 600, "evil\x1b[2J\nname\u202e"]

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
#: How much later than ``backend.timeout`` a call may end.
MARGIN = 1.0
#: Longest reason or error message that is still one sane log line.
MAX_MESSAGE = 500

AUTH_BLOB = "tp-contract-auth-blob-5f1e0c7a"
AGENT_V = "dHJ1c3Rwb29sLWNvbnRyYWN0LWtleS1oYWxm"  # a Keylime agent's V half
leakcheck.register(AUTH_BLOB)
leakcheck.register(AGENT_V)


# -- what every check needs ---------------------------------------------


@dataclasses.dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


def call_within(limit: float, function: Callable[..., Any],
                *args: Any) -> Outcome:
    """Run ``function`` in a thread and fail if it runs past ``limit``:
    a backend that hangs fails its test instead of hanging the suite."""
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.value = function(*args)
        except BaseException as exc:  # noqa: B036 - judged by the caller
            outcome.error = exc

    thread = threading.Thread(target=run, daemon=True,
                              name="contract-call")
    started = time.monotonic()
    thread.start()
    thread.join(limit)
    outcome.seconds = time.monotonic() - started
    assert not thread.is_alive(), (
        f"{getattr(function, '__name__', function)} still running after "
        f"{limit:g}s")
    return outcome


def unsafe(text: str, backend: AttestationBackend) -> list[str]:
    """What makes ``text`` unfit for a log line, if anything."""
    problems = []
    if leakcheck.scan_text(text) or any(
            secret and secret in text for secret in backend.secrets):
        problems.append("holds a secret (auth blob, key or agent V half)")
    controls = sorted({c for c in text
                       if unicodedata.category(c).startswith("C")})
    if controls:
        problems.append(f"holds control/format characters {controls!r}")
    if len(text) > MAX_MESSAGE:
        problems.append(f"is {len(text)} characters long "
                        f"(at most {MAX_MESSAGE})")
    return problems


def shown(text: str, backend: AttestationBackend) -> str:
    """``text`` for a failure message: shortened, secrets masked (a
    failing test must not print what it caught leaking)."""
    for secret in [*leakcheck.scan_text(text), *backend.secrets]:
        if secret:
            text = text.replace(secret, "<SECRET>")
    return repr(text[:300])


def assert_safe_error(exc: BaseException,
                      backend: AttestationBackend) -> None:
    """The message is one safe log line; a traceback logged with it
    (chained exceptions included) holds no secret either."""
    problems = unsafe(str(exc), backend)
    if problems:
        # no traceback: pytest would show the exception among the frame's
        # arguments, secret and all
        pytest.fail(f"error message {shown(str(exc), backend)} {problems}",
                    pytrace=False)
    logged = "".join(traceback.format_exception(
        type(exc), exc, exc.__traceback__))
    if leakcheck.scan_text(logged):
        pytest.fail("a secret is in the traceback logged with "
                    f"{shown(str(exc), backend)}", pytrace=False)


def assert_well_formed(answer: Any, asked: Sequence[str],
                       backend: AttestationBackend) -> None:
    assert isinstance(answer, dict), f"attest returned {type(answer)}"
    strangers = set(answer) - set(asked)
    assert not strangers, f"answers about names not asked: {strangers!r}"
    for name, report in answer.items():
        assert isinstance(report, HostReport), (name, type(report))
        assert report.hostname == name
        assert isinstance(report.level, TrustLevel), (name, report.level)
        assert isinstance(report.reason, str), (name, report.reason)
        problems = unsafe(report.reason, backend)
        if problems:
            pytest.fail(f"reason for {name[:80]!r}: "
                        f"{shown(report.reason, backend)} {problems}",
                        pytrace=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each backend names the ways its service breaks and hangs."""
    cls = metafunc.cls
    if cls is None:
        return
    if "failure" in metafunc.fixturenames:
        metafunc.parametrize("failure", cls.FAILURES)
    if "hang" in metafunc.fixturenames:
        metafunc.parametrize("hang", cls.HANGS)
    if "broken" in metafunc.fixturenames:
        metafunc.parametrize("broken",
                             list(dict.fromkeys(cls.FAILURES + cls.HANGS)))


# -- the contract ---------------------------------------------------------


class BackendContract:
    """These tests should pass against any attestation backend.

    A subclass provides the ``service`` fixture (a :class:`Service`) and
    names the ways its service breaks (``FAILURES``: down, garbage) and
    hangs (``HANGS``: accepts, never answers).
    """

    FAILURES: ClassVar[tuple[str, ...]] = ()
    HANGS: ClassVar[tuple[str, ...]] = ()
    #: ``backend.timeout`` with this suite's timeouts, where the backend
    #: documents it (HTTP backends: connect_timeout + read_timeout)
    expected_timeout: ClassVar[float | None] = None

    @pytest.fixture
    def service(self) -> Service:
        raise NotImplementedError("each backend's subclass starts its "
                                  "service")

    @pytest.fixture
    def backend(self, service: Service) -> Iterator[AttestationBackend]:
        service.serve(KNOWN)
        backend = service.backend()
        yield backend
        backend.close()

    def attest(self, backend: AttestationBackend,
               names: Sequence[str]) -> Outcome:
        return call_within(backend.timeout + MARGIN, backend.attest,
                           list(names))

    def break_after(self, service: Service, backend: AttestationBackend,
                    how: str, warm: bool) -> None:
        """Break the service, after one good answer when ``warm`` (what a
        backend learnt or kept from it must not hide the failure)."""
        if warm:
            outcome = self.attest(backend, ASKED)
            assert outcome.error is None, outcome.error
        service.break_(how)

    # attest: what it answers

    def test_is_a_backend(self, backend):
        assert isinstance(backend, AttestationBackend)
        assert 0 < backend.timeout < float("inf")
        if self.expected_timeout is not None:
            assert backend.timeout == pytest.approx(self.expected_timeout)

    def test_answers_only_names_asked(self, backend):
        outcome = self.attest(backend, ASKED)
        assert outcome.error is None, outcome.error
        assert_well_formed(outcome.value, ASKED, backend)

    def test_levels_say_what_the_service_says(self, backend):
        outcome = self.attest(backend, ASKED)
        assert outcome.error is None, outcome.error
        levels = {name: report.level for name, report in outcome.value.items()}
        assert levels["node-t1"] is TRUSTED
        assert levels["node-t2"] is TRUSTED
        assert levels["node-u1"] is UNTRUSTED
        assert levels.get("node-pending", UNKNOWN) is UNKNOWN
        assert levels.get("node-ghost", UNKNOWN) is UNKNOWN

    def test_one_name_at_a_time(self, backend):
        for name in ASKED:
            outcome = self.attest(backend, [name])
            assert outcome.error is None, (name, outcome.error)
            assert_well_formed(outcome.value, [name], backend)
            if KNOWN.get(name, UNKNOWN) is not UNKNOWN:
                assert outcome.value[name].level is KNOWN[name]

    def test_odd_names_asked_get_safe_answers(self, backend):
        asked = [*ASKED, *ASKED_ODD]
        outcome = self.attest(backend, asked)
        if outcome.error is not None:
            assert isinstance(outcome.error, AttestationError), \
                repr(outcome.error)
            assert_safe_error(outcome.error, backend)
        else:
            assert_well_formed(outcome.value, asked, backend)

    def test_a_service_answering_about_everyone(self, service, backend):
        """It knows hosts (some with odd names) that were not asked about
        and names them all: the backend leaves them out or refuses the
        answer, safely."""
        service.serve({**KNOWN, **dict.fromkeys(SERVED_ODD, TRUSTED)})
        service.answer_about_everyone()
        outcome = self.attest(backend, ASKED)
        if outcome.error is not None:
            assert isinstance(outcome.error, AttestationError), \
                repr(outcome.error)
            assert_safe_error(outcome.error, backend)
        else:
            assert_well_formed(outcome.value, ASKED, backend)

    # attest: how it fails

    @pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
    def test_failure_raises_attestation_error(self, service, backend,
                                              failure, warm):
        self.break_after(service, backend, failure, warm)
        outcome = self.attest(backend, ASKED)
        assert outcome.error is not None, \
            f"answered {outcome.value!r} from a service that is {failure}"
        assert isinstance(outcome.error, AttestationError), \
            repr(outcome.error)
        assert_safe_error(outcome.error, backend)

    def test_a_hung_service_costs_at_most_the_timeout(self, service,
                                                      backend, hang):
        self.break_after(service, backend, hang, warm=True)
        outcome = self.attest(backend, ASKED)
        assert isinstance(outcome.error, AttestationError), \
            repr(outcome.error or outcome.value)
        assert outcome.seconds <= backend.timeout + MARGIN
        assert_safe_error(outcome.error, backend)

    # list_hosts

    def test_list_hosts_lists_names_or_says_it_cannot(self, backend):
        outcome = call_within(backend.timeout + MARGIN, backend.list_hosts)
        if isinstance(outcome.error, NotImplementedError):
            return
        assert outcome.error is None, repr(outcome.error)
        assert isinstance(outcome.value, list)
        assert all(isinstance(name, str) for name in outcome.value)
        assert set(outcome.value) == set(KNOWN)

    def test_list_hosts_on_a_broken_service(self, service, backend,
                                            broken):
        service.break_(broken)
        outcome = call_within(backend.timeout + MARGIN, backend.list_hosts)
        assert isinstance(outcome.error,
                          (NotImplementedError, AttestationError)), \
            repr(outcome.error or outcome.value)
        assert_safe_error(outcome.error, backend)

    def test_configured_secrets_are_declared(self, service, backend):
        for secret in service.configured_secrets:
            assert secret in backend.secrets


# -- the services ---------------------------------------------------------


class Service:
    """One attestation service, and the settings its backend reaches it
    with."""

    backend_name: ClassVar[str]
    #: option values the backend must declare in ``secrets``
    configured_secrets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, conf: cfg.ConfigOpts, tmp_path: Any) -> None:
        self.conf = conf
        self.tmp_path = tmp_path

    def settings(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def serve(self, levels: Mapping[str, TrustLevel]) -> None:
        raise NotImplementedError

    def answer_about_everyone(self) -> None:
        """Answer about every known host, whatever was asked."""

    def break_(self, how: str) -> None:
        getattr(self, "break_" + how.replace("-", "_"))()

    def backend(self) -> AttestationBackend:
        lines = []
        for group, values in self.settings().items():
            lines.append(f"[{group}]")
            lines += [f"{key} = {value}" for key, value in values.items()]
        path = self.tmp_path / "trustpool.conf"
        path.write_text("\n".join(lines) + "\n")
        self.conf(["--config-file", str(path)], project="trustpool",
                  default_config_files=[])
        return load_backend(self.conf, self.backend_name)

    def close(self) -> None:
        pass


class HTTPService(Service):
    """A real HTTPS server on 127.0.0.1 speaking one service's protocol."""

    def __init__(self, conf: cfg.ConfigOpts, tmp_path: Any, pki: dict,
                 *, client_ca: Any = None) -> None:
        super().__init__(conf, tmp_path)
        self.server = OATServer(pki["server"].cert, pki["server"].key,
                                client_ca=client_ca)
        self.server.responder = self.answer
        self.server.start()
        self.port = self.server.port
        self._listener: socket.socket | None = None

    def timeouts(self) -> dict[str, Any]:
        return {"connect_timeout": CONNECT_TIMEOUT,
                "read_timeout": READ_TIMEOUT}

    def answer(self, request: Request) -> Response | None:
        """The service's healthy answer."""
        raise NotImplementedError

    def passes(self, request: Request) -> bool:
        """Requests still answered when the service gives garbage
        (discovery, so that the garbage reaches the parser that matters)."""
        return False

    def _misbehave(self, respond: Callable[[Request], Response | None]
                   ) -> None:
        def responder(request: Request) -> Response | None:
            if self.passes(request):
                return self.answer(request)
            return respond(request)
        self.server.responder = responder

    @staticmethod
    def _raw(request: Request, data: bytes) -> None:
        request.handler.close_connection = True
        request.handler.wfile.write(data)
        request.handler.wfile.flush()

    # down

    def break_refused(self) -> None:
        self.server.stop()

    # garbage

    def break_not_json(self) -> None:
        self._misbehave(lambda r: Response(
            200, b"<html>\x1b[31mnot json\x00</html>",
            {"Content-Type": "text/html\x1b[2J"}))

    def break_wrong_shape(self) -> None:
        body = self.wrong_shape_body()
        self._misbehave(lambda r: Response(200, body))

    def break_duplicate_keys(self) -> None:
        body = self.duplicate_keys_body()
        self._misbehave(lambda r: Response(200, body))

    def break_error_status(self) -> None:
        self._misbehave(lambda r: self._raw(
            r, b"HTTP/1.1 503 Busy\x1b[2J\x07 " + b"z" * 900 +
            b"\r\nContent-Length: 2\r\n\r\n{}"))

    def break_truncated(self) -> None:
        self._misbehave(lambda r: self._raw(
            r, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"hosts\": ["))

    def wrong_shape_body(self) -> bytes:
        raise NotImplementedError

    def duplicate_keys_body(self) -> bytes:
        raise NotImplementedError

    # hangs: every request, discovery included

    def break_stall(self) -> None:
        """Read the request, never answer."""
        def stall(request: Request) -> None:
            request.handler.close_connection = True
            self.server.stopping.wait(30)
        self.server.responder = stall

    def break_drip(self) -> None:
        """A status line, then a header one byte at a time, for ever."""
        def drip(request: Request) -> None:
            self._raw(request, b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while not self.server.stopping.wait(0.1):
                request.handler.wfile.write(b"z")
                request.handler.wfile.flush()
        self.server.responder = drip

    def break_silent_listener(self) -> None:
        """The port accepts TCP connections (the kernel's backlog) and
        nothing ever answers: the TLS handshake never ends."""
        self.server.stop()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener

    def close(self) -> None:
        self.server.stop()
        if self._listener is not None:
            self._listener.close()


HTTP_FAILURES = ("refused", "not-json", "wrong-shape", "duplicate-keys",
                 "error-status", "truncated")
HTTP_HANGS = ("stall", "drip", "silent-listener")


class OATService(HTTPService):
    """OpenAttestation PollHosts with an auth blob."""

    backend_name = "oat"
    configured_secrets = (AUTH_BLOB,)

    def __init__(self, conf: cfg.ConfigOpts, tmp_path: Any,
                 pki: dict) -> None:
        self.ca = pki["ca"].cert_path
        super().__init__(conf, tmp_path, pki)

    def settings(self) -> dict[str, dict[str, Any]]:
        return {"trusted_computing": {
            **self.timeouts(),
            "attestation_server": "127.0.0.1",
            "attestation_port": self.port,
            "attestation_server_ca_file": self.ca,
            "attestation_auth_blob": AUTH_BLOB}}

    def serve(self, levels: Mapping[str, TrustLevel]) -> None:
        self.server.levels = {name: level.value
                              for name, level in levels.items()}

    def answer(self, request: Request) -> Response:
        return self.server.poll_hosts(request)

    def answer_about_everyone(self) -> None:
        def everyone(request: Request) -> Response:
            hosts = [{"host_name": name, "trust_lvl": level}
                     for name, level in self.server.levels.items()]
            return Response(200, json.dumps({"hosts": hosts}).encode())
        self.server.responder = everyone

    def wrong_shape_body(self) -> bytes:
        return b'{"hosts": {"node-t1": "trusted"}}'

    def duplicate_keys_body(self) -> bytes:
        return (b'{"hosts": [{"host_name": "node-t1", '
                b'"trust_lvl": "untrusted", "trust_lvl": "trusted"}]}')

    def break_contradiction(self) -> None:
        """One host named twice, with two levels."""
        body = json.dumps({"hosts": [
            {"host_name": "node-t1", "trust_lvl": "trusted"},
            {"host_name": "node-t1", "trust_lvl": "untrusted"}]}).encode()
        self._misbehave(lambda r: Response(200, body))

    def break_echo(self) -> None:
        """Refuses the request quoting the auth blob it was sent, as some
        servers' error pages do."""
        def echo(request: Request) -> None:
            blob = request.headers.get("x-auth-blob", "")
            self._raw(request, f"HTTP/1.1 401 bad auth blob {blob}\r\n"
                      "Content-Length: 2\r\n\r\n{}".encode())
        self._misbehave(echo)


class KeylimeService(HTTPService):
    """A Keylime verifier stand-in: API discovery, bulk and id-list agent
    listings, client certificates required (as Keylime 6.6 does)."""

    backend_name = "keylime"
    _RECORDS = {
        TRUSTED: {"operational_state": 3, "attestation_status": "PASS"},
        UNTRUSTED: {"operational_state": 9, "attestation_status": "FAIL"},
        UNKNOWN: {"operational_state": 0, "attestation_status": "PENDING"},
    }

    def __init__(self, conf: cfg.ConfigOpts, tmp_path: Any,
                 pki: dict) -> None:
        self.pki = pki
        self.records: dict[str, dict[str, Any]] = {}
        super().__init__(conf, tmp_path, pki, client_ca=pki["ca"].cert_path)

    def settings(self) -> dict[str, dict[str, Any]]:
        return {"trusted_computing": self.timeouts(),
                "keylime": {
                    "verifier_host": "127.0.0.1",
                    "verifier_port": self.port,
                    "api_version": "auto",
                    "ca_file": self.pki["ca"].cert_path,
                    "client_cert_file": self.pki["client"].cert,
                    "client_key_file": self.pki["client"].key}}

    def serve(self, levels: Mapping[str, TrustLevel]) -> None:
        now = int(time.time())
        self.records = {
            name: {**self._RECORDS[level], "v": AGENT_V,
                   "last_successful_attestation": now}
            for name, level in levels.items()}

    def answer(self, request: Request) -> Response:
        if request.path == "/version":
            return _keylime(200, {"current_version": "2.3",
                                  "supported_versions": ["2.1", "2.3"]})
        if request.path == "/v2.3/agents/?bulk=True":
            return _keylime(200, self.records)
        if request.path == "/v2.3/agents/":
            return _keylime(200, {"uuids": sorted(self.records)})
        return _keylime(404, {})

    def passes(self, request: Request) -> bool:
        return request.path == "/version"

    def wrong_shape_body(self) -> bytes:
        return b'{"code": 200, "results": {"node-t1": ["PASS"]}}'

    def duplicate_keys_body(self) -> bytes:
        return (b'{"code": 200, "results": {"node-t1": {'
                b'"attestation_status": "FAIL", '
                b'"attestation_status": "PASS"}}}')


def _keylime(code: int, results: Any) -> Response:
    return Response(code, json.dumps({"code": code, "status": "",
                                      "results": results}).encode())


class FileService(Service):
    """A trust file, rewritten the way a pipeline does (write, rename)."""

    backend_name = "file"

    def __init__(self, conf: cfg.ConfigOpts, tmp_path: Any) -> None:
        super().__init__(conf, tmp_path)
        self.path = tmp_path / "trust-levels.json"

    def settings(self) -> dict[str, dict[str, Any]]:
        return {"trust_file": {"path": self.path}}

    def _write(self, data: bytes) -> None:
        self._remove()
        new = self.path.with_suffix(".new")
        new.write_bytes(data)
        new.chmod(0o600)
        os.replace(new, self.path)

    def _remove(self) -> None:
        if self.path.is_dir():
            self.path.rmdir()
        elif os.path.lexists(self.path):
            self.path.unlink()

    def serve(self, levels: Mapping[str, TrustLevel]) -> None:
        self._write(json.dumps({"hosts": {
            name: level.value for name, level in levels.items()}}).encode())

    def break_missing(self) -> None:
        self._remove()

    def break_directory(self) -> None:
        self._remove()
        self.path.mkdir()

    def break_fifo(self) -> None:
        """A FIFO with no writer: opening it to read blocks for ever."""
        self._remove()
        os.mkfifo(self.path)

    def break_not_json(self) -> None:
        self._write(b"\x1b[31mnot json\x00\xff")

    def break_wrong_shape(self) -> None:
        self._write(b'{"hosts": ["node-t1"]}')

    def break_duplicate_keys(self) -> None:
        self._write(b'{"hosts": {"node-t1": "untrusted", '
                    b'"node-t1": "trusted"}}')


# -- one subclass per backend ---------------------------------------------


class TestOATBackend(BackendContract):
    FAILURES = (*HTTP_FAILURES, "contradiction", "echo")
    HANGS = HTTP_HANGS
    expected_timeout = CONNECT_TIMEOUT + READ_TIMEOUT

    @pytest.fixture
    def service(self, conf, tmp_path, pki) -> Iterator[Service]:
        service = OATService(conf, tmp_path, pki)
        yield service
        service.close()


class TestKeylimeBackend(BackendContract):
    FAILURES = HTTP_FAILURES
    HANGS = HTTP_HANGS
    expected_timeout = CONNECT_TIMEOUT + READ_TIMEOUT

    @pytest.fixture
    def service(self, conf, tmp_path, pki) -> Iterator[Service]:
        service = KeylimeService(conf, tmp_path, pki)
        yield service
        service.close()


class TestFileBackend(BackendContract):
    FAILURES = ("missing", "directory", "fifo", "not-json", "wrong-shape",
                "duplicate-keys")
    HANGS = ("fifo",)

    @pytest.fixture
    def service(self, conf, tmp_path) -> Iterator[Service]:
        service = FileService(conf, tmp_path)
        yield service
        service.close()
