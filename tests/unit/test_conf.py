"""The [trusted_computing] options: names, spellings, defaults, refusals."""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys
import threading

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


# -- every file a backend reads is checked at start-up -------------------

#: backend -> (group of its TLS files, CA option, config lines it needs)
TLS_BACKENDS = {
    "oat": ("trusted_computing", "attestation_server_ca_file",
            "[trusted_computing]\nbackend = oat\n"
            "attestation_server = 127.0.0.1\n"),
    "keylime": ("keylime", "ca_file",
                "[trusted_computing]\nbackend = keylime\n"
                "[keylime]\nverifier_host = 127.0.0.1\n"),
}
ROLE_OPTION = {"cert": "client_cert_file", "key": "client_key_file"}


def tls_conf(tmp_path, backend, ca=None, cert=None, key=None):
    """A ConfigOpts read from a nova.conf setting ``backend``'s files."""
    group, ca_option, text = TLS_BACKENDS[backend]
    lines = [f"{option} = {path}" for option, path in (
        (ca_option, ca), ("client_cert_file", cert),
        ("client_key_file", key)) if path is not None]
    if group == "trusted_computing":
        text += "\n".join(lines) + "\n"
    else:
        text += "\n".join(lines) + "\n"  # [keylime] is the last section
    return load_conf(tmp_path, text)


def bad_file(tmp_path, kind):
    """A path that cannot be used as a PEM file, of the kind asked for."""
    if kind == "missing":
        return tmp_path / "absent" / "file.pem"
    if kind == "directory":
        path = tmp_path / "a-directory"
        path.mkdir()
        return path
    if kind == "fifo":
        path = tmp_path / "a-fifo"
        os.mkfifo(path)
        return path
    if kind == "device":
        return pathlib.Path("/dev/zero")  # endless: must not be read
    if kind == "garbage":
        path = tmp_path / "garbage.pem"
        path.write_text("-----BEGIN CERTIFICATE-----\nGARBAGE-MARKER-8c1e\n"
                        "-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY"
                        "-----\nGARBAGE-MARKER-8c1e\n-----END PRIVATE KEY"
                        "-----\n")
        return path
    if kind == "huge":
        path = tmp_path / "huge.pem"
        with open(path, "wb") as handle:  # sparse: costs no disk
            handle.truncate(10 * 1024 ** 3)
        return path
    raise AssertionError(kind)


BAD_KINDS = {"missing": "no such file", "directory": "a directory",
             "fifo": "a FIFO", "device": "a character device",
             "garbage": "that OpenSSL can load",
             "huge": "more than 8388608 bytes (the largest PEM file"}


def validate_promptly(conf_obj):
    """validate() in a thread: the error it raised, and whether it
    returned (it must not block on a FIFO or read an endless device)."""
    outcome = {}

    def run():
        try:
            tp_conf.validate(conf_obj)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    return outcome.get("error"), not thread.is_alive()


def release_fifos(tmp_path):
    """Let a reader blocked on a FIFO go (when a test has failed)."""
    for path in tmp_path.iterdir():
        if path.is_fifo():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader waits on it, as it should
                pass


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
@pytest.mark.parametrize("role", ["ca", "cert", "key"])
@pytest.mark.parametrize("backend", sorted(TLS_BACKENDS))
def test_every_tls_file_is_checked_at_start_up(tmp_path, pki, backend, role,
                                               kind):
    group, ca_option, _ = TLS_BACKENDS[backend]
    option = ca_option if role == "ca" else ROLE_OPTION[role]
    files = {"ca": pki["ca"].cert_path, "cert": pki["client"].cert,
             "key": pki["client"].key}
    files[role] = bad_file(tmp_path, kind)
    c = tls_conf(tmp_path, backend, **files)
    try:
        error, returned = validate_promptly(c)
    finally:
        release_fifos(tmp_path)
    assert returned, "validate blocked or kept reading"
    assert isinstance(error, ConfigurationError), error
    assert (error.group, error.option) == (group, option)
    text = str(error)
    assert text.startswith(f"[{group}] {option}: "), text
    assert BAD_KINDS[kind] in text, text
    assert str(files[role]) in text
    assert f"(set in {tmp_path / 'nova.conf'})" in text
    assert "GARBAGE-MARKER" not in text
    with pytest.raises(ConfigurationError):
        make_client(c)  # what TrustedFilter's constructor calls


