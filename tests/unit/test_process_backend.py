"""Refreshes ahead made by a helper process: the same answer, and a helper
that fails costs speed, never trust.

Real parts: the helper is a real process (``python -m
trustpool.attestation.backends.helper``) asking a real HTTPS PollHosts
server on loopback with a real certificate; the broken helpers are small
real programs that speak (or break) the same frames.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustpool import conf as tp_conf
from trustpool.attestation import (
    AttestationClient,
    AttestationError,
    TrustLevel,
)
from trustpool.attestation.backends import load_backend
from trustpool.attestation.backends.process import (
    MAX_FAILURES,
    OffloadError,
    ProcessBackend,
)

from tests.support import leakcheck
from tests.support.clock import Clock
from tests.support.oat_server import Response

T, U, K = TrustLevel.TRUSTED, TrustLevel.UNTRUSTED, TrustLevel.UNKNOWN
BLOB = "helper-blob-0f9e8d7c6b5a"


@pytest.fixture
def oat(oat_server):
    oat_server.levels.update({"a": "trusted", "b": "untrusted",
                              "c": "trusted"})
    return oat_server


@pytest.fixture
def inner(conf, oat, pki):
    leakcheck.register(BLOB)
    for key, value in {
            "backend": "oat", "attestation_server": "127.0.0.1",
            "attestation_port": oat.port,
            "attestation_server_ca_file": str(pki["ca"].cert_path),
            "attestation_auth_blob": BLOB, "connect_timeout": 1.0,
            "read_timeout": 1.0}.items():
        conf.set_override(key, value, tp_conf.GROUP)
    backend = load_backend(conf, "oat")
    yield backend
    backend.close()


@pytest.fixture
def helped(inner):
    backend = ProcessBackend(inner)
    yield backend
    backend.close()


def ended(pid: int) -> bool:
    """The process ``pid`` is gone (reaped) or a zombie of nobody's."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


def fake_helper(body: str) -> list[str]:
    """A helper program that speaks the frames and does ``body``, with
    ``ask``, ``reply`` and ``answer`` (file descriptors) and ``frame()``,
    ``send(kind, payload)`` at hand."""
    prologue = textwrap.dedent("""
        import os, struct, sys, marshal, json
        H = struct.Struct("!cQ")
        ask, reply, answer = (int(a) for a in sys.argv[1:4])
        def read(n):
            data = b""
            while len(data) < n:
                chunk = os.read(ask, n - len(data))
                if not chunk:
                    sys.exit(0)
                data += chunk
            return data
        def frame():
            kind, size = H.unpack(read(H.size))
            return kind, read(size)
        def send(kind, payload=b""):
            os.write(reply, H.pack(kind, len(payload)) + payload)
        """)
    return [sys.executable, "-c", prologue + textwrap.dedent(body)]


def test_the_helper_answers_as_the_backend_does(inner, helped):
    here = inner.attest_answer(["a", "b", "c", "nobody"])
    there = helped.attest_answer(["a", "b", "c", "nobody"])
    assert there.levels == here.levels == {"a": T, "b": U, "c": T}
    assert all(type(level) is TrustLevel for level in there.levels.values())
    assert there.reasons == here.reasons
    assert there.backends == here.backends
    assert set(there.vtimes) == set(here.vtimes)
    assert helped.answered == 1
    # the same helper answers again
    pid = helped.pid()
    helped.attest_answer(["a"])
    assert helped.pid() == pid and helped.answered == 2


def test_the_options_travel_over_the_pipe_only(helped, oat):
    helped.attest_answer(["a"])
    pid = helped.pid()
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert BLOB.encode() not in cmdline.read()
    with open(f"/proc/{pid}/environ", "rb") as environ:
        assert BLOB.encode() not in environ.read()
    # and the helper did send it to the service, as the backend would
    assert oat.requests[-1].headers.get("x-auth-blob") == BLOB


def test_nothing_runs_before_the_first_exchange_or_after_close(inner):
    backend = ProcessBackend(inner)
    assert backend.pid() is None
    backend.attest_answer(["a"])
    pid = backend.pid()
    assert pid is not None and not ended(pid)
    backend.close()
    assert ended(pid)
    with pytest.raises(OffloadError, match="closed"):
        backend.attest_answer(["a"])


