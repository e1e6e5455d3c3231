from tests.support.fixtures import (  # noqa: F401
    conf,
    no_secret_in_logs,
    oat_server,
    pki,
)
