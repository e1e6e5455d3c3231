"""The [trusted_computing] options: names, spellings, defaults, refusals."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import opts as tp_opts
from trustpool.conf import make_client
from trustpool.exceptions import ConfigurationError

from tests.support import leakcheck
from tests.support.config import load_conf

LEGACY_NAMES = ["attestation_server", "attestation_port",
                "attestation_server_ca_file", "attestation_api_url",
                "attestation_auth_blob", "attestation_auth_timeout",
                "attestation_insecure_ssl"]


def test_defaults_match_the_removed_in_tree_filter(conf):
    group = conf.trusted_computing
    assert group.attestation_server is None
    assert group.attestation_port == 8443
    assert group.attestation_server_ca_file is None
    assert group.attestation_api_url == "/OpenAttestationWebServices/V1.0"
    assert group.attestation_auth_blob is None
    assert group.attestation_auth_timeout == 60
    assert group.attestation_insecure_ssl is False


def test_new_defaults_fail_safe(conf):
    group = conf.trusted_computing
    assert group.backend == "oat"
    assert group.attestation_scheme == "https"
    assert 0 < group.connect_timeout <= 5
    assert 0 < group.read_timeout <= 15
    assert group.host_attribute == "nodename"
    assert group.max_report_age == 0
    assert group.failure_retry_interval > 0


def test_current_names_from_a_file(tmp_path):
    c = load_conf(tmp_path, """