def test_a_killed_helper_fails_the_exchange_and_the_next_starts_another(
        helped):
    helped.attest_answer(["a"])
    first = helped.pid()
    os.kill(first, signal.SIGKILL)
    with pytest.raises(OffloadError, match="ended"):
        helped.attest_answer(["a"])
    assert helped.attest_answer(["a"]).levels == {"a": T}
    assert helped.pid() not in (None, first)


def test_a_hung_helper_is_given_up_at_its_deadline_and_killed(helped):
    helped.attest_answer(["a"])
    pid = helped.pid()
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    with pytest.raises(OffloadError, match="in time") as caught:
        helped.attest_answer(["a"])
    took = time.monotonic() - start
    assert caught.value.cause == "timeout"
    # the backend's own deadline (connect + read: 2 s) and a margin
    assert took < helped.timeout
    assert ended(pid)


def test_the_service_failing_is_an_attestation_failure_not_the_helpers(
        helped, oat):
    helped.attest_answer(["a"])
    pid = helped.pid()
    oat.responder = lambda request: Response(500, b"{}")
    with pytest.raises(AttestationError) as caught:
        helped.attest_answer(["a"])
    assert type(caught.value) is AttestationError
    assert caught.value.cause == "http_status"
    assert helped.pid() == pid


def test_a_helper_that_cannot_start(inner):
    backend = ProcessBackend(inner, command=["/nonexistent/python"])
    with pytest.raises(OffloadError, match="could not start"):
        backend.attest_answer(["a"])
    backend.close()


def test_after_failures_in_a_row_the_helper_is_not_started_again(
        inner, caplog):
    backend = ProcessBackend(inner, command=fake_helper("sys.exit(3)"))
    caplog.set_level(logging.WARNING)
    for _ in range(MAX_FAILURES):
        with pytest.raises(OffloadError, match="exit status 3"):
            backend.attest_answer(["a"])
    assert backend.broken is not None
    warned = [r for r in caplog.records if "from now on" in r.getMessage()]
    assert len(warned) == 1
    with pytest.raises(OffloadError, match="not used"):
        backend.attest_answer(["a"])
    assert backend.pid() is None
    backend.close()


@pytest.mark.parametrize("answer, needle", [
    # not marshal at all
    ("b'not marshal'", "cannot be read"),
    # a level no service means: never read as one
    ("marshal.dumps(({'a': 'TRUSTED'}, {'a': ''}, {'a': None}, "
     "{'a': 'oat'}))", "cannot be read"),
    # three columns
    ("marshal.dumps(({'a': 'trusted'}, {'a': ''}, {'a': None}))",
     "cannot be read"),
])
def test_an_answer_that_is_not_one_is_the_helpers_failure(inner, answer,
                                                         needle):
    backend = ProcessBackend(inner, command=fake_helper(f"""
        frame()
        send(b"R")
        while True:
            frame()
            data = {answer}
            os.pwrite(answer, data, 0)
            send(b"A", struct.pack("!Q", len(data)))
        """))
    with pytest.raises(OffloadError, match=needle):
        backend.attest_answer(["a"])
    backend.close()


def test_an_announced_answer_longer_than_the_file(inner):
    backend = ProcessBackend(inner, command=fake_helper("""
        frame()
        send(b"R")
        frame()
        send(b"A", struct.pack("!Q", 1000))
        """))
    with pytest.raises(OffloadError, match="shorter"):
        backend.attest_answer(["a"])
    backend.close()


def test_a_helper_that_sends_something_else(inner):
    backend = ProcessBackend(inner, command=fake_helper("""
        frame()
        send(b"Z", b"?")
        """))
    with pytest.raises(OffloadError, match="frame"):
        backend.attest_answer(["a"])
    backend.close()


def test_a_helpers_failure_is_masked_and_stays_the_helpers(inner):
    backend = ProcessBackend(inner, command=fake_helper(f"""
        frame()
        send(b"E", json.dumps({{"cause": "other",
                                "message": "cannot use {BLOB}"}}).encode())
        """))
    with pytest.raises(OffloadError) as caught:
        backend.attest_answer(["a"])
    assert BLOB not in str(caught.value)
    assert "cannot use" in str(caught.value)
    backend.close()


