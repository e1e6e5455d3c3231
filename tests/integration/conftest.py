from tests.support.fixtures import conf, oat_server, pki  # noqa: F401