@pytest.mark.parametrize("backend", sorted(TLS_BACKENDS))
def test_good_tls_files_pass(tmp_path, pki, backend):
    c = tls_conf(tmp_path, backend, ca=pki["ca"].cert_path,
                 cert=pki["client"].cert, key=pki["client"].key)
    tp_conf.validate(c)
    make_client(c).close()


@pytest.mark.parametrize("backend", sorted(TLS_BACKENDS))
def test_a_certificate_file_holding_its_key_needs_no_key_file(
        tmp_path, pki, backend):
    both = tmp_path / "both.pem"
    both.write_bytes(pki["client"].pem + pki["client"].key_pem)
    tp_conf.validate(tls_conf(tmp_path, backend, cert=both))


def encrypted_key(tmp_path, issued):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(issued.key_pem, None)
    path = tmp_path / "encrypted.key"
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    return path


@pytest.mark.parametrize("backend", sorted(TLS_BACKENDS))
@pytest.mark.parametrize(("case", "option", "needle"), [
    ("key of another certificate", "client_key_file",
     "not the private key of the client certificate"),
    ("encrypted key", "client_key_file", "encrypted with a passphrase"),
    ("certificate without its key", "client_cert_file",
     "holds no PEM private key after the certificate"),
    ("key without certificate", "client_key_file",
     "set, but client_cert_file is not"),
    ("a key as the CA", None, "holds no PEM certificate"),
])
def test_client_certificate_and_key_must_work_together(
        tmp_path, pki, backend, case, option, needle):
    group, ca_option, _ = TLS_BACKENDS[backend]
    client = pki["client"]
    files = {
        "key of another certificate": {"cert": client.cert,
                                       "key": pki["rogue_client"].key},
        "encrypted key": {"cert": client.cert,
                          "key": encrypted_key(tmp_path, client)},
        "certificate without its key": {"cert": client.cert},
        "key without certificate": {"key": client.key},
        "a key as the CA": {"ca": client.key},
    }[case]
    c = tls_conf(tmp_path, backend, **files)
    with pytest.raises(ConfigurationError) as err:
        tp_conf.validate(c)
    assert err.value.option == (option or ca_option)
    assert err.value.group == group
    assert needle in str(err.value)
    assert f"(set in {tmp_path / 'nova.conf'})" in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode "
                    "000; tests/integration/test_cli.py checks this as root "
                    "with the read-override capabilities dropped")
def test_an_unreadable_ca_file_is_refused(tmp_path, pki):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki["ca"].pem)
    ca.chmod(0)
    with pytest.raises(ConfigurationError) as err:
        tp_conf.validate(tls_conf(tmp_path, "oat", ca=ca))
    assert "not readable by this user" in str(err.value)


def test_old_option_names_are_named_with_their_file(tmp_path):
    c = load_conf(tmp_path, "[trusted_computing]\nserver = 127.0.0.1\n"
                  f"server_ca_file = {tmp_path}/nope.pem\n")
    with pytest.raises(ConfigurationError) as err:
        tp_conf.validate(c)
    assert str(err.value) == (
        "[trusted_computing] attestation_server_ca_file: no such file: "
        f"{tmp_path}/nope.pem (set in {tmp_path}/nova.conf)")


def test_tls_files_of_another_backend_are_not_required(tmp_path, pki):
    """Keylime reads [keylime]'s TLS files only: a stale
    [trusted_computing] one does not stop it (check-config warns)."""
    c = load_conf(tmp_path, "[trusted_computing]\nbackend = keylime\n"
                  f"attestation_server_ca_file = {tmp_path}/nope.pem\n"
                  "[keylime]\nverifier_host = 127.0.0.1\n"
                  f"ca_file = {pki['ca'].cert_path}\n")
    tp_conf.validate(c)


