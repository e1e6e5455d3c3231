from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

from tests.keylime.stack import KeylimeStack
from tests.support.placement_server import _free_port as free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def keylime_stack(pki):
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
