"""Fixtures shared by the unit tests."""

from __future__ import annotations

import json
import logging

import pytest

from trustpool import events


@pytest.fixture
def audit(caplog):
    """A function returning every audit event logged so far, decoded."""
    caplog.set_level(logging.DEBUG)

    def read() -> list[dict]:
        return [json.loads(r.getMessage()) for r in caplog.records
                if r.name == events.AUDIT_LOGGER]

    return read
