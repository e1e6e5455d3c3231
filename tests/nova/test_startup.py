"""The attestation service is down when nova-scheduler starts (README,
"Operations"): the scheduler starts with TrustedFilter all the same,
trusted boots fail with NoValidHost, plain ones land, and the outage is
logged once per failure window, not once per request."""

from __future__ import annotations

from nova.tests.functional import integrated_helpers

from tests.nova.base import TrustpoolNovaMixin

LEVELS = {"host-a": "trusted", "host-b": "trusted"}


class AttestationDownAtStartUpTest(TrustpoolNovaMixin,
                                   integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def setUp(self):
        # a window longer than the test: every failure after the first
        # falls inside it
        self.setup_trustpool(LEVELS, failure_retry_interval=600)
        self.oat.stop()
        super().setUp()  # starts the scheduler service, filter loaded
        for host in LEVELS:
            self._start_compute(host)
        self.trusted = self._create_flavor(
            name="f-trusted", extra_spec={"trust:trusted_host": "trusted"})
        self.plain = self._create_flavor(name="f-plain")

    def test_scheduler_starts_and_only_trusted_boots_fail(self):
        for _ in range(2):
            server = self._create_server(flavor_id=self.trusted,
                                         networks="none",
                                         expected_state="ERROR")
            self.assertIn("No valid host", server["fault"]["message"])
        server = self._create_server(flavor_id=self.plain, networks="none")
        self.assertIn(server["OS-EXT-SRV-ATTR:host"], LEVELS)
        warnings = [line for line in self.trust_log.output.splitlines()
                    if line.startswith("WARNING trustpool.attestation")]
        self.assertEqual(1, len(warnings), self.trust_log.output)
        self.assertIn("Attestation by oat https://127.0.0.1:", warnings[0])
        self.assertIn("2 host(s) count as unknown, next try in 600s",
                      warnings[0])
