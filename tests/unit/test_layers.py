"""The library layer must be usable without Nova."""

from __future__ import annotations

import subprocess
import sys


def test_attestation_library_does_not_import_nova():
    code = ("import sys, trustpool.attestation, trustpool.conf, "
            "trustpool.attestation.backends.oat; "
            "trustpool.conf.list_opts(); "
            "bad = sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'nova'); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
