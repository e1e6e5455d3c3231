"""A real Keylime 6.6.0 attestation stack on 127.0.0.1, for tests.

swtpm (a software TPM 2.0), the Keylime registrar and verifier, the Keylime
Python agent using that TPM, and the tenant that enrols the agent with a
TPM policy pinning one PCR. Every process runs in its own process group
and :meth:`KeylimeStack.stop` ends exactly those groups, also after a
failure. The Keylime code runs from the venv tests/keylime/prepare.py made.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import uuid

PCR = 23  # the debug PCR: starts at zero, and tpm2_pcrextend may extend it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_pair() -> int:
    """A port whose next port is free too: the swtpm TCTI expects the
    control channel right after the data port."""
    for _ in range(100):
        port = _free_port()
        if port >= 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _wait_port(port: int, proc: subprocess.Popen, what: str,
               timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port} in {timeout}s")


class KeylimeStack:
    """Start with :meth:`start`; always :meth:`stop`."""

    def __init__(self, venv: pathlib.Path, workdir: pathlib.Path,
                 agent_uuid: str | None = None,
                 webhook_url: str | None = None,
                 webhook_ca: pathlib.Path | None = None) -> None:
        """``webhook_url``: where the verifier POSTs its revocation
        notifications (none without it); ``webhook_ca``: the CA it then
        trusts for that URL's certificate."""
        self.venv = venv
        self.dir = workdir
        self.agent_uuid = agent_uuid or str(uuid.uuid4())
        self.webhook_url = webhook_url
        self.webhook_ca = webhook_ca
        #: whether tpm2_pcrextend ran since the last enrolment
        self.extended = False
        self.procs: list[tuple[str, subprocess.Popen]] = []
        tpm = _free_pair()
        self.ports = {"tpm": tpm, "tpm_ctrl": tpm + 1}
        self.ports.update({name: _free_port() for name in (
            "verifier", "registrar", "registrar_tls", "agent", "revocation",
            "zmq")})
        self.tcti = f"swtpm:host=127.0.0.1,port={self.ports['tpm']}"
        self.conf_dir = self.dir / "conf"
        self.logs = self.dir / "logs"

    # -- environment -----------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env.update({
            "PATH": f"{self.venv / 'bin'}:{env.get('PATH', '')}",
            "KEYLIME_TEST": "True",
            "KEYLIME_DIR": str(self.dir / "keylime"),
            "TPM2TOOLS_TCTI": self.tcti,
            "TCTI": self.tcti,
        })
        for part in ("verifier", "registrar", "agent", "tenant", "ca",
                     "logging"):
            env[f"KEYLIME_{part.upper()}_CONFIG"] = str(
                self.conf_dir / f"{part}.conf")
        return env

    def _run(self, *cmd: str, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(list(cmd), env=self.env(), cwd=self.dir,
                                capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd[:3])} exited with {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result

    def _spawn(self, name: str, *cmd: str,
               env: dict[str, str] | None = None) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(list(cmd), env={**self.env(), **(env or {})},
                                cwd=self.dir,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- configuration ---------------------------------------------------

    def _configure(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self._run(str(self.venv / "bin" / "keylime_upgrade_config"),
                  "--defaults", "--out", str(self.conf_dir), "--templates",
                  str(self.venv / "keylime-templates"))
        p = self.ports
        self._edit("verifier", "verifier", {
            "ip": "127.0.0.1", "port": p["verifier"],
            "registrar_ip": "127.0.0.1",
            # the verifier talks to the registrar's TLS port
            "registrar_port": p["registrar_tls"],
            "quote_interval": "1", "retry_interval": "1",
            "max_retries": "3", "database_url": "sqlite"})
        self._edit("verifier", "revocations", {
            "zmq_port": p["zmq"],
            "enabled_revocation_notifications":
                "['webhook']" if self.webhook_url else "[]",
            "webhook_url": self.webhook_url or ""})
        self._edit("registrar", "registrar", {
            "ip": "127.0.0.1", "port": p["registrar"],
            "tls_port": p["registrar_tls"], "database_url": "sqlite"})
        self._edit("tenant", "tenant", {
            "verifier_ip": "127.0.0.1", "verifier_port": p["verifier"],
            "registrar_ip": "127.0.0.1",
            "registrar_port": p["registrar_tls"],
            "require_ek_cert": "False",
            "tpm_cert_store": str(self.dir / "tpm_cert_store"),
            "max_retries": "10", "retry_interval": "1"})
        self._edit("agent", "agent", {
            "uuid": f'"{self.agent_uuid}"', "ip": '"127.0.0.1"',
            "port": p["agent"], "contact_ip": '"127.0.0.1"',
            "contact_port": p["agent"], "registrar_ip": '"127.0.0.1"',
            "registrar_port": p["registrar"], "run_as": '""',
            "enable_revocation_notifications": "false",
            "revocation_notification_port": p["revocation"],
            "tpm_ownerpassword": '""', "ek_handle": '"generate"'})
        (self.dir / "tpm_cert_store").mkdir(exist_ok=True)
        (self.dir / "keylime").mkdir(exist_ok=True)

    def _edit(self, part: str, section: str, values: dict) -> None:
        path = self.conf_dir / f"{part}.conf"
        parser = configparser.RawConfigParser()
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(path)
        for key, value in values.items():
            parser.set(section, key, str(value))
        with open(path, "w") as handle:
            parser.write(handle)

    # -- life cycle ------------------------------------------------------

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._configure()
        tpm_state = self.dir / "tpm"
        tpm_state.mkdir(exist_ok=True)
        tpm = self._spawn(
            "swtpm", "swtpm", "socket", "--tpm2",
            "--tpmstate", f"dir={tpm_state}",
            "--server", f"type=tcp,port={self.ports['tpm']},"
            "bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={self.ports['tpm_ctrl']},"
            "bindaddr=127.0.0.1",
            "--flags", "not-need-init")
        _wait_port(self.ports["tpm"], tpm, "swtpm")
        self._run("tpm2_startup", "-c")
        # The verifier's webhook client is a plain requests session
        # (revocation_notifier.notify_webhook): it trusts certifi's CAs or
        # the REQUESTS_CA_BUNDLE of its environment, nothing in its config.
        trust = ({"REQUESTS_CA_BUNDLE": str(self.webhook_ca)}
                 if self.webhook_ca else {})
        verifier = self._spawn("verifier",
                               str(self.venv / "bin" / "keylime_verifier"),
                               env=trust)
        _wait_port(self.ports["verifier"], verifier, "verifier", 90)
        registrar = self._spawn("registrar",
                                str(self.venv / "bin" / "keylime_registrar"))
        _wait_port(self.ports["registrar_tls"], registrar, "registrar", 90)
        agent = self._spawn("agent", str(self.venv / "bin" / "keylime_agent"))
        _wait_port(self.ports["agent"], agent, "agent", 120)

    def pcr(self) -> str:
        """PCR 23's current sha256 value, as Keylime compares it."""
        out = self._run("tpm2_pcrread", f"sha256:{PCR}").stdout
        for line in out.splitlines():
            if line.strip().startswith(f"{PCR}:"):
                return line.split(":", 1)[1].strip().lower().removeprefix(
                    "0x")
        raise RuntimeError(f"no PCR {PCR} in tpm2_pcrread output: {out}")

    def enrol(self, command: str = "add") -> None:
        """Enrol the agent with a policy pinning PCR 23 to its value now
        (``command="update"``: delete it from the verifier first)."""
        pcr_value = self.pcr()
        payload = self.dir / "payload.txt"
        payload.write_text("trustpool end-to-end test\n")
        policy = f'{{"{PCR}": ["{pcr_value}"]}}'
        result = self._run(
            str(self.venv / "bin" / "keylime_tenant"), "-c", command,
            "-v", "127.0.0.1", "-vp", str(self.ports["verifier"]),
            "-r", "127.0.0.1", "-rp", str(self.ports["registrar_tls"]),
            "-t", "127.0.0.1", "-tp", str(self.ports["agent"]),
            "-u", self.agent_uuid, "-f", str(payload),
            "--tpm_policy", policy, check=False, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"keylime_tenant {command} failed:\n"
                               f"{result.stdout[-3000:]}\n"
                               f"{result.stderr[-3000:]}")
        self.extended = False

    def reenrol(self) -> None:
        """Enrol again after :meth:`extend_pcr`, pinning PCR 23's new
        value: a failed agent is never quoted again, so a test that needs
        a trusted host on a stack an earlier test revoked calls this."""
        self.enrol("update")

    def extend_pcr(self) -> None:
        """Measure something new into PCR 23, as a changed boot would."""
        self._run("tpm2_pcrextend",
                  f"{PCR}:sha256=" + "ab" * 32)
        self.extended = True

    def webhook_times(self) -> list[float]:
        """When the verifier began sending each revocation notification
        by webhook (epoch seconds, from its log's millisecond stamps)."""
        stamps = []
        for line in self.log("verifier").splitlines():
            if "Sending revocation event via webhook" not in line:
                continue
            match = re.match(
                r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ", line)
            if match:
                stamps.append(time.mktime(time.strptime(
                    match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000)
        return stamps

    @property
    def tls_dir(self) -> pathlib.Path:
        """Where the verifier made its CA and certificates."""
        return self.dir / "keylime" / "cv_ca"

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
