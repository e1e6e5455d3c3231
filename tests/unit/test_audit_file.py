"""The audit file of the filter (``audit_log_file``) when what is at its
path changes after start-up: a write in a scheduling request must never
block on it."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from trustpool import decision_record


@pytest.fixture
def routed(tmp_path):
    path = tmp_path / "audit.jsonl"
    decision_record.send_to_file(str(path))
    yield path
    decision_record.stop_sending_to_file()


def _emit_in_thread(message):
    """Log ``message`` on the audit logger; whether the call returned."""
    worker = threading.Thread(target=lambda: logging.getLogger(
        decision_record.AUDIT_LOGGER).warning("%s", message), daemon=True)
    worker.start()
    worker.join(10)
    return not worker.is_alive()


@pytest.mark.parametrize("replacement", ["fifo", "device"])
def test_a_log_file_replaced_by_a_fifo_or_device_does_not_block(
        routed, replacement, caplog):
    """logrotate-style reopening: the file is gone and something that is
    not a regular file stands at its path. Opening a FIFO that nobody reads
    for writing would block the scheduling request (and, through the
    handler's lock, every later one); a device is no audit record."""
    assert _emit_in_thread('{"event": "first"}')
    os.unlink(routed)
    if replacement == "fifo":
        os.mkfifo(routed)
    else:
        os.symlink("/dev/null", routed)
    try:
        assert _emit_in_thread('{"event": "second"}'), "the write blocked"
        assert _emit_in_thread('{"event": "third"}'), "the write blocked"
    finally:
        if replacement == "fifo":             # free a blocked writer
            os.close(os.open(routed, os.O_RDONLY | os.O_NONBLOCK))
    assert "cannot write the audit record" in caplog.text
    if replacement == "device":
        assert "is not a regular file" in caplog.text
        assert os.path.getsize("/dev/null") == 0
