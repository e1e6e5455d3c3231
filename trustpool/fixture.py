# SPDX-License-Identifier: Apache-2.0
"""A test fixture for deployers: set host trust levels without a server.

Use it in your own Nova functional tests to check that your flavors and
scheduler configuration place trusted workloads where they should::

    from nova import conf
    from trustpool.fixture import TrustFixture

    class MyTrustedBootTest(integrated_helpers.ProviderUsageBaseTestCase):
        compute_driver = 'fake.MediumFakeDriver'

        def setUp(self):
            # before super().setUp(): the scheduler loads its filters there
            self.trust = self.useFixture(TrustFixture(
                conf.CONF, {'host1': 'trusted', 'host2': 'untrusted'}))
            super().setUp()
            ...

        def test_moves_off_a_compromised_host(self):
            self.trust.set_level('host1', 'untrusted')
            ...
            self.trust.fail('attestation service down')  # every host unknown

The fixture enables TrustedFilter in ``[filter_scheduler]`` (unless
``enable_filter=False``), selects an in-memory attestation backend, and
sets ``attestation_auth_timeout = 0`` so changes apply to the next
scheduling request. Everything is undone at cleanup.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import fixtures
from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool.attestation import backends
from trustpool.attestation.model import HostReport, TrustLevel
from trustpool.exceptions import AttestationError

__all__ = ["TrustFixture"]

_BACKEND_NAME = "trustpool-fixture"
FILTER_PATH = "trustpool.filter.TrustedFilter"


class _FixtureBackend(backends.AttestationBackend):
    """Answers from the active :class:`TrustFixture`'s table."""

    name = _BACKEND_NAME
    active: TrustFixture | None = None

    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        fixture = _FixtureBackend.active
        if fixture is None:
            raise AttestationError("no TrustFixture is active")
        return fixture._answer(hostnames)

    def list_hosts(self) -> list[str]:
        fixture = _FixtureBackend.active
        return sorted(fixture.levels) if fixture else []


class TrustFixture(fixtures.Fixture):
    """Host trust levels for tests, served to TrustedFilter in-process."""

    def __init__(self, conf: cfg.ConfigOpts,
                 levels: Mapping[str, str] | None = None, *,
                 enable_filter: bool = True, ttl: int = 0) -> None:
        super().__init__()
        self.conf = conf
        self.levels: dict[str, str] = dict(levels or {})
        self.enable_filter = enable_filter
        self.ttl = ttl
        self.requests: list[list[str]] = []
        self._failure: str | None = None
        self._lock = threading.Lock()

    def _setUp(self) -> None:
        if _FixtureBackend.active is not None:
            raise RuntimeError("only one TrustFixture can be active")
        tp_conf.register_opts(self.conf)
        backends.register_backend(_BACKEND_NAME, _FixtureBackend)
        _FixtureBackend.active = self
        self.addCleanup(self._deactivate)
        self._override(tp_conf.GROUP, backend=_BACKEND_NAME,
                       attestation_auth_timeout=self.ttl,
                       failure_retry_interval=0)
        if self.enable_filter:
            group = self.conf.filter_scheduler
            available = list(group.available_filters)
            if FILTER_PATH not in available:
                available.append(FILTER_PATH)
            enabled = list(group.enabled_filters)
            if "TrustedFilter" not in enabled:
                enabled.append("TrustedFilter")
            self._override("filter_scheduler", available_filters=available,
                           enabled_filters=enabled)

    def set_level(self, host: str, level: str | None) -> None:
        """Set ``host``'s answer; ``None`` makes the service forget it."""
        if level is not None and level not in TrustLevel._value2member_map_:
            raise ValueError(f"not a trust level: {level!r}")
        with self._lock:
            if level is None:
                self.levels.pop(host, None)
            else:
                self.levels[host] = level

    def fail(self, message: str = "simulated attestation failure") -> None:
        """Make every attestation request fail until :meth:`recover`."""
        self._failure = message

    def recover(self) -> None:
        self._failure = None

    def _answer(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        with self._lock:
            self.requests.append(list(hostnames))
            if self._failure is not None:
                raise AttestationError(self._failure)
            return {name: HostReport(name, TrustLevel(self.levels[name]),
                                     "fixture", "set by TrustFixture")
                    for name in hostnames if name in self.levels}

    def _override(self, group: str, **values: object) -> None:
        for name, value in values.items():
            self.conf.set_override(name, value, group=group)
            self.addCleanup(self.conf.clear_override, name, group=group)

    def _deactivate(self) -> None:
        _FixtureBackend.active = None
        backends.unregister_backend(_BACKEND_NAME)