def trust_conf(tmp_path, path):
    return load_conf(tmp_path, "[trusted_computing]\nbackend = file\n"
                     f"[trust_file]\npath = {path}\n")


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "device"])
def test_a_trust_file_that_cannot_be_opened_stops_start_up(tmp_path, kind):
    path = bad_file(tmp_path, kind)
    c = trust_conf(tmp_path, path)
    try:
        error, returned = validate_promptly(c)
    finally:
        release_fifos(tmp_path)
    assert returned, "validate blocked on the trust file"
    assert isinstance(error, ConfigurationError), error
    assert (error.group, error.option) == ("trust_file", "path")
    assert BAD_KINDS[kind] in str(error)
    assert f"{path} (set in {tmp_path / 'nova.conf'})" in str(error)


@pytest.mark.parametrize("content", ["{broken", '{"hosts": {}}'])
def test_trust_file_content_is_not_judged_at_start_up(tmp_path, content):
    """The file is data that changes while the scheduler runs: a bad one
    fails closed at each request, as one written later would, and
    check-config reports it; it does not keep the scheduler down."""
    path = tmp_path / "trust.json"
    path.write_text(content)
    make_client(trust_conf(tmp_path, path)).close()


@pytest.mark.parametrize(("kind", "severity", "needle"), [
    ("directory", "error", "a directory, not a regular file: {path}"),
    ("not an object", "error", "must be an object with a 'hosts' object"),
    ("huge", "error", "more than 67108864 bytes ([trust_file] "
     "max_file_bytes)"),
    ("empty", "warning", "trust file {path} lists no host"),
])
def test_check_config_judges_the_trust_file(tmp_path, kind, severity,
                                            needle):
    """check-config (in-process here; tests/integration/test_cli.py runs
    the command) reads the file with the file backend's own code."""
    from trustpool.cmd import checks

    path = tmp_path / "trust.json"
    if kind == "directory":
        path.mkdir()
    elif kind == "not an object":
        path.write_text('["trusted"]')
    elif kind == "huge":
        with open(path, "wb") as handle:  # sparse, refused by its size
            handle.truncate(10 * 1024 ** 3)
    else:
        path.write_text('{"hosts": {}}')
    findings = checks.check(trust_conf(tmp_path, path))
    assert len(findings) == 1, findings
    [(found_severity, option, message)] = findings
    assert (found_severity, option) == (severity, "[trust_file] path")
    assert needle.format(path=path) in message
    assert message.endswith(f"(set in {tmp_path / 'nova.conf'})")


def test_a_path_no_file_can_have_is_a_configuration_error(tmp_path):
    c = load_conf(tmp_path, "[trusted_computing]\n"
                  "attestation_server = 127.0.0.1\n")
    c.set_override("attestation_server_ca_file", "/etc/nova/ca\x00.pem",
                   "trusted_computing")
    with pytest.raises(ConfigurationError) as err:
        tp_conf.validate(c)
    assert str(err.value) == (
        "[trusted_computing] attestation_server_ca_file: not a usable path "
        "(a NUL character): /etc/nova/ca?.pem")


def test_check_config_warns_about_tls_files_keylime_does_not_read(
        tmp_path, pki):
    from trustpool.cmd import checks

    c = load_conf(tmp_path, "[trusted_computing]\nbackend = keylime\n"
                  f"client_cert_file = {pki['client'].cert}\n"
                  "[keylime]\nverifier_host = 127.0.0.1\n")
    assert checks.check(c) == [(
        "warning", "[trusted_computing] client_cert_file",
        "set, but the 'keylime' backend does not read it "
        f"(set in {tmp_path / 'nova.conf'})")]


@pytest.mark.parametrize("backend", sorted(TLS_BACKENDS))
def test_check_config_passes_good_tls_files(tmp_path, pki, backend):
    from trustpool.cmd import checks

    assert checks.check(tls_conf(
        tmp_path, backend, ca=pki["ca"].cert_path, cert=pki["client"].cert,
        key=pki["client"].key)) == []


def test_a_default_trust_file_path_is_named_as_the_default(tmp_path):
    if os.path.exists("/etc/nova/trust-levels.json"):
        pytest.skip("this machine has a trust file at the default path")
    c = load_conf(tmp_path, "[trusted_computing]\nbackend = file\n")
    assert tp_conf.file_problems(c) == [(
        "trust_file", "path",
        "no such file: /etc/nova/trust-levels.json (the default)")]