def test_a_forked_process_starts_a_helper_of_its_own(helped):
    helped.attest_answer(["a"])
    first = helped.pid()
    # as after a fork: the helper belongs to another process id
    helped._helper.owner = -1
    assert helped.attest_answer(["a"]).levels == {"a": T}
    assert helped.pid() != first
    # its request pipe closed here, the parent's helper ends when the
    # parent closes its own: here there is no other copy, so it ends now
    deadline = time.monotonic() + 10
    while not ended(first) and time.monotonic() < deadline:
        try:
            os.waitpid(first, os.WNOHANG)
        except ChildProcessError:
            break
        time.sleep(0.05)
    assert ended(first)


def test_make_client_offloads_refreshes_ahead_of_the_oat_backend(conf, oat,
                                                                 pki):
    for key, value in {
            "backend": "oat", "attestation_server": "127.0.0.1",
            "attestation_port": oat.port,
            "attestation_server_ca_file": str(pki["ca"].cert_path)}.items():
        conf.set_override(key, value, tp_conf.GROUP)
    client = tp_conf.make_client(conf)
    assert isinstance(client.background, ProcessBackend)
    assert client.background.inner is client.backend
    client.close()
    conf.set_override("refresh_ahead_process", False, tp_conf.GROUP)
    client = tp_conf.make_client(conf)
    assert client.background is None
    client.close()
    conf.set_override("refresh_ahead_process", True, tp_conf.GROUP)
    conf.set_override("refresh_ahead", False, tp_conf.GROUP)
    client = tp_conf.make_client(conf)
    assert client.background is None
    client.close()


# -- the client with a helper ----------------------------------------------

TTL, LEAD = 10.0, 2.5


def settle(client):
    """Wait for the refresh thread to have nothing left to do (it then
    waits for more to come due, or ends: see test_the_thread_ends_*)."""
    assert client._ahead_idle.wait(20), "the refresh ahead never settled"


def test_a_refresh_ahead_is_made_by_the_helper(inner, helped, oat):
    clock = Clock(1000.0)
    client = AttestationClient(inner, ttl=TTL, refresh_ahead=LEAD,
                               clock=clock, background=helped)
    assert client.level("a").level is T
    polls = oat.polls()
    clock.advance(TTL - LEAD + 0.5)
    oat.levels["a"] = "untrusted"
    assert client.level("a").level is T  # still the first answer's
    settle(client)
    assert helped.answered == 1 and oat.polls() == polls + 1
    # the helper's answer is the one kept, with a deadline of its own
    clock.advance(LEAD)
    assert client.level("a").level is U
    assert oat.polls() == polls + 1
    client.close()
    assert helped.closed


def test_a_failing_helper_leaves_the_refresh_to_this_process(inner, oat,
                                                             caplog):
    clock = Clock(1000.0)
    broken = ProcessBackend(inner, command=fake_helper("sys.exit(3)"))
    client = AttestationClient(inner, ttl=TTL, refresh_ahead=LEAD,
                               clock=clock, background=broken)
    caplog.set_level(logging.WARNING)
    assert client.level("a").level is T
    polls = oat.polls()
    clock.advance(TTL - LEAD + 0.5)
    oat.levels["a"] = "untrusted"
    client.level("a")
    settle(client)
    # refreshed all the same, here, and no failure remembered
    assert oat.polls() == polls + 1
    assert client._failure is None
    assert any("made in this process" in r.getMessage()
               for r in caplog.records)
    clock.advance(LEAD)
    assert client.level("a").level is U
    client.close()


