"""Every attestation fault, through Nova's real HostManager.

For each named fault of tests/support/faults.py: a trusted-flavor request
passes no host (unless the fault leaves valid data, which the mode states),
a flavor without the trust spec passes every host with no attestation
traffic, no exception reaches Nova, the call returns within the request
timeout plus a margin, and the failure is remembered so the next request
does not wait again.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import tempfile
import time
from unittest import mock

import fixtures
from nova import objects, test
from nova.scheduler import host_manager
from nova.tests.unit.scheduler import fakes
from oslo_utils.fixture import uuidsentinel as uuids

from trustpool import conf as tp_conf

from tests.nova.base import CONF, FILTER_PATH, TrustpoolNovaMixin
from tests.support import faults
from tests.support.pki import make_pki

MARGIN = 1.5  # seconds on top of connect_timeout + read_timeout


def spec(trust):
    extra = {"trust:trusted_host": trust} if trust else {}
    return objects.RequestSpec(
        ignore_hosts=[], force_hosts=[], force_nodes=[],
        instance_uuid=uuids.instance,
        flavor=objects.Flavor(name=f"f-{trust}", extra_specs=extra))


@mock.patch.object(host_manager.HostManager, "_init_instance_info",
                   new=mock.Mock())
@mock.patch.object(host_manager.HostManager, "_init_aggregates",
                   new=mock.Mock())
class FaultTest(TrustpoolNovaMixin, test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._pki_dir = tempfile.mkdtemp(prefix="trustpool-faults-")
        cls.pki = make_pki(pathlib.Path(cls._pki_dir))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls._pki_dir, ignore_errors=True)
        super().tearDownClass()

    def run_fault(self, mode):
        fault = faults.FAULTS[mode]
        server, options, started = faults.start(mode, self.pki)
        for s in started:
            self.addCleanup(s.stop)
        tp_conf.register_opts(CONF)
        self.flags(group="filter_scheduler", available_filters=[
            "nova.scheduler.filters.all_filters", FILTER_PATH],
            enabled_filters=["AllHostsFilter", "TrustedFilter"])
        self.flags(group=tp_conf.GROUP, failure_retry_interval=30,
                   **options)
        manager = host_manager.HostManager()
        hosts = [fakes.FakeHostState(f"compute-{n}", n, {})
                 for n in faults.HOSTS]
        budget = options["connect_timeout"] + options["read_timeout"]

        start = time.monotonic()
        passed = manager.get_filtered_hosts(hosts, spec("trusted"))
        elapsed = time.monotonic() - start
        passed = {h.nodename for h in passed}
        self.assertTrue(passed <= fault.may_pass,
                        f"{mode}: {sorted(passed)} passed")
        self.assertLess(elapsed, budget + MARGIN, mode)

        polls = server.polls()
        again = manager.get_filtered_hosts(hosts, spec("trusted"))
        self.assertEqual(set(), {h.nodename for h in again} - fault.may_pass)
        self.assertEqual(polls, server.polls(),
                         f"{mode}: the failure was not remembered")

        plain = manager.get_filtered_hosts(hosts, spec(None))
        self.assertEqual(sorted(faults.HOSTS),
                         sorted(h.nodename for h in plain))
        self.assertEqual(polls, server.polls())
        log = self.trust_log.output
        self.assertIn(fault.needle, log, f"{mode}: wrong reason logged")
        for host in faults.HOSTS:
            self.assertIn(f"TrustedFilter rejects {host}: wanted trusted",
                          log)

    def setUp(self):
        super().setUp()
        self.trust_log = self.useFixture(fixtures.FakeLogger(
            name="trustpool", level=logging.DEBUG,
            format="%(levelname)s %(name)s %(message)s"))


def _make(mode):
    def test(self):
        self.run_fault(mode)
    test.__name__ = f"test_{mode}"
    test.__doc__ = faults.FAULTS[mode].description
    return test


for _mode in faults.FAULTS:
    setattr(FaultTest, f"test_{_mode}", _make(_mode))
del _mode
