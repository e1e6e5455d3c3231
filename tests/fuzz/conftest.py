"""The generative fuzz tier (``tox -e fuzz``; ``tox -e fuzz-long``).

Hypothesis profiles, chosen by ``TRUSTPOOL_HYPOTHESIS_PROFILE``:

- ``default``: the default run, a few dozen examples per test;
- ``thorough``: the long run, at least 10,000 examples across the tier.

Both: no per-example deadline (an example may wait for a peer on purpose),
no "too slow" health check, random (not derandomized) exploration, the
statistics printed at the end, and the failing examples kept in a database
outside the source tree (``TRUSTPOOL_HYPOTHESIS_DB``, by default under the
system's temporary directory) so a rerun starts with them.

Also here, for every test of the tier: the leak scan watches every log
record for the secrets the tier configures, and :class:`LogCapture` hands
a test the records emitted while it ran an entry point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.fuzz import strategies
from tests.support import leakcheck

PROFILE = os.environ.get("TRUSTPOOL_HYPOTHESIS_PROFILE", "default")
#: examples per hypothesis test, by profile; the HTTP tier has 6 tests,
#: so "thorough" is 10,200 examples there alone
MAX_EXAMPLES = {"default": 100, "thorough": 1700}


def examples_per_test(default: int | None = None) -> int:
    """Examples per test: ``TRUSTPOOL_FUZZ_EXAMPLES`` when set (a quick
    look, a long hunt), else what the profile says."""
    override = os.environ.get("TRUSTPOOL_FUZZ_EXAMPLES")
    if override:
        return int(override)
    return MAX_EXAMPLES.get(PROFILE, default or MAX_EXAMPLES["default"])


_DATABASE = DirectoryBasedExampleDatabase(os.environ.get(
    "TRUSTPOOL_HYPOTHESIS_DB",
    os.path.join(tempfile.gettempdir(), "trustpool-fuzz-hypothesis")))
_COMMON = {
    "deadline": None,
    "derandomize": False,
    "suppress_health_check": [HealthCheck.too_slow,
                              HealthCheck.data_too_large,
                              HealthCheck.filter_too_much,
                              HealthCheck.large_base_example],
    "print_blob": True,
    "database": _DATABASE,
    # no "explain" phase: it reruns every failure many times over
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target,
               Phase.shrink],
}
for _name, _count in MAX_EXAMPLES.items():
    settings.register_profile(_name, max_examples=_count, **_COMMON)
settings.load_profile(PROFILE)


def pytest_configure(config: pytest.Config) -> None:
    # the same as passing --hypothesis-show-statistics
    config.option.hypothesis_show_statistics = True


def pytest_report_header(config: pytest.Config) -> str:
    return (f"trustpool fuzz tier: hypothesis profile {PROFILE!r} "
            f"({examples_per_test()} examples per HTTP test)")


class LogCapture:
    """Every log record emitted while :meth:`collect` is active, as
    ``(logger name, level, text)``; the text includes the exception a
    record carries, as the leak scan reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[list[tuple[str, int, str]]] = []

    def add(self, record: logging.LogRecord) -> None:
        with self._lock:
            if not self._active:
                return
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record still counts
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        if record.exc_text:
            text += " " + record.exc_text
        with self._lock:
            for sink in self._active:
                sink.append((record.name, record.levelno, text))

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[tuple[str, int, str]]]:
        sink: list[tuple[str, int, str]] = []
        with self._lock:
            self._active.append(sink)
        try:
            yield sink
        finally:
            with self._lock:
                self._active.remove(sink)


CAPTURE = LogCapture()
_installed = False


def _install_capture() -> None:
    global _installed
    if _installed:
        return
    leakcheck.install()
    previous = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger,
                      record: logging.LogRecord) -> None:
        CAPTURE.add(record)
        previous(self, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]
    _installed = True


@pytest.fixture(scope="session")
def log_capture() -> LogCapture:
    """Log records per entry-point call; the leak scan is on as well, with
    the tier's secrets registered."""
    _install_capture()
    for secret in strategies.BLOBS.values():
        leakcheck.register(secret)
    leakcheck.register(strategies.V_HALF)
    return CAPTURE
