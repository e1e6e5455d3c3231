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


def test_multi_line_and_quoted_forms_are_caught():
    leakcheck.install()
    leakcheck.take_leaks()
    secret = "two-line-secret-top\ntwo-line-secret-bottom"
    leakcheck.register(secret)
    log = logging.getLogger("trustpool.test")
    log.warning("Invalid header value %r", secret)      # repr: \n escaped
    log.warning("second line alone: two-line-secret-bottom")
    assert len(leakcheck.take_leaks()) == 2
    assert leakcheck.scan_text('"two-line-secret-top\\ntwo-line')
