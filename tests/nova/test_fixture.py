"""trustpool.fixture.TrustFixture, used as a deployer would use it."""

from __future__ import annotations

import os
import sys

from nova import conf as nova_conf
from nova.tests.functional import integrated_helpers

from trustpool.fixture import TrustFixture

CONF = nova_conf.CONF


class TrustFixtureBootTest(integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def _clear_attrs(self):
        pass  # see tests/nova/base.py

    def setUp(self):
        self.flags(group="wsgi", api_paste_config=os.path.join(
            sys.prefix, "etc", "nova", "api-paste.ini"))
        self.trust = self.useFixture(TrustFixture(
            CONF, {"host1": "trusted", "host2": "untrusted"}))
        super().setUp()
        self._start_compute("host1")
        self._start_compute("host2")
        self.trusted = self._create_flavor(
            name="trusted", extra_spec={"trust:trusted_host": "trusted"})
        self.plain = self._create_flavor(name="plain")

    def boot(self, flavor, state="ACTIVE"):
        return self._create_server(flavor_id=flavor, networks="none",
                                   expected_state=state)

    def test_levels_set_by_the_fixture_steer_placement(self):
        self.assertIn("TrustedFilter", CONF.filter_scheduler.enabled_filters)
        server = self.boot(self.trusted)
        self.assertEqual("host1", server["OS-EXT-SRV-ATTR:host"])

        self.trust.set_level("host1", "untrusted")
        self.trust.set_level("host2", "trusted")
        server = self.boot(self.trusted)
        self.assertEqual("host2", server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual(sorted(self.trust.requests[-1]), ["host1", "host2"])

    def test_simulated_outage(self):
        self.trust.fail("lab attestation server unplugged")
        server = self.boot(self.trusted, "ERROR")
        self.assertIn("No valid host", server["fault"]["message"])
        self.assertEqual("ACTIVE", self.boot(self.plain)["status"])
        self.trust.recover()
        self.assertEqual("host1",
                         self.boot(self.trusted)["OS-EXT-SRV-ATTR:host"])

    def test_fixture_rejects_a_typo(self):
        self.assertRaises(ValueError, self.trust.set_level, "host1", "trustd")
