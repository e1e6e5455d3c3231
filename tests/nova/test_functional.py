"""Boots through Nova's real API, conductor, scheduler and placement.

Three fake computes; a real HTTPS attestation server on 127.0.0.1 says one
is trusted, one untrusted and one unknown.
"""

from __future__ import annotations

import time

from nova.tests.functional import integrated_helpers
from nova.tests.functional.api import client as api_client

from tests.nova.base import TrustpoolNovaMixin

LEVELS = {"host-trusted": "trusted", "host-untrusted": "untrusted",
          "host-unknown": "unknown"}
TTL = 1


class TrustedBootTest(TrustpoolNovaMixin,
                      integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def setUp(self):
        # The scheduler service starts inside super().setUp(), so the
        # filter and its options have to be in place before it.
        self.setup_trustpool(LEVELS, attestation_auth_timeout=TTL,
                             failure_retry_interval=0.5)
        super().setUp()
        for host in LEVELS:
            self._start_compute(host)
        self.flavors = {
            level: self._create_flavor(
                name=f"f-{level}",
                extra_spec={"trust:trusted_host": level})
            for level in ("trusted", "untrusted")}
        self.flavors[None] = self._create_flavor(name="f-plain")

    def boot(self, trust, expected_state="ACTIVE"):
        return self._create_server(flavor_id=self.flavors[trust],
                                   networks="none",
                                   expected_state=expected_state)

    def host_of(self, server):
        return server["OS-EXT-SRV-ATTR:host"]

    def assert_no_valid_host(self, server):
        self.assertEqual("ERROR", server["status"])
        self.assertIn("No valid host", server["fault"]["message"])

    def test_servers_land_on_hosts_of_their_trust_level(self):
        for _ in range(2):
            self.assertEqual("host-trusted",
                             self.host_of(self.boot("trusted")))
            self.assertEqual("host-untrusted",
                             self.host_of(self.boot("untrusted")))
        plain = {self.host_of(self.boot(None)) for _ in range(3)}
        self.assertTrue(plain <= set(LEVELS))
        self.assertIn("TrustedFilter rejects host-unknown: wanted trusted, "
                      "found unknown", self.trust_log.output)

    def test_host_turning_untrusted_gets_no_new_trusted_servers(self):
        self.assertEqual("host-trusted", self.host_of(self.boot("trusted")))
        self.oat.levels["host-trusted"] = "untrusted"
        time.sleep(TTL + 0.2)
        self.assert_no_valid_host(self.boot("trusted", "ERROR"))
        self.assertIn("TrustedFilter rejects host-trusted: wanted trusted, "
                      "found untrusted", self.trust_log.output)

    def test_attestation_server_down(self):
        self.oat.stop()
        self.assert_no_valid_host(self.boot("trusted", "ERROR"))
        self.assert_no_valid_host(self.boot("untrusted", "ERROR"))
        self.assertEqual("ACTIVE", self.boot(None)["status"])
        self.assertIn("WARNING trustpool.attestation.client Attestation by "
                      "oat", self.trust_log.output)

    def test_api_refuses_a_misspelt_trust_level(self):
        flavor = self.flavors[None]
        for bad in ("bogus", "trustd", "Trusted"):
            exc = self.assertRaises(
                api_client.OpenStackApiException,
                self.api_fixture.admin_api.post_extra_spec, flavor,
                {"extra_specs": {"trust:trusted_host": bad}})
            self.assertEqual(400, exc.response.status_code)
            self.assertIn(f"'{bad}' is not one of: trusted, untrusted, "
                          "unknown", exc.response.text)
        exc = self.assertRaises(
            api_client.OpenStackApiException,
            self.api_fixture.admin_api.post_extra_spec, flavor,
            {"extra_specs": {"trust:trusted_hots": "trusted"}})
        self.assertEqual(400, exc.response.status_code)
        self.assertIn("'trust:trusted_hots' does not appear to be a valid "
                      "extra spec", exc.response.text)
        self.api_fixture.admin_api.post_extra_spec(
            flavor, {"extra_specs": {"trust:trusted_host": "unknown"}})
        self.assertEqual("host-unknown", self.host_of(self.boot(None)))
