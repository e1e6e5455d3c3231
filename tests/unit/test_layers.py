"""The layers are a contract that a tool checks (import-linter), and the
contract would catch each way the layers were broken before."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINT = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable)
                                              .parent))


def lint(tree: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, capture_output=True, text=True, timeout=120,
        env={"PATH": str(pathlib.Path(sys.executable).parent),
             "PYTHONPATH": str(tree)})


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(ROOT / "trustpool", tmp_path / "trustpool")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold():
    assert LINT, "import-linter is not installed"
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    # the library reading the application's options (as client.py did)
    ("attestation/client.py", "from trustpool import conf",
     "The attestation library stands alone"),
    # a backend importing the options module's group name (as oat.py did)
    ("attestation/backends/oat.py", "from trustpool.conf import GROUP",
     "The attestation library stands alone"),
    # the filter loading the trait sync and so keystoneauth1 (as it did)
    ("filter.py", "from trustpool import trait_sync",
     "Inside nova-scheduler and nova-api"),
    ("decision_record.py", "import keystoneauth1",
     "Inside nova-scheduler and nova-api"),
    # options reaching up to the service clients (the old circle)
    ("conf.py", "from trustpool.openstack import compute",
     "Layers"),
    ("trait_sync.py", "import nova", "Only the Nova plug-ins import Nova"),
    # the metrics' library below the operator layer (the filter would then
    # need an optional extra to load)
    ("attestation/client.py", "import prometheus_client",
     "Only trustpool.metrics imports prometheus_client"),
    ("filter.py", "import prometheus_client",
     "Only trustpool.metrics imports prometheus_client"),
    ("trait_sync.py", "from prometheus_client import Counter",
     "Only trustpool.metrics imports prometheus_client"),
    # the pass reaching up to the metrics built on it
    ("trait_sync.py", "from trustpool.metrics import service", "Layers"),
    # the event schema the filter imports, pulling in the options
    ("events.py", "from trustpool import conf",
     "The audit event schema stands alone"),
    # the server under both listeners reaching into one of them, or
    # taking the metrics' optional extra along to the other
    ("serving.py", "from trustpool.revocation import observer",
     "The bounded server under both listeners stands alone"),
    ("serving.py", "import prometheus_client",
     "Only trustpool.metrics imports prometheus_client"),
    # the scheduler filter starting a listener
    ("filter.py", "from trustpool import serving",
     "Inside nova-scheduler and nova-api"),
    # the log reader building a Nova client of its own
    ("report/reader.py", "from trustpool.openstack import compute",
     "The compliance report reads logs only"),
])
def test_each_old_violation_breaks_a_contract(tree, module, line, contract):
    path = tree / "trustpool" / module
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    path.write_text(text.replace(marker, f"{marker}\n{line}  # noqa\n", 1))
    result = lint(tree)
    assert result.returncode != 0
    # long contract names wrap in lint-imports' summary
    summary = " ".join(result.stdout.split())
    assert re.search(re.escape(contract) + r"((?!KEPT).)*?BROKEN",
                     summary), result.stdout


def test_the_library_loads_no_nova_and_no_keystoneauth1():
    code = ("import sys, trustpool.attestation, trustpool.conf, "
            "trustpool.decision_record; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('nova', 'keystoneauth1')); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
