"""``trustpool status --format prometheus`` and the start-up errors of
``[trustpool_traits] metrics_listen``, run as operators run them (a
subprocess); the output is read with prometheus_client's own parser."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cli import trustpool, write_conf
from tests.support import leakcheck


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, for every sample."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


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


def test_status_prometheus_gauges_and_exit_1(oat_conf):
    before = time.time()
    result = trustpool("status", "n1", "n2", "n3", "ghost", "--format",
                       "prometheus", conf_path=oat_conf)
    assert result.returncode == 1, result.stderr  # n2 is not trusted
    got = samples(result.stdout)
    level = "trustpool_hosts"
    assert {k[1][0][1]: v for k, v in got.items() if k[0] == level} == {
        "trusted": 2, "untrusted": 1, "unknown": 1}
    trusted = {dict(k[1])["host"]: v for k, v in got.items()
               if k[0] == "trustpool_host_trusted"}
    assert trusted == {"n1": 1, "n2": 0, "n3": 1, "ghost": 0}
    stamps = {dict(k[1])["host"]: v for k, v in got.items() if k[0] ==
              "trustpool_host_last_attestation_timestamp_seconds"}
    # the server's vtime has whole seconds; ghost never had a verdict
    assert set(stamps) == {"n1", "n2", "n3"}
    assert all(before - 2 <= v <= time.time() for v in stamps.values())
    ages = {dict(k[1])["host"]: v for k, v in got.items() if k[0] ==
            "trustpool_host_last_attestation_age_seconds"}
    assert set(ages) == {"n1", "n2", "n3"}
    assert all(0 <= v < 60 for v in ages.values())
    leakcheck.register("cli-secret-blob")
    assert leakcheck.scan_text(result.stdout + result.stderr) == []


def test_status_prometheus_all_trusted_exits_0(oat_conf):
    result = trustpool("status", "n1", "n3", "--format", "prometheus",
                       conf_path=oat_conf)
    assert result.returncode == 0, result.stderr
    got = samples(result.stdout)
    assert got[("trustpool_hosts", (("level", "trusted"),))] == 2
    assert got[("trustpool_hosts", (("level", "unknown"),))] == 0


def test_status_prometheus_service_down_exits_2_and_prints_nothing(
        tmp_path, pki):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf_path = write_conf(tmp_path, f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {port}
attestation_server_ca_file = {pki['ca'].cert_path}
""")
    result = trustpool("status", "n1", "--format", "prometheus",
                       conf_path=conf_path)
    assert result.returncode == 2
    # nothing half-written for a textfile collector to pick up
    assert result.stdout == ""
    assert "cannot reach" in result.stderr


def run_without_prometheus_client(*args, conf_path):
    code = ("import runpy, sys; sys.modules['prometheus_client'] = None; "
            "sys.argv = ['trustpool'] + sys.argv[1:]; "
            "runpy.run_module('trustpool.cmd.main', run_name='__main__')")
    return subprocess.run(
        [sys.executable, "-c", code, "--config-file", str(conf_path),
         *args], capture_output=True, text=True, timeout=60)


def test_without_prometheus_client_only_the_prometheus_format_fails(
        oat_conf, oat_server):
    result = run_without_prometheus_client(
        "status", "n1", "--format", "prometheus", conf_path=oat_conf)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "trustpool: --format prometheus: Prometheus metrics needs the "
        "prometheus_client package, which is not installed (pip install "
        "'trustpool[metrics]')")
    assert oat_server.polls() == 0  # refused before asking anyone
    result = run_without_prometheus_client("status", "n1",
                                           conf_path=oat_conf)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:2] == ["n1", "trusted"]


# -- [trustpool_traits] metrics_listen: bad values stop the start ---------


@pytest.fixture
def service_conf(tmp_path, pki, oat_server):
    """A sync service configuration; no pass ever runs in these tests."""
    def make(listen: str):
        return write_conf(tmp_path, f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki['ca'].cert_path}

[placement]
auth_type = admin_token
endpoint = http://127.0.0.1:1
token = admin

[trustpool_traits]
metrics_listen = {listen}
""")
    return make


@pytest.mark.parametrize(("value", "problem"), [
    ("9464", "not HOST:PORT"),
    ("127.0.0.1:", "not HOST:PORT"),
    ("127.0.0.1:99999", "port 99999 is not between 1 and 65535"),
    ("127.0.0.1:0", "port 0 is not between 1 and 65535"),
    ("::1:9464", "not HOST:PORT"),
    ("192.0.2.1:9464", "cannot listen there: Cannot assign requested"),
    ("no-such-host.invalid:9464", "cannot resolve 'no-such-host.invalid'"),
])
def test_a_bad_metrics_listen_exits_2_naming_option_and_value(
        service_conf, oat_server, value, problem, capsys):
    # in-process for speed; the command's own subprocess run is below
    from trustpool.cmd.main import main

    code = main(["--config-file", str(service_conf(value)), "sync-traits",
                 "--interval", "1"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(
        f"trustpool: [trustpool_traits] metrics_listen: {value!r}: "
        f"{problem}"), last
    assert oat_server.polls() == 0  # no pass ran


def test_a_malformed_metrics_listen_from_the_command(service_conf,
                                                     oat_server):
    result = trustpool("sync-traits", "--interval", "1",
                       conf_path=service_conf("localhost"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "trustpool: [trustpool_traits] metrics_listen: 'localhost': not "
        "HOST:PORT (an IPv6 address in brackets: [::1]:9464)")
    assert oat_server.polls() == 0


def test_a_metrics_port_in_use_exits_2(service_conf, oat_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        value = f"127.0.0.1:{taken.getsockname()[1]}"
        result = trustpool("sync-traits", "--interval", "1",
                           conf_path=service_conf(value))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"trustpool: [trustpool_traits] metrics_listen: {value!r}: cannot "
        "listen there: Address already in use")
    assert oat_server.polls() == 0
