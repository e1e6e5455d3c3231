"""The local trust-file backend: format, re-reading, fail-closed."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

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


# -- only regular files, and never a blocked reader ---------------------


def attest_in_thread(backend, names, budget=1.0):
    """Run attest in a thread; the outcome, and whether it was prompt."""
    outcome = {}

    def run():
        try:
            outcome["result"] = backend.attest(names)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(budget)
    return outcome, time.monotonic() - started, thread


def release_fifo(path, thread):
    """Let a reader blocked on the FIFO go (when the test has failed)."""
    if thread.is_alive():
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(1)


def test_a_fifo_is_refused_without_blocking(backend, trust_file):
    os.mkfifo(trust_file)
    outcome, took, thread = attest_in_thread(backend, ["a"])
    try:
        assert not thread.is_alive(), "attest blocked on the FIFO"
        assert took < 0.5
        assert isinstance(outcome.get("error"), AttestationError)
        assert "is a FIFO, not a regular file" in str(outcome["error"])
        client = AttestationClient(backend, ttl=60)
        assert client.level("a").level is TrustLevel.UNKNOWN
    finally:
        release_fifo(trust_file, thread)


def test_a_fifo_swapped_in_after_the_stat_does_not_block(
        backend, trust_file, tmp_path, monkeypatch):
    write(trust_file, {"hosts": {"a": "trusted"}})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_open = os.open

    def swap_then_open(path, flags, *args, **kwargs):
        if os.fspath(path) == str(trust_file):
            os.replace(fifo, trust_file)  # between stat and open
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", swap_then_open)
    outcome, _, thread = attest_in_thread(backend, ["a"])
    monkeypatch.undo()
    try:
        assert not thread.is_alive(), "attest blocked on the FIFO"
        assert isinstance(outcome.get("error"), AttestationError)
        assert "is a FIFO" in str(outcome["error"])
    finally:
        release_fifo(trust_file, thread)


def test_a_file_swapped_between_stat_and_open_is_refused_once(
        backend, trust_file, tmp_path, monkeypatch):
    write(trust_file, {"hosts": {"a": "trusted"}})
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hosts": {"a": "unknown"}}))
    real_open = os.open
    swaps = []

    def swap_then_open(path, flags, *args, **kwargs):
        if os.fspath(path) == str(trust_file) and not swaps:
            swaps.append(path)
            os.replace(other, trust_file)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(AttestationError, match="replaced while being opened"):
        backend.attest(["a"])
    # the next request reads the file now in place
    assert backend.attest(["a"])["a"].level is TrustLevel.UNKNOWN


@pytest.mark.parametrize(("make", "needle"), [
    (lambda tmp: tmp, "is a directory"),
    (lambda tmp: "/dev/null", "is a character device"),
])
def test_directories_and_devices_are_refused(conf, tmp_path, make, needle):
    backend = load_backend(file_conf(conf, make(tmp_path)), "file")
    with pytest.raises(AttestationError, match=needle):
        backend.attest(["a"])
    with pytest.raises(AttestationError, match=needle):
        backend.list_hosts()


def test_a_symlink_to_a_regular_file_is_read(conf, tmp_path):
    target = tmp_path / "real.json"
    write(target, {"hosts": {"a": "trusted"}})
    link = tmp_path / "link.json"
    link.symlink_to(target)
    backend = load_backend(file_conf(conf, link), "file")
    assert backend.attest(["a"])["a"].level is TrustLevel.TRUSTED


# -- every change is seen ----------------------------------------------


def write_old(path, data):
    """Write with an mtime a minute old, as a file that settled long ago
    (not write(): its mtime lies a little in the future)."""
    path.write_text(json.dumps(data))
    old = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(old, old))


@pytest.fixture
def settled(backend):
    """No re-read of just-written files, so that only the signature
    decides whether the file is read again."""
    backend.settle_seconds = 0
    return backend


def test_an_in_place_rewrite_that_keeps_size_and_mtime_is_seen(
        settled, trust_file):
    write_old(trust_file, {"hosts": {"a": "trusted"}})
    assert settled.attest(["a"])["a"].level is TrustLevel.TRUSTED
    before = trust_file.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(trust_file, "r+b") as handle:  # same inode, same size
        handle.write(json.dumps({"hosts": {"a": "unknown"}}).encode())
    os.utime(trust_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = trust_file.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    assert settled.attest(["a"])["a"].level is TrustLevel.UNKNOWN


def test_a_file_renamed_over_with_the_same_size_and_times_is_seen(
        settled, trust_file, tmp_path):
    write_old(trust_file, {"hosts": {"a": "trusted"}})
    assert settled.attest(["a"])["a"].level is TrustLevel.TRUSTED
    before = trust_file.stat()
    other = tmp_path / "new.json"
    other.write_text(json.dumps({"hosts": {"a": "unknown"}}))
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, trust_file)
    after = trust_file.stat()
    assert after.st_ino != before.st_ino
    assert (after.st_size, after.st_mtime_ns) == (before.st_size,
                                                  before.st_mtime_ns)
    assert settled.attest(["a"])["a"].level is TrustLevel.UNKNOWN


def count_opens(monkeypatch, trust_file):
    opened = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        if os.fspath(path) == str(trust_file):
            opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    return opened


def test_an_unchanged_settled_file_is_not_read_again(settled, trust_file,
                                                     monkeypatch):
    write_old(trust_file, {"hosts": {"a": "trusted"}})
    opened = count_opens(monkeypatch, trust_file)
    for _ in range(3):
        settled.attest(["a"])
    assert len(opened) == 1


def test_a_just_written_file_is_read_again_until_it_settles(
        backend, trust_file, monkeypatch):
    # a same-size rewrite within one timestamp tick would otherwise look
    # unchanged for good
    write(trust_file, {"hosts": {"a": "trusted"}})
    opened = count_opens(monkeypatch, trust_file)
    for _ in range(3):
        backend.attest(["a"])
    assert len(opened) == 3


# -- who can write the file --------------------------------------------


def writable_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING
            and "writable by" in r.getMessage()]


@pytest.mark.parametrize(("mode", "who"), [
    (0o664, "writable by its group (mode 0664)"),
    (0o646, "writable by every user (mode 0646)"),
    (0o666, "writable by its group and every user (mode 0666)"),
])
def test_a_group_or_world_writable_file_is_warned_about_once(
        conf, trust_file, caplog, mode, who):
    caplog.set_level(logging.WARNING, "trustpool")
    write(trust_file, {"hosts": {"a": "trusted"}})
    os.chmod(trust_file, mode)
    backend = load_backend(file_conf(conf, trust_file), "file")
    for _ in range(3):
        backend.attest(["a"])
    write(trust_file, {"hosts": {"a": "untrusted"}})  # same inode
    assert backend.attest(["a"])["a"].level is TrustLevel.UNTRUSTED
    warnings = writable_warnings(caplog)
    assert len(warnings) == 1
    assert who in warnings[0]
    assert "can make any host trusted" in warnings[0]
    assert f"chmod go-w {trust_file}" in warnings[0]
    # another file in its place is another file to warn about
    other = trust_file.with_name("other.json")
    write(other, {"hosts": {"a": "trusted"}})
    os.chmod(other, mode)
    os.replace(other, trust_file)
    backend.attest(["a"])
    assert len(writable_warnings(caplog)) == 2


def test_an_owner_writable_file_gets_no_warning(backend, trust_file, caplog):
    caplog.set_level(logging.WARNING, "trustpool")
    write(trust_file, {"hosts": {"a": "trusted"}})
    os.chmod(trust_file, 0o644)
    backend.attest(["a"])
    os.chmod(trust_file, 0o600)
    backend.attest(["a"])
    assert writable_warnings(caplog) == []


# -- parsing: refused, never raised past the backend --------------------


DEEP = 100_000


@pytest.mark.parametrize(("raw", "needle"), [
    (b'{"hosts": {"a": "untrusted", "a": "trusted"}}', "appears twice"),
    (b'{"hosts": {"a": "untrusted"}, "hosts": {"a": "trusted"}}',
     "appears twice"),
    (b'{"hosts": {"a": {"level": "untrusted", "level": "trusted"}}}',
     "appears twice"),
    (b'{"hosts": ' + b"[" * DEEP + b"]" * DEEP + b"}", "nested too deeply"),
    (b'{"hosts": {"a": ' + b"[" * 500 + b"]" * 500 + b"}}",
     "no string level: a list"),
    (b'{"hosts": {"a": {"level": "trusted", "timestamp": ["x"]}}}',
     "not a time but a list"),
    (b'{"hosts": {"a": "trusted"}}\xff', "not valid JSON"),
    (b'\xff\xfe\x00{', "not valid JSON"),
    (b'{"hosts": {"a": ' + b"9" * 5000 + b"}}", "not valid JSON"),
    (b'{"hosts": {"a": 1e400}}', "no string level: inf"),
    (b'{"hosts": {"a": NaN}}', "not valid JSON"),
    (b'{"timestamp": "9999-12-31T23:59:59-23:59", "hosts": {}}',
     "timestamp"),
])
def test_odd_json_is_refused_as_an_attestation_error(conf, backend,
                                                     trust_file, raw,
                                                     needle):
    trust_file.write_bytes(raw)
    with pytest.raises(AttestationError) as err:
        backend.attest(["a"])
    assert needle in str(err.value)
    assert len(str(err.value)) < 300
    with pytest.raises(AttestationError):
        backend.list_hosts()
    client = AttestationClient(backend, ttl=60)
    assert client.level("a").level is TrustLevel.UNKNOWN


def test_a_file_grown_past_the_limit_after_the_stat_is_refused(
        conf, trust_file, monkeypatch):
    backend = load_backend(file_conf(conf, trust_file, max_file_bytes=100),
                           "file")
    write(trust_file, {"hosts": {"a": "trusted"}})
    real_open = os.open

    def grow_then_open(path, flags, *args, **kwargs):
        if os.fspath(path) == str(trust_file):
            with open(trust_file, "ab") as handle:
                handle.write(b" " * 200)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", grow_then_open)
    with pytest.raises(AttestationError, match="more than 100 bytes"):
        backend.attest(["a"])

