from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import threading

import pytest

from tests.keylime.stack import KeylimeStack
from tests.support.placement_server import PlacementServer
from tests.support.placement_server import _free_port as free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]


class _Starting:
    """A real Placement starting in a thread, beside the Keylime stack:
    both take seconds, mostly waiting for processes to come up."""

    def __init__(self, server: PlacementServer) -> None:
        self.server = server
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            self.server.start()
        except BaseException as exc:  # noqa: BLE001 - raised in ready()
            self.error = exc

    def ready(self) -> PlacementServer:
        self.thread.join(120)
        if self.error is not None:
            raise self.error
        if self.thread.is_alive():
            raise RuntimeError("Placement did not start in 120 s")
        return self.server


@pytest.fixture(scope="session")
def _placement_starting(tmp_path_factory):
    starting = _Starting(PlacementServer(tmp_path_factory.mktemp(
        "placement")))
    yield starting
    starting.thread.join(120)
    starting.server.stop()


@pytest.fixture(scope="session")
def placement(_placement_starting) -> PlacementServer:
    """The tier's real Placement (gunicorn, sqlite)."""
    return _placement_starting.ready()


@pytest.fixture(scope="session")
def keylime_stack(pki, _placement_starting):
    """One stack for the tier (its start is most of the tier's cost). The
    verifier POSTs revocations to ``stack.webhook_url``, where
    test_revocation_webhook.py's service listens with ``pki["server"]``'s
    certificate; tests that need a trusted agent after another test
    extended the PCR call ``stack.reenrol()``."""
    venv = pathlib.Path(os.environ.get(
        "TRUSTPOOL_KEYLIME_VENV", ROOT / ".tox" / "keylime-6.6"))
    if not (venv / "bin" / "keylime_verifier").exists():
        pytest.fail(f"no Keylime venv at {venv}: run "
                    "python tests/keylime/prepare.py (tox -e keylime does)")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-keylime-"))
    stack = KeylimeStack(
        venv, workdir,
        webhook_url=f"https://127.0.0.1:{free_port()}/",
        webhook_ca=pki["ca"].cert_path)
    try:
        stack.start()
        stack.enrol()
        yield stack
    except Exception:
        for name in ("verifier", "registrar", "agent"):
            print(f"===== {name} log =====\n{stack.log(name)[-3000:]}")
        raise
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
