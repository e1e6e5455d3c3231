"""pytest fixtures shared by every tier (tests/conftest.py exports them):
a fresh config, a throwaway PKI, an HTTPS PollHosts server, the leak scan.

Imports that reach requests or urllib3 (trustpool, oslo.config) happen
inside the fixtures, not here: the real-Nova tier must monkey-patch before
they are imported, and tests/nova/__init__.py does that first.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import leakcheck


@pytest.fixture
def conf() -> Any:
    """A ConfigOpts of its own per test, trustpool's options registered."""
    from oslo_config import cfg

    from trustpool import conf as tp_conf

    c = cfg.ConfigOpts()
    tp_conf.register_opts(c)
    c([], project="trustpool", default_config_files=[])
    return c


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tests.support.pki import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def oat_server(pki: dict):
    """A running HTTPS PollHosts server with a certificate from ``pki``."""
    from tests.support.oat_server import OATServer

    server = OATServer(pki["server"].cert, pki["server"].key).start()
    yield server
    server.stop()



@pytest.fixture(autouse=True)
def no_secret_in_logs():
    """Fail any test during which a secret reached a log record."""
    leakcheck.install()
    leakcheck.take_leaks()
    yield
    leaks = leakcheck.take_leaks()
    assert not leaks, f"secrets in logs: {leaks}"
