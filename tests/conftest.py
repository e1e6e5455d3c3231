"""Fixtures every tier shares (see tests/support/fixtures.py)."""

from tests.support.fixtures import (  # noqa: F401
    conf,
    no_secret_in_logs,
    oat_server,
    pki,
)
