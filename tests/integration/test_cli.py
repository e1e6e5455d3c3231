"""The ``trustpool`` command, run as operators run it (a subprocess)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import leakcheck
from tests.support.oat_server import OATServer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def trustpool(*args, conf_path=None, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "trustpool.cmd.main"]
    if conf_path is not None:
        cmd += ["--config-file", str(conf_path)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True,
                          timeout=60)


def write_conf(tmp_path, text):
    path = tmp_path / "nova.conf"
    path.write_text(text)
    return path


@pytest.fixture
def oat_conf(tmp_path, pki, oat_server):
    oat_server.levels = {"n1": "trusted", "n2": "untrusted", "n3": "Trusted"}
    return write_conf(tmp_path, f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki['ca'].cert_path}
attestation_auth_blob = cli-secret-blob
""")


def test_status_all_trusted_exits_0(oat_conf, oat_server):
    result = trustpool("status", "n1", "n3", conf_path=oat_conf)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOST", "LEVEL", "SERVER"]
    assert lines[1].split()[:2] == ["n1", "trusted"]
    assert lines[2].split()[:2] == ["n3", "trusted"]
    assert "cli-secret-blob" not in result.stdout + result.stderr


def test_status_bypasses_any_cache_and_asks_once(oat_conf, oat_server):
    trustpool("status", "n1", "n2", conf_path=oat_conf)
    trustpool("status", "n1", "n2", conf_path=oat_conf)
    assert oat_server.polls() == 2
    assert oat_server.requests[0].body == {"count": 2,
                                           "hosts": ["n1", "n2"]}


def test_status_json_schema_and_exit_1(oat_conf):
    result = trustpool("status", "n1", "n2", "ghost", "--format", "json",
                       conf_path=oat_conf)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert doc["backend"].startswith("oat https://127.0.0.1:")
    assert [h["host"] for h in doc["hosts"]] == ["n1", "n2", "ghost"]
    for row in doc["hosts"]:
        assert set(row) == {"host", "level", "server_time", "age_seconds",
                            "backend", "reason"}
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host["n1"]["level"] == "trusted"
    assert by_host["n1"]["server_time"].endswith("+00:00")
    assert 0 <= by_host["n1"]["age_seconds"] < 60
    assert by_host["n2"]["level"] == "untrusted"
    assert by_host["ghost"]["level"] == "unknown"
    assert by_host["ghost"]["server_time"] is None
    assert "did not mention" in by_host["ghost"]["reason"]


