"""etc/systemd/trustpool-sync-traits.service, the unit README's
"Operations" section gives operators: systemd accepts it, the command it
starts is one the real CLI accepts, and it keeps the promises README makes
for it (runs as nova, restarts on failure, no secrets, hardened but able to
read /etc/nova)."""

from __future__ import annotations

import json
import pathlib
import shlex
import shutil
import subprocess

import pytest

from trustpool import trait_sync
from trustpool.cmd import main as cli

UNIT = (pathlib.Path(__file__).resolve().parents[2]
        / "etc" / "systemd" / "trustpool-sync-traits.service")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections, ``Key=value`` (a key may repeat),
    ``#``/``;`` comments, a trailing backslash continues a line."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {number}: key before a section"
        key, sep, value = line.partition("=")
        assert sep and key.strip(), f"line {number}: not Key=value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    assert not pending, "the file ends in a continuation"
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def test_unit_keeps_readmes_promises(unit):
    assert set(unit) == {"Unit", "Service", "Install"}
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["User"] == "nova"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    # strict/full keep /etc readable (read-only); nothing hides /etc/nova
    assert service["ProtectSystem"] in {"strict", "full"}
    for key in ("InaccessiblePaths", "TemporaryFileSystem"):
        assert not any(p.lstrip("-").startswith("/etc")
                       for p in unit["Service"].get(key, [])), key
    # credentials live in nova.conf, never in the unit
    assert not {"Environment", "EnvironmentFile"} & set(unit["Service"])
    text = UNIT.read_text().lower()
    for word in ("password", "auth_blob", "token", "secret="):
        assert word not in text
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_execstart_is_a_command_line_the_real_cli_accepts(
        unit, tmp_path, monkeypatch):
    argv = shlex.split(unit["Service"]["ExecStart"][-1])
    assert pathlib.Path(argv[0]).name == "trustpool"
    args = argv[1:]
    assert args[args.index("--config-file") + 1] == "/etc/nova/nova.conf"
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"hosts": {"node1": "trusted"}}))
    nova_conf = tmp_path / "nova.conf"
    nova_conf.write_text(f"[trusted_computing]\nbackend = file\n"
                         f"[trust_file]\npath = {trust}\n")
    args[args.index("--config-file") + 1] = str(nova_conf)
    started = []
    monkeypatch.setattr(
        trait_sync, "run_forever",
        lambda conf, api, client, interval, **kw: started.append(interval))
    # a bad argument would be argparse's SystemExit(2), failing the test
    assert cli.main(args, placement_api=object()) == cli.OK
    assert started == [60.0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify insists that ExecStart's program exists; trustpool is not
    # installed at /usr/local/bin here, so point it at one that is.
    text = UNIT.read_text()
    program = shlex.split(
        parse_unit(text)["Service"]["ExecStart"][-1])[0]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(program, shutil.which("true") or "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)],
                            capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys or bad values ("ignoring"), so
    # any line about the unit is a failure
    about_unit = [line for line in (result.stdout + result.stderr)
                  .splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not about_unit, \
        result.stdout + result.stderr
