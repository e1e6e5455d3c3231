"""The local trust-file backend: format, re-reading, fail-closed."""

from __future__ import annotations

import json
import os

import pytest

from trustpool.attestation import (
    AttestationClient,
    AttestationError,
    ConfigurationError,
    TrustLevel,
)
from trustpool.attestation.backends import load_backend
from trustpool.attestation.backends.file import FileBackend


@pytest.fixture
def trust_file(tmp_path):
    return tmp_path / "trust.json"


def file_conf(conf, trust_file, **options):
    conf.register_opts(FileBackend.CONFIG_OPTS[0][1], group="trust_file")
    conf.set_override("path", str(trust_file), "trust_file")
    for name, value in options.items():
        conf.set_override(name, value, "trust_file")
    return conf


@pytest.fixture
def backend(conf, trust_file):
    return load_backend(file_conf(conf, trust_file), "file")


def write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    # make sure the change is seen even within one mtime tick
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_levels_timestamps_and_listing(backend, trust_file):
    write(trust_file, {"timestamp": "2026-11-22T10:00:00Z", "hosts": {
        "a": "trusted", "b": {"level": "UNTRUSTED",
                              "timestamp": "2026-11-22T09:00:00+0000"},
        "c": "unknown", "d": "sort of"}})
    reports = backend.attest(["a", "b", "c", "d", "e"])
    assert {n: r.level for n, r in reports.items()} == {
        "a": TrustLevel.TRUSTED, "b": TrustLevel.UNTRUSTED,
        "c": TrustLevel.UNKNOWN, "d": TrustLevel.UNKNOWN}
    assert reports["a"].vtime.hour == 10
    assert reports["b"].vtime.hour == 9
    assert "'sort of'" in reports["d"].reason
    assert backend.list_hosts() == ["a", "b", "c", "d"]


def test_file_is_read_again_when_it_changes(backend, trust_file):
    write(trust_file, {"hosts": {"a": "trusted"}})
    assert backend.attest(["a"])["a"].level is TrustLevel.TRUSTED
    write(trust_file, {"hosts": {"a": "untrusted"}})
    assert backend.attest(["a"])["a"].level is TrustLevel.UNTRUSTED


@pytest.mark.parametrize(("content", "needle"), [
    (None, "cannot read trust file"),
    ("{not json", "not valid JSON"),
    ("[]", "'hosts' object"),
    ('{"hosts": ["a"]}', "'hosts' object"),
    ('{"hosts": {"a": 1}}', "no string level"),
    ('{"hosts": {"a": {"lvl": "trusted"}}}', "no string level"),
    ('{"timestamp": "soon", "hosts": {}}', "timestamp"),
])
def test_missing_or_malformed_file_fails_closed(conf, backend, trust_file,
                                                content, needle):
    if content is not None:
        write(trust_file, content)
    with pytest.raises(AttestationError, match=needle):
        backend.attest(["a"])
    client = AttestationClient(backend, ttl=60)
    assert client.level("a").level is TrustLevel.UNKNOWN


def test_a_broken_rewrite_does_not_keep_old_trust(backend, trust_file):
    write(trust_file, {"hosts": {"a": "trusted"}})
    backend.attest(["a"])
    write(trust_file, '{"hosts": {"a": "trus')
    with pytest.raises(AttestationError):
        backend.attest(["a"])


def test_oversized_file_is_refused(conf, trust_file):
    backend = load_backend(file_conf(conf, trust_file, max_file_bytes=100),
                           "file")
    write(trust_file, {"hosts": {f"h{i}": "trusted" for i in range(50)}})
    with pytest.raises(AttestationError, match="max_file_bytes"):
        backend.attest(["h1"])


def test_empty_path_is_a_configuration_error(conf):
    file_conf(conf, "")
    with pytest.raises(ConfigurationError, match=r"\[trust_file\] path"):
        load_backend(conf, "file")
