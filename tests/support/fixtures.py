"""pytest fixtures shared by the tiers: a fresh config, a throwaway PKI.

Not a root conftest on purpose: the real-Nova tier must monkey-patch
before requests/urllib3 are imported, so each tier's conftest imports
these fixtures itself (tests/nova imports Nova first).
"""

from __future__ import annotations

import pytest
from oslo_config import cfg

from trustpool import conf as tp_conf

from tests.support import leakcheck
from tests.support.oat_server import OATServer
from tests.support.pki import make_pki


@pytest.fixture
def conf() -> cfg.ConfigOpts:
    """A ConfigOpts of its own per test, trustpool's options registered."""
    c = cfg.ConfigOpts()
    tp_conf.register_opts(c)
    c([], project="trustpool", default_config_files=[])
    return c


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def oat_server(pki: dict):
    """A running HTTPS PollHosts server with a certificate from ``pki``."""
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