def test_a_failing_helper_is_no_attestation_failure_to_the_observer(
        inner, oat, caplog):
    """What the client tells its observer (the service's failure metric)
    and logs is what it would without a helper: the helper's failures are
    not the service's, and once the helper is not used, refreshes ahead
    are made here without a word (the helper said so once)."""
    clock = Clock(1000.0)
    broken = ProcessBackend(inner, command=fake_helper("sys.exit(3)"))
    seen = []
    client = AttestationClient(inner, ttl=TTL, refresh_ahead=LEAD,
                               clock=clock, background=broken,
                               observer=lambda seconds, cause:
                               seen.append(cause))
    caplog.set_level(logging.WARNING)
    assert client.level("a").level is T
    for _ in range(MAX_FAILURES + 2):
        clock.advance(TTL - LEAD + 0.5)
        client.level("a")
        settle(client)
        clock.advance(LEAD)
        assert client.level("a").level is T  # refreshed here in time
        clock.advance(61)  # past the once-a-minute warnings
        client.level("a")  # expired: asked again, not ahead
    assert broken.broken is not None
    assert seen and set(seen) == {None}
    here = [r for r in caplog.records
            if "made in this process" in r.getMessage()]
    assert len(here) == MAX_FAILURES
    client.close()


def test_no_answer_outlives_its_deadline_while_the_helper_hangs(inner,
                                                                helped):
    """The invariant, with a helper stopped mid-refresh: once the answer's
    own deadline passes, the host is not trusted, whatever the helper (or
    the refresh waiting on it) is doing."""
    clock = Clock(1000.0)
    client = AttestationClient(inner, ttl=TTL, refresh_ahead=LEAD,
                               clock=clock, background=helped, max_wait=0.2)
    assert client.level("a").level is T
    helped.attest_answer(["a"])  # the helper runs
    os.kill(helped.pid(), signal.SIGSTOP)
    clock.advance(TTL - LEAD + 0.5)
    assert client.level("a").level is T  # starts the refresh ahead
    seen = []

    def ask() -> None:
        seen.append(client.level("a").level)

    deadline = time.monotonic() + 10
    while not client._refresh_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client._refresh_lock.locked()  # the refresh waits on the helper
    clock.advance(LEAD)  # the first answer's deadline
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [K] * 4
    settle(client)
    client.close()


def test_options_that_do_not_travel_are_the_helpers_failure(inner,
                                                            monkeypatch):
    from trustpool.attestation.backends import process

    monkeypatch.setattr(process, "_options_of",
                        lambda backend: {"backend": "oat", "odd": object()})
    before = len(os.listdir("/proc/self/fd"))
    backend = ProcessBackend(inner)
    with pytest.raises(OffloadError, match="TypeError"):
        backend.attest_answer(["a"])
    backend.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_answers_travel_in_memory_not_in_a_file_on_disk(helped):
    helped.attest_answer(["a"])
    answer_fd = helped._helper.answer_fd
    assert os.readlink(f"/proc/self/fd/{answer_fd}").startswith("/memfd:")

# -- attacks: a helper that stops reading, ... --------------------------------

def stops_reading(seconds: float) -> list[str]:
    """A helper that starts, then reads no request for ``seconds``."""
    return fake_helper(f"""
        import time
        frame()
        send(b"R")
        time.sleep({seconds})
        while True:
            frame()
        """)


#: more names than a pipe holds (64 KiB) once marshalled
MANY = [f"host-{i:06d}.example" for i in range(20000)]


def test_a_helper_that_stops_reading_requests_is_given_up_at_the_deadline(
        inner):
    """A request bigger than the pipe holds, sent to a helper that does
    not read it: writing the request counts against the exchange's
    deadline as reading the answer does (the helper here starts reading
    again, late, so that the unfixed write ends at all)."""
    backend = ProcessBackend(inner, command=stops_reading(6))
    start = time.monotonic()
    with pytest.raises(OffloadError, match="in time") as caught:
        backend.attest_answer(MANY)
    assert time.monotonic() - start < backend.timeout
    assert caught.value.cause == "timeout"
    backend.close()


def test_a_backend_that_is_not_the_installed_one_is_not_offloaded(conf, oat,
                                                                   pki):
    """The helper builds the backend installed under the class's name: a
    class of its own (here a stricter reader, which inherits the name
    ``oat``) must not be replaced there by the installed one, whether it
    is registered in code under another name or built directly."""
    from trustpool.attestation.backends import (
        register_backend,
        unregister_backend,
    )
    from trustpool.attestation.backends.oat import OATBackend
    from trustpool.attestation.backends.process import offloadable

    class Stricter(OATBackend):
        def attest_answer(self, hostnames):
            answer = super().attest_answer(hostnames)
            answer.levels = dict.fromkeys(answer.levels, U)
            return answer

    for key, value in {
            "attestation_server": "127.0.0.1", "attestation_port": oat.port,
            "attestation_server_ca_file": str(pki["ca"].cert_path)}.items():
        conf.set_override(key, value, tp_conf.GROUP)
    assert offloadable(load_backend(conf, "oat")) is None
    assert offloadable(Stricter(conf)) is not None
    register_backend("stricter", Stricter)
    try:
        conf.set_override("backend", "stricter", tp_conf.GROUP)
        client = tp_conf.make_client(conf)
        assert type(client.backend) is Stricter
        assert client.background is None
        client.close()
    finally:
        unregister_backend("stricter")


