"""Scale mode through Nova's in-process API, scheduler and placement: the
trait that ``sync-traits`` keeps lets Placement do the trust filtering.

TrustedFilter is left out of ``enabled_filters`` here on purpose, so that
the placement decision can only come from the trait.
"""

from __future__ import annotations

import contextlib
import io

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from nova.tests.functional import integrated_helpers

from trustpool import trait_sync
from trustpool.cmd import main as cli
from trustpool.openstack.placement import PlacementAPI

from tests.nova.base import CONF, TrustpoolNovaMixin

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"


class ScaleModeTest(TrustpoolNovaMixin,
                    integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def setUp(self):
        self.setup_trustpool({"host1": "untrusted", "host2": "trusted"},
                             enabled=("ComputeFilter",))
        super().setUp()
        for host in ("host1", "host2"):
            self._start_compute(host)
        self.flavor = self._create_flavor(
            name="trusted-scale", extra_spec={
                "trust:trusted_host": "trusted",
                f"trait:{TRAIT}": "required"})
        self.conf_path = self.write_cli_conf()


    def sync(self) -> str:
        fixture = self.placement.fixture
        api = PlacementAPI(ks_adapter.Adapter(
            ks_session.Session(), endpoint_override=fixture.endpoint,
            additional_headers={"X-Auth-Token": fixture.token}))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["--config-file", str(self.conf_path),
                             "sync-traits"], placement_api=api)
        self.assertEqual(0, code)
        return out.getvalue()

    def test_boot_follows_the_trait(self):
        self.assertIn("2 providers seen, 1 added", self.sync())
        host2 = self._get_provider_uuid_by_host("host2")
        host1 = self._get_provider_uuid_by_host("host1")
        self.assertIn(TRAIT, self._get_provider_traits(host2))
        self.assertNotIn(TRAIT, self._get_provider_traits(host1))
        self.assertIn("COMPUTE_NODE", self._get_provider_traits(host2))
        for _ in range(2):
            server = self._create_server(flavor_id=self.flavor,
                                         networks="none")
            self.assertEqual("host2", server["OS-EXT-SRV-ATTR:host"])

        self.oat.levels["host2"] = "untrusted"
        self.assertIn("1 removed", self.sync())
        self.assertNotIn(TRAIT, self._get_provider_traits(host2))
        self.assertIn("COMPUTE_NODE", self._get_provider_traits(host2))
        failed = self._create_server(flavor_id=self.flavor, networks="none",
                                     expected_state="ERROR")
        self.assertIn("No valid host", failed["fault"]["message"])


class TraitWarningTest(TrustpoolNovaMixin,
                       integrated_helpers.ProviderUsageBaseTestCase):
    """With sync configured, a trusted flavor without the trait is
    scheduled (TrustedFilter still checks) and warned about once."""

    compute_driver = "fake.MediumFakeDriver"

    def setUp(self):
        self.setup_trustpool({"host1": "trusted"})
        trait_sync.register_opts(CONF)
        self.flags(group=trait_sync.GROUP, sync_enabled=True)
        super().setUp()
        self._start_compute("host1")
        self.old_style = self._create_flavor(
            name="old-style", extra_spec={"trust:trusted_host": "trusted"})

    def test_warned_once_per_flavor(self):
        for _ in range(2):
            server = self._create_server(flavor_id=self.old_style,
                                         networks="none")
            self.assertEqual("host1", server["OS-EXT-SRV-ATTR:host"])
        warnings = [line for line in self.trust_log.output.splitlines()
                    if line.startswith("WARNING") and "old-style" in line]
        self.assertEqual(1, len(warnings), warnings)
        self.assertIn(f"trait:{TRAIT}=required", warnings[0])