def test_status_connection_error_exits_2(tmp_path, pki):
    server = OATServer(pki["server"].cert, pki["server"].key).start()
    port = server.port
    server.stop()
    conf_path = write_conf(tmp_path, f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {port}
attestation_server_ca_file = {pki['ca'].cert_path}
connect_timeout = 1
""")
    result = trustpool("status", "n1", conf_path=conf_path)
    assert result.returncode == 2
    assert result.stdout == ""
    err = result.stderr.strip().splitlines()
    assert err[-1].startswith("trustpool: cannot reach https://127.0.0.1:")


def test_status_without_hosts_on_oat_says_to_name_them(oat_conf):
    result = trustpool("status", conf_path=oat_conf)
    assert result.returncode == 2
    assert "cannot list hosts; name the hosts to check" in result.stderr


def test_status_lists_every_host_of_the_file_backend(tmp_path):
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"hosts": {"b": "trusted", "a": "trusted"}}))
    conf_path = write_conf(tmp_path, f"""
[trusted_computing]
backend = file
[trust_file]
path = {trust}
""")
    result = trustpool("status", "--format", "json", conf_path=conf_path)
    assert result.returncode == 0, result.stderr
    assert [h["host"] for h in json.loads(result.stdout)["hosts"]] == \
        ["a", "b"]
    trust.write_text("{broken")
    result = trustpool("status", conf_path=conf_path)
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


def test_status_bad_configuration_exits_2_naming_the_option(tmp_path):
    conf_path = write_conf(tmp_path, "[trusted_computing]\nbackend = oatt\n")
    result = trustpool("status", "n1", conf_path=conf_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "trustpool: [trusted_computing] backend: no attestation backend "
        "named 'oatt'; installed: file, keylime, oat")


def test_check_config_clean(oat_conf):
    result = trustpool("check-config", conf_path=oat_conf)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: backend 'oat'")


@pytest.mark.parametrize(("text", "expected"), [
    ("", "ERROR: [trusted_computing] attestation_server: not set"),
    ("attestation_server = oat\nattestation_server_ca_file = /nope/ca.pem",
     "ERROR: [trusted_computing] attestation_server_ca_file: no such file: "
     "/nope/ca.pem"),
    ("attestation_server = oat\nclient_cert_file = /nope/c.pem",
     "ERROR: [trusted_computing] client_cert_file: no such file"),
    ("attestation_server = oat\nclient_key_file = /nope/k.pem",
     "ERROR: [trusted_computing] client_key_file: no such file"),
    ("attestation_server = oat\nbackend = tpm-magic",
     "ERROR: [trusted_computing] backend: no attestation backend named "
     "'tpm-magic'"),
    ("attestation_server = oat\nattestation_port = 0",
     "ERROR: [trusted_computing] attestation_port: invalid value in "),
    ("attestation_server = oat\nattestation_scheme = ftp",
     "ERROR: [trusted_computing] attestation_scheme: invalid value in "),
    ("attestation_server = oat\nattestation_auth_timeout = -5",
     "ERROR: [trusted_computing] attestation_auth_timeout: invalid value"),
    ("attestation_server = https://oat:8443/x",
     "ERROR: [trusted_computing] attestation_server: invalid value in "),
])
def test_check_config_reports_each_problem(tmp_path, text, expected):
    conf_path = write_conf(tmp_path, f"[trusted_computing]\n{text}\n")
    result = trustpool("check-config", conf_path=conf_path)
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout


@pytest.mark.parametrize(("value", "expected"), [
    ("/nope/audit.jsonl", "no such directory: /nope (for /nope/audit.jsonl)"),
    ("audit.jsonl", "'audit.jsonl' is not an absolute path"),
])
def test_check_config_checks_the_audit_file(tmp_path, value, expected):
    # the scheduler would not start: the decision record cannot be written
    conf_path = write_conf(tmp_path, "[trusted_computing]\n"
                           "attestation_server = oat\n"
                           f"audit_log_file = {value}\n")
    result = trustpool("check-config", conf_path=conf_path)
    assert result.returncode == 1, result.stdout
    assert f"ERROR: [trusted_computing] audit_log_file: {expected}" in \
        result.stdout


def test_check_config_warns_about_plain_http(tmp_path):
    conf_path = write_conf(tmp_path, "[trusted_computing]\n"
                           "attestation_server = oat\n"
                           "attestation_scheme = http\n")
    result = trustpool("check-config", conf_path=conf_path)
    assert result.returncode == 0
    assert "WARNING: [trusted_computing] attestation_scheme: http" in \
        result.stdout


def test_check_config_lists_every_problem_at_once(tmp_path):
    conf_path = write_conf(tmp_path, "[trusted_computing]\n"
                           "attestation_port = 0\nread_timeout = -1\n")
    result = trustpool("check-config", conf_path=conf_path)
    assert result.returncode == 1
    assert "attestation_port" in result.stdout
    assert "read_timeout" in result.stdout


def test_unreadable_config_file_exits_2(tmp_path):
    result = trustpool("status", "n1", conf_path=tmp_path / "missing.conf")
    assert result.returncode == 2
    assert "missing.conf" in result.stderr


def test_audit_without_nova_credentials_exits_2(oat_conf):
    result = trustpool("audit", conf_path=oat_conf)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "trustpool: [trustpool_nova] auth_type: not set: trustpool audit "
        "needs credentials for the Nova API")


def test_check_config_refuses_a_multi_line_auth_blob(tmp_path):
    leakcheck.register("cli-blob-first-line")
    path = write_conf(tmp_path, """
[trusted_computing]
attestation_server = 127.0.0.1
attestation_auth_blob = cli-blob-first-line
    cli-blob-second-line
""")
    result = trustpool("check-config", conf_path=path)
    assert result.returncode == 1
    assert "[trusted_computing] attestation_auth_blob" in result.stdout
    assert "line break" in result.stdout
    status = trustpool("status", "n1", conf_path=path)
    assert status.returncode == 2
    for out in (result.stdout, result.stderr, status.stdout, status.stderr):
        assert "cli-blob" not in out


def test_an_unexpected_exception_exits_2_with_one_line(tmp_path):
    """A bug anywhere in a command (here: in printing the table) must not
    become a traceback and exit 1 ("not trusted")."""
    trust_file = tmp_path / "levels.json"
    trust_file.write_text('{"hosts": {"n1": "trusted"}}')
    path = write_conf(tmp_path, f"""
[trusted_computing]
backend = file
attestation_auth_blob = never-shown-blob
[trust_file]
path = {trust_file}
""")
    code = (
        "import sys\n"
        "from trustpool.cmd import main as m\n"
        "m._table = lambda rows: 1 / 0\n"
        "main = m.main\n"
        f"sys.exit(main(['--config-file', {str(path)!r}, 'status']))\n")
    result = subprocess.run([sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("trustpool: unexpected ZeroDivisionError")


def test_version_is_the_installed_distributions_even_with_a_broken_conf(
        tmp_path):
    """``trustpool --version`` prints what pbr made the installed
    distribution's version, and needs no readable nova.conf (here a broken
    one is the first the command would read by default)."""
    (tmp_path / ".nova").mkdir()
    (tmp_path / ".nova" / "nova.conf").write_text("[DEFAULT\nbroken\n")
    env = {**os.environ, "HOME": str(tmp_path),
           "PYTHONPATH": str(REPO_ROOT)}
    expected = importlib.metadata.version("trustpool")
    # a PEP 440 version, as pbr writes it (release or dev, from git tags)
    assert re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?"
                        r"(\.dev\d+)?(\+[\w.]+)?", expected), expected
    commands = [[sys.executable, "-m", "trustpool.cmd.main"]]
    script = pathlib.Path(sys.executable).parent / "trustpool"
    if script.exists():  # the console script pip installed
        commands.append([str(script)])
    for command in commands:
        result = subprocess.run(command + ["--version"], capture_output=True,
                                text=True, timeout=60, env=env, cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (
            0, f"{expected}\n", ""), command
    # without --version the same configuration is an error, exit 2
    result = subprocess.run(commands[0] + ["check-config"],
                            capture_output=True, text=True, timeout=60,
                            env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "Failed to parse" in result.stderr


def test_default_config_files_nova_conf_then_trustpool_conf(tmp_path):
    """Without --config-file the command reads the first nova.conf, then
    the first trustpool.conf of ~/.nova/, ~/, /etc/nova/, /etc/, then the
    nova.conf.d/ directory; each later one overrides (README,
    "Operations"). --config-file replaces them all, --config-dir only
    the directories."""
    home = tmp_path / "home"
    (home / ".nova").mkdir(parents=True)
    for name in ("nova", "tp", "dir", "home"):
        (tmp_path / f"{name}.json").write_text(
            json.dumps({"hosts": {f"from-{name}": "trusted"}}))
    nova_conf = home / ".nova" / "nova.conf"
    nova_conf.write_text(f"[trusted_computing]\nbackend = file\n"
                         f"[trust_file]\npath = {tmp_path / 'nova.json'}\n")
    # not read: ~/.nova/nova.conf comes first
    (home / "nova.conf").write_text(
        f"[trust_file]\npath = {tmp_path / 'home.json'}\n")
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}

    def hosts(*args):
        result = subprocess.run(
            [sys.executable, "-m", "trustpool.cmd.main", *args, "status",
             "--format", "json"], capture_output=True, text=True,
            timeout=60, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return [h["host"] for h in json.loads(result.stdout)["hosts"]]

    assert hosts() == ["from-nova"]
    (home / ".nova" / "trustpool.conf").write_text(
        f"[trust_file]\npath = {tmp_path / 'tp.json'}\n")
    assert hosts() == ["from-tp"]
    (home / ".nova" / "nova.conf.d").mkdir()
    (home / ".nova" / "nova.conf.d" / "10-trust.conf").write_text(
        f"[trust_file]\npath = {tmp_path / 'dir.json'}\n")
    assert hosts() == ["from-dir"]
    assert hosts("--config-file", str(nova_conf)) == ["from-nova"]
    # --config-dir alone replaces only the directories, not the files
    other = tmp_path / "other.d"
    other.mkdir()
    (other / "log.conf").write_text("[DEFAULT]\ndebug = False\n")
    assert hosts("--config-dir", str(other)) == ["from-tp"]
# -- every backend's files, as check-config and status see them ----------

#: backend -> (group of its TLS files, CA option, config it needs)
TLS_BACKENDS = {
    "oat": ("trusted_computing", "attestation_server_ca_file",
            "[trusted_computing]\nbackend = oat\n"
            "attestation_server = 127.0.0.1\n"),
    "keylime": ("keylime", "ca_file",
                "[trusted_computing]\nbackend = keylime\n"
                "[keylime]\nverifier_host = 127.0.0.1\n"),
}


def tls_conf(tmp_path, backend, ca, cert, key, extra=""):
    """nova.conf for ``backend`` with its three TLS files (its section
    comes last, so the file lines land in it)."""
    group, ca_option, text = TLS_BACKENDS[backend]
    return write_conf(tmp_path, extra + text + f"{ca_option} = {ca}\n"
                      f"client_cert_file = {cert}\n"
                      f"client_key_file = {key}\n")


def make_bad(tmp_path, kind, name):
    path = tmp_path / name
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "garbage":
        path.write_text("-----BEGIN PRIVATE KEY-----\nNEVER-SHOWN-4d2a\n"
                        "-----END PRIVATE KEY-----\n")
    return path


BAD = {"missing": "no such file", "directory": "a directory, not a "
       "regular file", "fifo": "a FIFO, not a regular file",
       "garbage": "holds no PEM certificate that OpenSSL can load"}


# (CA, client certificate, client key): each kind of bad file once per
# backend; tests/unit/test_conf.py has every combination, in-process
@pytest.mark.parametrize(("backend", "kinds"), [
    ("oat", ("missing", "directory", "fifo")),
    ("keylime", ("fifo", "missing", "directory")),
    ("keylime", ("garbage", "garbage", None)),
])
def test_check_config_checks_every_tls_file(tmp_path, pki, backend, kinds):
    group, ca_option, _ = TLS_BACKENDS[backend]
    options = (ca_option, "client_cert_file", "client_key_file")
    files = [make_bad(tmp_path, kind, name) if kind else pki["client"].key
             for kind, name in zip(kinds, ("ca.pem", "client.pem",
                                           "client.key"), strict=True)]
    conf_path = tls_conf(tmp_path, backend, *files)
    result = trustpool("check-config", conf_path=conf_path)
    assert result.returncode == 1, result.stdout + result.stderr
    expected = [f"ERROR: [{group}] {option}: {BAD[kind]}: {path} "
                f"(set in {conf_path})"
                for option, kind, path in zip(options, kinds, files,
                                              strict=True) if kind]
    assert result.stdout.splitlines() == expected
    assert result.stderr.strip() == f"{len(expected)} error(s)"
    assert "NEVER-SHOWN" not in result.stdout + result.stderr


def test_check_config_refuses_a_key_that_is_not_the_certificates(
        tmp_path, pki):
    backend = "oat"
    group, _, _ = TLS_BACKENDS[backend]
    conf_path = tls_conf(tmp_path, backend, pki["ca"].cert_path,
                         pki["client"].cert, pki["rogue_client"].key)
    result = trustpool("check-config", conf_path=conf_path)
    assert result.returncode == 1
    assert (f"ERROR: [{group}] client_key_file: not the private key of the "
            f"client certificate: {pki['rogue_client'].key} (set in "
            f"{conf_path})") in result.stdout
    leaked = [pki["rogue_client"].key_pem, pki["client"].key_pem]
    for pem in leaked:
        for line in pem.decode().splitlines()[1:-1]:
            assert line not in result.stdout + result.stderr


def without_root_read_override():
    """A command prefix under which this user is held to file modes.

    Tests run as root here, and root reads a file of mode 000 (the
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH capabilities). Dropped from
    the bounding set, the command really cannot read such a file, as the
    nova user could not.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and setpriv (util-linux) is not "
                    "there to drop the capabilities that let root read "
                    "any file")
    drop = "-dac_override,-dac_read_search"
    return (setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}")