def test_the_helper_ends_when_its_parent_is_killed_mid_request(inner, oat):
    """No orphan: a parent SIGKILLed while its helper waits on the service
    leaves a helper that ends once its exchange does (the reply pipe has
    no reader), not one that waits for requests for ever."""
    import subprocess

    release = threading.Event()

    def slow(request):
        release.wait(5)
        return oat.poll_hosts(request)

    oat.responder = slow
    ca = inner.conf[tp_conf.GROUP].attestation_server_ca_file
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from oslo_config import cfg
        from trustpool import conf as tp_conf
        from trustpool.attestation.backends import load_backend
        from trustpool.attestation.backends.process import ProcessBackend
        conf = cfg.ConfigOpts()
        tp_conf.register_opts(conf)
        conf([], default_config_files=[])
        for key, value in {{
                "attestation_server": "127.0.0.1",
                "attestation_port": {oat.port},
                "attestation_server_ca_file": {ca!r},
                "connect_timeout": 1.0, "read_timeout": 4.0}}.items():
            conf.set_override(key, value, tp_conf.GROUP)
        backend = ProcessBackend(load_backend(conf, "oat"))
        import time
        backend._running(time.monotonic() + 10)
        print(backend.pid(), flush=True)
        backend.attest_answer(["a"])
        """)], stdout=subprocess.PIPE, text=True)
    try:
        helper = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while not oat.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert oat.requests  # the helper is mid-request
        parent.kill()
        parent.wait(5)
        release.set()
        deadline = time.monotonic() + 5
        while not ended(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended(helper)
    finally:
        release.set()
        parent.kill()
        parent.wait(5)
        parent.stdout.close()


def test_the_helper_imports_nothing_from_the_working_directory(
        helped, tmp_path, monkeypatch):
    """``python -m`` puts the working directory first on the module path:
    a ``json.py`` (or ``trustpool/``) planted in the scheduler's working
    directory would run in the helper, which is then handed the auth
    blob. The scheduler itself imports nothing from there."""
    import trustpool

    marker = tmp_path / "hijacked"
    (tmp_path / "json.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "raise SystemExit(9)\n")
    root = os.path.dirname(os.path.dirname(trustpool.__file__))
    monkeypatch.setenv("PYTHONPATH", root)
    monkeypatch.chdir(tmp_path)
    assert helped.attest_answer(["a"]).levels == {"a": T}
    assert not marker.exists()


# -- whatever the helper's file holds ---------------------------------------

_ASKED = {"a", "b", "c"}
_NAMES = st.sampled_from(["a", "b", "c", "d", "", "a "]) | st.binary(
    max_size=2) | st.integers(-1, 1)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=4) | st.binary(max_size=4)
    | st.sampled_from(["trusted", "untrusted", "unknown", "TRUSTED"]),
    lambda inner: st.lists(inner, max_size=2) | st.tuples(inner, inner)
    | st.dictionaries(_NAMES, inner, max_size=2), max_leaves=6)


@st.composite
def _columns(draw):
    """Four columns close to an answer's: the same names in each, values
    mostly of the right kinds; one column sometimes off by a name."""
    keys = draw(st.lists(_NAMES, max_size=4,
                         unique_by=lambda key: (type(key), key)))
    level = st.sampled_from(["trusted", "untrusted", "unknown"]) | _VALUES
    text = st.text(max_size=3) | _VALUES
    columns = [{key: draw(kind) for key in keys} for kind in (
        level, text, st.none() | text, st.just("oat") | _VALUES)]
    if draw(st.booleans()):
        column = columns[draw(st.integers(0, 3))]
        column[draw(_NAMES)] = draw(_VALUES)
    return tuple(columns) if draw(st.integers(0, 9)) else draw(_VALUES)


@settings(max_examples=400, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(columns=_columns())
def test_no_helper_file_makes_an_unasked_or_malformed_answer(inner,
                                                              columns):
    """The invariant, for any marshalled object the helper could leave in
    its file: the parent reads it as an Answer or raises OffloadError, and
    the client keeps only what the backend contract allows (names asked
    about, plain strings, real trust levels, the same names in every
    column); anything else is refused."""
    import marshal

    from trustpool.attestation.backends.process import _answer_of

    client = AttestationClient(inner, ttl=TTL)
    try:
        answer = _answer_of(marshal.dumps(columns, 4))
    except OffloadError:
        return
    try:
        kept = client._checked_answer(answer, _ASKED)
    except AttestationError:
        return
    levels = kept.levels
    assert _ASKED.issuperset(levels)
    assert all(type(name) is str for name in levels)
    assert all(type(level) is TrustLevel for level in levels.values())
    assert levels.keys() == kept.reasons.keys() == kept.vtimes.keys() \
        == kept.backends.keys()
    assert all(type(text) is str for text in kept.reasons.values())
    assert all(type(text) is str for text in kept.backends.values())
    assert all(time is None or type(time) is str
               for time in kept.vtimes.values())


def test_an_interrupt_while_waiting_stops_the_helper(helped, monkeypatch):
    """Not an Exception (a green thread killed, Ctrl-C) while the parent
    waits: the helper may be mid-answer, so it is not asked again."""
    helped.attest_answer(["a"])
    pid = helped.pid()
    from trustpool.attestation.backends import process

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(process._Helper, "_receive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        helped.attest_answer(["a"])
    assert helped.pid() is None and ended(pid)
    monkeypatch.undo()
    assert helped.attest_answer(["a"]).levels == {"a": T}


def test_the_helper_has_a_session_of_its_own(helped):
    helped.attest_answer(["a"])
    assert os.getsid(helped.pid()) != os.getsid(0)


def test_starting_the_helper_does_not_count_as_refresh_time(inner, helped):
    """The lead grows with how long refreshes take; the helper's start
    (once per helper, an interpreter and its imports) is not part of that,
    or one start would keep the next refreshes asking early."""
    offset = [0.0]
    client = AttestationClient(
        inner, ttl=TTL, refresh_ahead=LEAD, background=helped,
        clock=lambda: time.monotonic() + offset[0])
    assert client.level("a").level is T
    offset[0] += TTL - LEAD + 0.5
    start = time.monotonic()
    client.level("a")  # due: the refresh ahead starts the helper
    settle(client)
    total = time.monotonic() - start
    assert helped.answered == 1 and helped.started_in > 0.05
    assert len(client._ahead_took) == 1
    assert client._ahead_took[0] <= total - helped.started_in + 0.02
    client.close()


def test_a_helper_that_cannot_build_its_backend_masks_the_secrets():
    """The secret options' values are masked in what the helper says from
    the start, before its backend (which knows its own secrets) exists:
    here the build fails on a value that is the auth blob."""
    import json
    import struct
    import subprocess

    from trustpool.attestation.backends.process import _BOOT

    ask_r, ask_w = os.pipe()
    reply_r, reply_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", _BOOT, str(ask_r), str(reply_w), "-1"],
        pass_fds=(ask_r, reply_w), stderr=subprocess.PIPE)
    os.close(ask_r)
    os.close(reply_w)
    options = json.dumps({
        "backend": "oat", "secrets": [BLOB],
        "groups": {"trusted_computing": {"attestation_port": BLOB}}}).encode()
    os.write(ask_w, struct.pack("!cQ", b"C", len(options)) + options)
    with os.fdopen(reply_r, "rb") as reply:
        kind, size = struct.unpack("!cQ", reply.read(9))
        said = reply.read(size).decode()
    os.close(ask_w)
    _, stderr = proc.communicate(timeout=10)
    assert kind == b"E" and "ValueError" in said
    assert BLOB not in said and BLOB not in stderr.decode()
