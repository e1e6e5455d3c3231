from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

from tests.keylime.stack import KeylimeStack

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keylime_stack(request):
    venv = pathlib.Path(os.environ.get(
        "TRUSTPOOL_KEYLIME_VENV", ROOT / ".tox" / "keylime-6.6"))
    if not (venv / "bin" / "keylime_verifier").exists():
        pytest.fail(f"no Keylime venv at {venv}: run "
                    "python tests/keylime/prepare.py (tox -e keylime does)")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-keylime-"))
    stack = KeylimeStack(venv, workdir)
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
