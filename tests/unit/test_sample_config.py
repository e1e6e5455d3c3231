"""The committed sample config matches the options in the code."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_sample_is_up_to_date(tmp_path):
    out = tmp_path / "sample.conf"
    subprocess.run(
        [sys.executable, "-m", "oslo_config.generator",
         "--config-file",
         str(ROOT / "etc/trustpool/trustpool-config-generator.conf"),
         "--output-file", str(out)],
        check=True, cwd=ROOT)
    committed = (ROOT / "etc/trustpool/trustpool.conf.sample").read_text()
    assert out.read_text() == committed, "run: tox -e genconfig"
