"""The helper process of refreshes ahead under Nova's eventlet
monkey-patching (this tier's default mode): a helper that dies or stops
reading fails the exchange in time, and never blocks the hub.

eventlet's green ``os.write`` retries a broken pipe for ever, and on a
blocking pipe it blocks every green thread until the pipe drains.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from trustpool import conf as tp_conf
from trustpool.attestation.backends import load_backend
from trustpool.attestation.backends.process import OffloadError, ProcessBackend

from tests.unit.test_process_backend import MANY, stops_reading


@pytest.fixture
def inner(conf, oat_server, pki):
    oat_server.levels.update({"a": "trusted"})
    for key, value in {
            "backend": "oat", "attestation_server": "127.0.0.1",
            "attestation_port": oat_server.port,
            "attestation_server_ca_file": str(pki["ca"].cert_path),
            "connect_timeout": 1.0, "read_timeout": 1.0}.items():
        conf.set_override(key, value, tp_conf.GROUP)
    backend = load_backend(conf, "oat")
    yield backend
    backend.close()


def in_thread(backend: ProcessBackend, names: list[str]) -> list:
    """``backend.attest_answer(names)`` in a (green) thread, waited for a
    few seconds past its deadline: what it raised, or ``[]`` if it still
    runs (its thread is then left behind, with the backend)."""
    outcome: list = []

    def ask() -> None:
        try:
            backend.attest_answer(names)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - looked at by the test
            outcome.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(backend.timeout + 3)
    return outcome


def test_a_killed_helper_fails_the_next_exchange_under_eventlet(inner):
    backend = ProcessBackend(inner)
    assert backend.attest_answer(["a"]).levels
    os.kill(backend.pid(), signal.SIGKILL)
    time.sleep(0.2)
    outcome = in_thread(backend, ["a"])
    assert outcome and isinstance(outcome[0], OffloadError), outcome
    assert "ended" in str(outcome[0])
    # and the next one starts another helper
    assert backend.attest_answer(["a"]).levels
    backend.close()


def test_a_helper_that_stops_reading_never_blocks_the_hub(inner):
    backend = ProcessBackend(inner, command=stops_reading(4))
    ticks: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.05)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    start = time.monotonic()
    outcome = in_thread(backend, MANY)
    stop.set()
    ticker.join(5)
    assert outcome and isinstance(outcome[0], OffloadError), outcome
    assert time.monotonic() - start < backend.timeout + 0.5
    # the other green threads ran while the exchange waited
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert gaps and max(gaps) < 1.0, max(gaps)
    backend.close()