def test_check_config_and_status_refuse_unreadable_files(tmp_path, pki):
    prefix = without_root_read_override()
    files = []
    for name, content in (("ca.pem", pki["ca"].pem),
                          ("client.pem", pki["client"].pem),
                          ("client.key", pki["client"].key_pem)):
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(0)
        files.append(path)
    conf_path = tls_conf(tmp_path, "keylime", *files)
    result = trustpool("check-config", conf_path=conf_path, prefix=prefix)
    assert result.returncode == 1, result.stdout + result.stderr
    for option, path in zip(("ca_file", "client_cert_file",
                             "client_key_file"), files, strict=True):
        assert (f"ERROR: [keylime] {option}: not readable by this user: "
                f"{path} (set in {conf_path})") in result.stdout
    status = trustpool("status", "n1", conf_path=conf_path, prefix=prefix)
    assert status.returncode == 2
    assert status.stderr.strip() == (
        f"trustpool: [keylime] ca_file: not readable by this user: "
        f"{files[0]} (set in {conf_path})")


def test_status_with_a_missing_keylime_ca_file_exits_2_in_one_line(tmp_path):
    conf_path = write_conf(tmp_path, "[trusted_computing]\n"
                           "backend = keylime\n[keylime]\n"
                           "verifier_host = 127.0.0.1\n"
                           f"ca_file = {tmp_path}/nope/cacert.crt\n")
    result = trustpool("status", "n1", conf_path=conf_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"trustpool: [keylime] ca_file: no such file: {tmp_path}/nope/"
        f"cacert.crt (set in {conf_path})")
    check = trustpool("check-config", conf_path=conf_path)
    assert check.returncode == 1
    assert check.stdout.startswith(
        f"ERROR: [keylime] ca_file: no such file: {tmp_path}/nope/"
        "cacert.crt")


