"""The four invariants, for every answer hypothesis makes up.

A real TLS server on 127.0.0.1 (:mod:`tests.fuzz.raw_server`) plays the
raw bytes of each generated exchange (:mod:`tests.fuzz.strategies`) to the
real entry points, each built from a real nova.conf-style file:

- ``AttestationClient.levels(names)``;
- ``TrustedFilter.filter_all(hosts, spec)`` for a flavor asking for
  ``trust:trusted_host=trusted`` (needs Nova, as in ``tox -e fuzz``);
- the CLI, ``trustpool --config-file F status [--format F] HOST...``.

For the OAT (PollHosts) and the Keylime (verifier REST) backends alike,
every example must hold:

1. no trust without proof: a host reported trusted (passed by the filter,
   exit 0 or a ``trusted`` row from the CLI) is one the oracle proves;
2. nothing escapes: the call returns, whatever it met; the CLI exits 0, 1
   or 2, with exactly one ``trustpool: ...`` line when it exits 2 and never
   a traceback;
3. bounded time: the call returns within connect_timeout + read_timeout
   + :data:`MARGIN`;
4. no secret in any output: no log record, host reason, audit event, CLI
   output or start-up error holds an auth blob, a key line, an agent's V
   half, or any 8 characters of a secret in a row (a truncated secret
   escapes a redactor that only knows the whole value).

Plus one check that keeps the tier honest: a plain, well-formed, on-time
answer ("clean") must be taken exactly as the oracle reads it, so the
product cannot pass the tier by trusting nothing.

A violation fails with an AssertionError subclass named after its
category (``inv1:vtime:future``, ``inv3:slow``...), so hypothesis shrinks
and reports each kind of counter-example separately.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pathlib
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool.cmd import main as cli
from trustpool.conf import make_client
from trustpool.exceptions import ConfigurationError

from tests.fuzz import strategies as S
from tests.fuzz.conftest import LogCapture, examples_per_test
from tests.fuzz.raw_server import RawServer
from tests.support import leakcheck

try:
    from nova import objects

    from trustpool.filter import TrustedFilter
except ImportError:  # pragma: no cover - the fuzz env installs Nova
    objects = None
    TrustedFilter = None
else:
    objects.register_all()

#: seconds an entry point may take beyond connect_timeout + read_timeout
MARGIN = 1.5
BOUND = S.DEADLINE + MARGIN
BACKENDS = ["oat", "keylime"]

#: a line oslo.log writes (the CLI logs to standard error)
_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ "
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL|TRACE) ")

needs_nova = pytest.mark.skipif(TrustedFilter is None,
                                reason="Nova is not installed")


# -- violations ---------------------------------------------------------------

_KINDS: dict[str, type[AssertionError]] = {}


def _kind(category: str) -> type[AssertionError]:
    """One AssertionError subclass per category: hypothesis tells failures
    apart by exception type, so it shrinks each kind on its own."""
    if category not in _KINDS:
        _KINDS[category] = type(f"Violation[{category}]", (AssertionError,),
                                {})
    return _KINDS[category]


class Findings:
    def __init__(self, example: S.Example, entry: str) -> None:
        self.example = example
        self.entry = entry
        self.items: list[tuple[str, str]] = []

    def add(self, category: str, message: str) -> None:
        self.items.append((category, message))

    def raise_first(self) -> None:
        if not self.items:
            return
        for category, message in self.items:
            note(f"VIOLATION {category}: {message}")
        category = self.items[0][0]
        detail = "\n".join(f"  {c}: {m}" for c, m in self.items)
        raise _kind(category)(
            f"{self.entry}, {self.example.backend}: {len(self.items)} "
            f"violation(s)\n{detail}")


# -- secrets ------------------------------------------------------------------

_WINDOW = 8


def _windows() -> re.Pattern[str]:
    """Every run of 8 characters of every secret, in the spellings a
    message can quote it with."""
    found: set[str] = set()
    for secret in [*S.BLOBS.values(), S.V_HALF]:
        for line in secret.splitlines():
            line = line.strip()
            for form in {line, repr(line)[1:-1], json.dumps(line)[1:-1]}:
                for i in range(len(form) - _WINDOW + 1):
                    found.add(form[i:i + _WINDOW])
    return re.compile("|".join(re.escape(w) for w in sorted(found)))


_SECRET_WINDOWS = _windows()


def leaks(text: str) -> list[str]:
    found = leakcheck.scan_text(text)
    match = _SECRET_WINDOWS.search(text)
    if match:
        found.append(match.group(0))
    return found


def check_leaks(findings: Findings, where: str, texts: list[str]) -> None:
    for text in texts:
        found = leaks(text)
        if found:
            findings.add(f"inv4:{where}",
                         f"secret {found[0]!r} in {where}: {text[:300]!r}")
            return


def check_records(findings: Findings, records: list[tuple[str, int, str]]
                  ) -> None:
    check_leaks(findings, "log", [f"{name}: {text}"
                                  for name, _, text in records])
    check_leaks(findings, "leakcheck", leakcheck.take_leaks())


# -- configuration ------------------------------------------------------------

def write_conf(path: pathlib.Path, example: S.Example, port: int,
               pki: dict) -> pathlib.Path:
    lines = [
        "[DEFAULT]", "debug = false", "",
        "[trusted_computing]",
        f"backend = {example.backend}",
        f"connect_timeout = {S.CONNECT}",
        f"read_timeout = {S.READ}",
        "attestation_auth_timeout = 60",
        "failure_retry_interval = 10",
        "max_report_age = "
        f"{example.option('trusted_computing', 'max_report_age', 0)}",
    ]
    blob = example.blob
    if blob:
        first, *rest = blob.split("\n")
        # a line break is what oslo.config makes of a continuation line
        lines.append(f"attestation_auth_blob = {first}")
        lines += [f"    {line}" for line in rest]
    if example.backend == "oat":
        lines += [
            "attestation_server = 127.0.0.1",
            f"attestation_port = {port}",
            f"attestation_server_ca_file = {pki['ca'].cert_path}",
        ]
    else:
        lines += [
            "", "[keylime]",
            "verifier_host = 127.0.0.1",
            f"verifier_port = {port}",
            f"ca_file = {pki['ca'].cert_path}",
            f"client_cert_file = {pki['client'].cert}",
            f"client_key_file = {pki['client'].key}",
            f"api_version = {example.option('keylime', 'api_version')}",
            "max_attestation_age = "
            f"{example.option('keylime', 'max_attestation_age', 0)}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_conf(path: pathlib.Path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    tp_conf.register_opts(conf)
    conf(["--config-file", str(path)], project="nova",
         default_config_files=[])
    return conf


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def server(pki: dict) -> Iterator[RawServer]:
    raw = RawServer(pki["server"].cert, pki["server"].key).start()
    yield raw
    raw.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("fuzz-conf")


class Harness:
    """What one example needs: the server, a config file, the capture."""

    def __init__(self, server: RawServer, workdir: pathlib.Path, pki: dict,
                 capture: LogCapture) -> None:
        self.server = server
        self.workdir = workdir
        self.pki = pki
        self.capture = capture

    @contextlib.contextmanager
    def playing(self, example: S.Example) -> Iterator[pathlib.Path]:
        note(repr(example))
        leakcheck.take_leaks()
        self.server.serve(example.routes)
        path = write_conf(self.workdir / "nova.conf", example,
                          self.server.port, self.pki)
        start = time.monotonic()
        try:
            yield path
        finally:
            timeline = ", ".join(
                f"{r.method} {r.path} at {r.at - start:.2f}s, answered "
                + ("-" if r.done is None else f"{r.done - start:.2f}s")
                for r in list(self.server.requests))
            note(f"server: {self.server.accepted} connection(s); "
                 f"{timeline or 'no request'}\n  " +
                 "\n  ".join(self.server.log))
            self.server.release()


@pytest.fixture(scope="module")
def harness(server: RawServer, workdir: pathlib.Path, pki: dict,
            log_capture: LogCapture) -> Harness:
    return Harness(server, workdir, pki, log_capture)


def _events(example: S.Example, trusted: set[str], elapsed: float | None
            ) -> None:
    event(f"proven {len(example.proven)}/{len(example.asked)}")
    event("clean answer" if example.clean else "odd answer")
    reasons = sorted({r.split(":")[0] for _, r in example.why})
    event(f"why not proven: {','.join(reasons) or '-'}")
    event(f"reported trusted: {len(trusted)}")
    if elapsed is not None:
        bucket = next(b for b in (0.25, 1.0, 2.0, BOUND, 1e9)
                      if elapsed < b)
        event(f"call time < {bucket:g}s")


def check_startup(findings: Findings, example: S.Example,
                  exc: BaseException | None) -> bool:
    """Whether the entry point was built; a configuration that cannot be
    sent must be refused at start-up (OAT sends the blob), one that can
    must not be."""
    if exc is not None:
        check_leaks(findings, "startup-error", [str(exc)])
        if not isinstance(exc, ConfigurationError):
            findings.add(f"startup:{type(exc).__name__}",
                         f"building the entry point raised {exc!r}")
        elif example.sendable:
            findings.add("startup:refused-sendable",
                         f"a configuration that works was refused: {exc}")
        return False
    if example.backend == "oat" and not example.sendable:
        findings.add("startup:accepted-unsendable-blob",
                     f"the {example.blob_kind} auth blob was not refused "
                     "at start-up")
    return True


def category(reason: str) -> str:
    """The kind of a reason for doubt: which request it was met in, and
    which of its variants, go into the message, not the kind (one kind,
    one shrunk counter-example)."""
    parts = reason.split(":")
    if parts[0] in ("version", "bulk", "agent") and len(parts) > 1:
        parts = parts[1:]
    if parts[0] == "framing" and len(parts) > 1:
        return "framing:" + parts[1].split("-")[0]
    if parts[0] == "status" and parts[1:] != ["malformed-line"]:
        return "status:not-a-proof-status"
    return ":".join(parts[:2])


def check_trust(findings: Findings, example: S.Example, trusted: set[str],
                what: str, sanity: bool = True) -> None:
    for host in sorted(trusted - example.proven):
        findings.add(f"inv1:{category(example.reason(host))}",
                     f"{what} trusts {host!r}, which the answer does not "
                     f"prove ({example.reason(host)})")
    if sanity and example.clean and example.sendable and \
            trusted != example.proven:
        missing = sorted(example.proven - trusted)
        if missing:
            findings.add("sanity:clean-answer-not-trusted",
                         f"{what} does not trust {missing}, proven by a "
                         "plain well-formed answer")


def check_time(findings: Findings, elapsed: float, what: str) -> None:
    if elapsed > BOUND:
        findings.add("inv3:slow", f"{what} took {elapsed:.2f}s, over "
                     f"{BOUND:g}s (connect {S.CONNECT:g} + read "
                     f"{S.READ:g} + margin {MARGIN:g})")


def _escaped(findings: Findings, exc: BaseException, what: str) -> None:
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    findings.add(f"inv2:{type(exc).__name__}",
                 f"{what} raised {type(exc).__name__}: {str(exc)[:300]}")


def _settings() -> settings:
    return settings(max_examples=examples_per_test())


# -- the entry points ---------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@_settings()
@given(data=st.data())
def test_client_levels(harness: Harness, backend: str,
                       data: st.DataObject) -> None:
    example = data.draw(S.examples(backend), label="example")
    findings = Findings(example, "AttestationClient.levels")
    trusted: set[str] = set()
    elapsed = None
    with harness.playing(example) as path, \
            harness.capture.collect() as records:
        conf = load_conf(path)
        client = None
        try:
            client = make_client(conf)
            built = check_startup(findings, example, None)
        except Exception as exc:  # noqa: BLE001 - judged by check_startup
            built = check_startup(findings, example, exc)
        if built and client is not None:
            reports: Any = None
            start = time.monotonic()
            try:
                reports = client.levels(list(example.asked))
            except BaseException as exc:  # noqa: BLE001 - invariant 2
                _escaped(findings, exc, "levels()")
            elapsed = time.monotonic() - start
            check_time(findings, elapsed, "levels()")
            with contextlib.suppress(Exception):
                client.close()
            if isinstance(reports, dict):
                trusted = {name for name, report in reports.items()
                           if getattr(report, "level", None) == "trusted"}
                check_trust(findings, example, trusted, "levels()")
                check_leaks(findings, "reason", [
                    str(getattr(r, "reason", "")) for r in reports.values()])
            elif reports is not None:
                findings.add("inv2:not-a-dict",
                             f"levels() returned {type(reports).__name__}")
    check_records(findings, records)
    _events(example, trusted, elapsed)
    findings.raise_first()


class Host:
    """A host as the filter sees one (Nova's HostState has these)."""

    def __init__(self, name: str) -> None:
        self.nodename = name
        self.host = f"svc-{name}"

    def __repr__(self) -> str:
        return f"Host({self.nodename})"


@needs_nova
@pytest.mark.parametrize("backend", BACKENDS)
@_settings()
@given(data=st.data())
def test_filter_all(harness: Harness, backend: str,
                    data: st.DataObject) -> None:
    example = data.draw(S.examples(backend), label="example")
    findings = Findings(example, "TrustedFilter.filter_all")
    trusted: set[str] = set()
    elapsed = None
    with harness.playing(example) as path, \
            harness.capture.collect() as records:
        conf = load_conf(path)
        flt = None
        try:
            flt = TrustedFilter(conf=conf)
            built = check_startup(findings, example, None)
        except Exception as exc:  # noqa: BLE001 - judged by check_startup
            built = check_startup(findings, example, exc)
        if built and flt is not None:
            hosts = [Host(name) for name in example.asked]
            spec = objects.RequestSpec(flavor=objects.Flavor(
                extra_specs={"trust:trusted_host": "trusted"}))
            passed: Any = None
            start = time.monotonic()
            try:
                passed = flt.filter_all(hosts, spec)
            except BaseException as exc:  # noqa: BLE001 - invariant 2
                _escaped(findings, exc, "filter_all()")
            elapsed = time.monotonic() - start
            check_time(findings, elapsed, "filter_all()")
            with contextlib.suppress(Exception):
                flt.client.close()
            if passed is not None:
                passed = list(passed)
                strangers = [p for p in passed
                             if not any(p is h for h in hosts)]
                if strangers:
                    findings.add("inv1:not-a-candidate",
                                 f"filter_all() passed {strangers!r}")
                trusted = {h.nodename for h in passed if isinstance(h, Host)}
                check_trust(findings, example, trusted, "filter_all()")
    check_audit(findings, example, records)
    check_records(findings, records)
    _events(example, trusted, elapsed)
    findings.raise_first()


def check_audit(findings: Findings, example: S.Example,
                records: list[tuple[str, int, str]]) -> None:
    for name, _, text in records:
        if name != "trustpool.audit":
            continue
        check_leaks(findings, "audit", [text])
        try:
            audit = json.loads(text)
        except ValueError:
            findings.add("audit:not-json", f"audit line {text[:200]!r}")
            continue
        passed = set(audit.get("passed") or [])
        said = {h.get("host") for h in audit.get("hosts") or []
                if h.get("level") == "trusted" and h.get("passed")}
        check_trust(findings, example, passed | said, "the audit event",
                    sanity=False)


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """The CLI sets logging up for a process of its own; put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ["stevedore", "urllib3", *leakcheck.WATCHED]
    levels = {name: logging.getLogger(name).level for name in names}
    hook = sys.excepthook
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)
        sys.excepthook = hook


@pytest.mark.parametrize("backend", BACKENDS)
@_settings()
@given(data=st.data())
def test_cli_status(harness: Harness, backend: str,
                    data: st.DataObject) -> None:
    example = data.draw(S.examples(backend), label="example")
    fmt = data.draw(st.sampled_from(["table", "json"]), label="format")
    findings = Findings(example, f"trustpool status --format {fmt}")
    trusted: set[str] = set()
    out, err = io.StringIO(), io.StringIO()
    rc: Any = None
    with harness.playing(example) as path, \
            harness.capture.collect() as records, _logging_kept():
        start = time.monotonic()
        try:
            with contextlib.redirect_stdout(out), \
                    contextlib.redirect_stderr(err):
                rc = cli.main(["--config-file", str(path), "status",
                               "--format", fmt, *example.asked])
        except BaseException as exc:  # noqa: BLE001 - invariant 2
            _escaped(findings, exc, "main()")
        elapsed = time.monotonic() - start
    stdout, stderr = out.getvalue(), err.getvalue()
    note(f"exit {rc!r}\nstdout: {stdout[:2000]}\nstderr: {stderr[-3000:]}")
    check_time(findings, elapsed, "the CLI")
    check_leaks(findings, "cli-output", [stdout, stderr])
    check_records(findings, records)
    if "Traceback (most recent call last)" in stdout + stderr:
        findings.add("inv2:traceback", "a traceback in the CLI's output")
    if rc not in (0, 1, 2) or type(rc) is not int:
        findings.add("inv2:exit-code", f"exit code {rc!r}")
    lines = [line for line in stderr.splitlines()
             if line.strip() and not _LOG_LINE.match(line)]
    if rc == 2:
        if len(lines) != 1 or not lines[0].startswith("trustpool: "):
            findings.add("inv2:cli-message",
                         f"exit 2 needs one 'trustpool: ...' line on "
                         f"stderr, got {lines[:5]!r}")
    elif rc in (0, 1):
        trusted = _cli_trusted(findings, stdout, fmt)
        if rc == 0:
            trusted |= set(example.asked)
        check_trust(findings, example, trusted, f"status (exit {rc})")
    if not example.sendable and example.backend == "oat" and rc != 2:
        findings.add("startup:accepted-unsendable-blob",
                     f"the {example.blob_kind} auth blob was not refused "
                     f"(exit {rc})")
    if example.sendable and rc == 2 and "auth_blob" in stderr:
        findings.add("startup:refused-sendable", stderr[-300:])
    _events(example, trusted, elapsed)
    findings.raise_first()


def _cli_trusted(findings: Findings, stdout: str, fmt: str) -> set[str]:
    """Hosts the CLI's answer shows as trusted."""
    if fmt == "json":
        try:
            rows = json.loads(stdout)["hosts"]
            return {row["host"] for row in rows
                    if row.get("level") == "trusted"}
        except (ValueError, KeyError, TypeError):
            findings.add("cli:bad-json", f"not the status JSON: "
                         f"{stdout[:300]!r}")
            return set()
    trusted = set()
    for line in stdout.splitlines()[1:]:
        cells = line.split()
        if len(cells) >= 2 and cells[1] == "trusted":
            trusted.add(cells[0])
    return trusted
