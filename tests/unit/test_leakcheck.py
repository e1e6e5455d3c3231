"""The log watcher itself must catch a leak, or it proves nothing."""

from __future__ import annotations

import logging

from tests.support import leakcheck


def test_a_logged_secret_is_caught(pki):
    leakcheck.install()
    leakcheck.take_leaks()
    key_line = pki["client"].key_pem.decode().splitlines()[1]
    logging.getLogger("trustpool.test").debug("oops %s", key_line)
    leakcheck.register("a-registered-blob")
    try:
        raise ValueError("blob=a-registered-blob")
    except ValueError:
        logging.getLogger("trustpool.test").exception("failed")
    leaks = leakcheck.take_leaks()
    assert len(leaks) == 2
    assert leakcheck.take_leaks() == []