[trusted_computing]
attestation_server = oat.example.org
attestation_port = 8181
attestation_server_ca_file = /etc/nova/oat-ca.pem
attestation_api_url = /AttestationService/resources
attestation_auth_blob = i-am-openstack
attestation_auth_timeout = 120
attestation_insecure_ssl = true
""")
    group = c.trusted_computing
    assert group.attestation_server == "oat.example.org"
    assert group.attestation_port == 8181
    assert group.attestation_server_ca_file == "/etc/nova/oat-ca.pem"
    assert group.attestation_api_url == "/AttestationService/resources"
    assert group.attestation_auth_blob == "i-am-openstack"
    assert group.attestation_auth_timeout == 120
    assert group.attestation_insecure_ssl is True


def test_old_guide_spellings_are_read_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    c = load_conf(tmp_path, """
[trusted_computing]
server = 10.1.71.206
port = 8181
server_ca_file = /etc/nova/ssl.10.1.71.206.crt
api_url = /AttestationService/resources
auth_blob = i-am-openstack
""")
    group = c.trusted_computing
    assert group.attestation_server == "10.1.71.206"
    assert group.attestation_port == 8181
    assert group.attestation_server_ca_file == \
        "/etc/nova/ssl.10.1.71.206.crt"
    assert group.attestation_api_url == "/AttestationService/resources"
    assert group.attestation_auth_blob == "i-am-openstack"
    deprecations = [r.getMessage() for r in caplog.records
                    if "deprecated" in r.getMessage().lower()]
    for old in ("server", "port", "server_ca_file", "api_url", "auth_blob"):
        assert any(f'"{old}"' in m or f"'{old}'" in m or f" {old} " in m
                   for m in deprecations), (old, deprecations)


@pytest.mark.parametrize(("line", "option"), [
    ("attestation_port = 0", "attestation_port"),
    ("port = 70000", "attestation_port"),
    ("attestation_auth_timeout = -1", "attestation_auth_timeout"),
    ("connect_timeout = -0.5", "connect_timeout"),
    ("read_timeout = 0", "read_timeout"),
    ("failure_retry_interval = -3", "failure_retry_interval"),
    ("max_report_age = -1", "max_report_age"),
    ("attestation_scheme = ftp", "attestation_scheme"),
    ("host_attribute = uuid", "host_attribute"),
    ("attestation_insecure_ssl = perhaps", "attestation_insecure_ssl"),
])
def test_bad_values_are_refused_naming_the_option(tmp_path, line, option):
    c = load_conf(tmp_path, f"[trusted_computing]\n{line}\n")
    with pytest.raises(ConfigurationError) as err:
        tp_conf.validate(c)
    assert err.value.option == option
    assert option in str(err.value)
    assert "nova.conf" in str(err.value)  # where the value came from


def test_unknown_backend_is_refused_at_start_up(tmp_path):
    c = load_conf(tmp_path, "[trusted_computing]\nbackend = oatt\n"
                  "attestation_server = 127.0.0.1\n")
    with pytest.raises(ConfigurationError) as err:
        make_client(c)
    assert err.value.option == "backend"
    assert "'oatt'" in str(err.value)
    assert "oat" in str(err.value).split("installed:")[1]


def test_oat_backend_needs_a_server(conf):
    with pytest.raises(ConfigurationError) as err:
        make_client(conf)
    assert err.value.option == "attestation_server"


def test_unreadable_files_are_refused(tmp_path):
    c = load_conf(tmp_path, "[trusted_computing]\n"
                  f"attestation_server_ca_file = {tmp_path}/missing.pem\n")
    with pytest.raises(ConfigurationError) as err:
        tp_conf.validate(c)
    assert err.value.option == "attestation_server_ca_file"
    assert "missing.pem" in str(err.value)


def test_key_without_certificate_is_refused(tmp_path):
    key = tmp_path / "client.key"
    key.write_text("not used")
    c = load_conf(tmp_path, f"[trusted_computing]\nclient_key_file = {key}\n")
    with pytest.raises(ConfigurationError) as err:
        tp_conf.validate(c)
    assert err.value.option == "client_key_file"


def test_list_opts_covers_every_option_with_help():
    groups = {getattr(g, "name", g): opts for g, opts in tp_opts.list_opts()}
    names = {opt.dest for opt in groups["trusted_computing"]}
    for legacy in LEGACY_NAMES:
        assert legacy in names
    for opt in groups["trusted_computing"]:
        assert opt.help and len(opt.help) > 20, opt.dest
    auth_blob = next(o for o in groups["trusted_computing"]
                     if o.dest == "attestation_auth_blob")
    assert auth_blob.secret


def test_sample_generator_prints_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "oslo_config.generator",
         "--namespace", "trustpool"],
        check=True, capture_output=True, text=True).stdout
    assert "[trusted_computing]" in out
    for _group, opts in tp_opts.list_opts():
        for opt in opts:
            assert f"\n#{opt.dest} =" in out, opt.dest
    assert "Deprecated group/name - [trusted_computing]/auth_blob" in out


def test_two_configurations_do_not_share_values():
    from oslo_config import cfg
    first, second = cfg.ConfigOpts(), cfg.ConfigOpts()
    for c in (first, second):
        tp_conf.register_opts(c)
        tp_conf.register_opts(c)  # twice is harmless
        c([], default_config_files=[])
    first.set_override("attestation_auth_blob", "x", "trusted_computing")
    assert second.trusted_computing.attestation_auth_blob is None


@pytest.mark.parametrize(("text", "needle"), [
    # an indented line after the option continues its value in oslo.config
    ("attestation_auth_blob = first-half-of-blob\n    second-half-of-blob\n",
     "line break"),
    ("attestation_auth_blob = blob-with-\u20ac-sign\n", "Latin-1"),
    ("attestation_auth_blob = blob-with\u00a0no-break-space\n",
     "not printable"),
])
def test_header_secrets_that_cannot_be_sent_are_refused(tmp_path, text,
                                                         needle):
    leakcheck.register("first-half-of-blob")
    leakcheck.register("second-half-of-blob")
    c = load_conf(tmp_path, "[trusted_computing]\n"
                  "attestation_server = 127.0.0.1\n" + text)
    with pytest.raises(ConfigurationError) as err:
        make_client(c)
    assert err.value.option == "attestation_auth_blob"
    assert needle in str(err.value)
    assert "half-of-blob" not in str(err.value)
    assert "blob-with" not in str(err.value)


def test_secret_values_are_found_in_every_group(tmp_path):
    c = load_conf(tmp_path, "[trusted_computing]\n"
                  "attestation_auth_blob = the-blob-value\n")
    c.register_opts([cfg.StrOpt("password", secret=True),
                     cfg.StrOpt("user")], group="other")
    c.set_override("password", "the-password", group="other")
    c.set_override("user", "not-secret", group="other")
    found = tp_conf.secret_values(c)
    assert "the-blob-value" in found and "the-password" in found
    assert "not-secret" not in found


@pytest.mark.parametrize("text, deadline, lead", [
    ("", 13.0, 13.0),                              # ttl 60: capped
    ("attestation_auth_timeout = 8\n", 13.0, 2.0),  # a quarter of the ttl
    ("attestation_auth_timeout = 0\n", 13.0, 0.0),  # nothing is cached
    ("refresh_ahead = false\n", 13.0, 0.0),
])
def test_refresh_ahead_lead(tmp_path, text, deadline, lead):
    c = load_conf(tmp_path, "[trusted_computing]\n" + text)
    assert tp_conf.refresh_lead(c, deadline) == lead


def test_make_client_refreshes_ahead_by_default(tmp_path):
    trust = tmp_path / "levels.json"
    trust.write_text('{"hosts": {"a": "trusted"}}')
    trust.chmod(0o600)
    c = load_conf(tmp_path, "[trusted_computing]\nbackend = file\n"
                  "attestation_auth_timeout = 20\n"
                  f"[trust_file]\npath = {trust}\n")
    assert make_client(c).refresh_ahead == 5.0
    c.set_override("refresh_ahead", False, tp_conf.GROUP)
    assert make_client(c).refresh_ahead == 0.0