def trust_conf(tmp_path, path):
    return write_conf(tmp_path, "[trusted_computing]\nbackend = file\n"
                      f"[trust_file]\npath = {path}\n")


@pytest.mark.parametrize(("kind", "needle"), [
    ("missing", "no such file: {path} (set in {conf})"),
    ("unparseable", "trust file {path} is not valid JSON: "),
])
def test_check_config_checks_the_trust_file(tmp_path, kind, needle):
    path = tmp_path / "trust.json"
    if kind == "unparseable":
        path.write_text('{"hosts": {"n1": "trusted", "n1": "trusted"}}')
    elif kind != "missing":
        path = make_bad(tmp_path, kind, "trust.json")
    conf_path = trust_conf(tmp_path, path)
    result = trustpool("check-config", conf_path=conf_path)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("ERROR: [trust_file] path: ")
    assert needle.format(path=path, conf=conf_path) in line
    assert line.endswith(f"(set in {conf_path})")


def test_an_empty_trust_file_is_a_warning(tmp_path):
    path = tmp_path / "trust.json"
    path.write_text('{"hosts": {}}')
    conf_path = trust_conf(tmp_path, path)
    check = trustpool("check-config", conf_path=conf_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines() == [
        f"WARNING: [trust_file] path: trust file {path} lists no host: "
        "every host is 'unknown', so no trusted flavor can be placed "
        f"(set in {conf_path})",
        "OK: backend 'file', 1 warning(s)"]
    for fmt in ("table", "json"):
        status = trustpool("status", "--format", fmt, conf_path=conf_path)
        # 1, not 0: "every listed host is trusted" holds of no host, yet
        # no host is trusted
        assert status.returncode == 1
        assert status.stderr.strip() == (
            f"trustpool: warning: no host is listed by file {path}; none "
            "is trusted")
    assert json.loads(status.stdout)["hosts"] == []
