"""Scale mode through Nova's in-process API, scheduler and placement: the
trait that ``sync-traits`` keeps lets Placement do the trust filtering.

TrustedFilter is left out of ``enabled_filters`` here on purpose, so that
the placement decision can only come from the trait.
"""

from __future__ import annotations

import contextlib
import io
import uuid as uuidlib

import fixtures
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from nova.tests.functional import integrated_helpers

from trustpool import trait_sync
from trustpool.cmd import main as cli
from trustpool.openstack.compute import ComputeAPI
from trustpool.openstack.placement import PlacementAPI

from tests.nova.base import CONF, TrustpoolNovaMixin, admin_compute_api
from tests.support.placement_server import _free_port as free_port

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



def _named_apart(driver, host):
    """The fake driver's init_host with a hypervisor host name that is not
    the service host (as with a short service name and a fully qualified
    hypervisor name): Nova names the node's Placement provider by it."""
    driver._host = host
    driver._set_nodes([f"{host}.hv.example"])


class HostAttributeHostTest(TrustpoolNovaMixin,
                            integrated_helpers.ProviderUsageBaseTestCase):
    """Scale mode with ``host_attribute = host`` when service hosts and
    hypervisor host names differ (issue 19): the attestation service knows
    the service hosts only. Filter and sync must ask about the same names:
    trusted hosts get the trait, untrusted ones lose it, Placement offers
    exactly the trusted nodes, and boots land there."""

    compute_driver = "fake.MediumFakeDriver"
    LEVELS = {"cmp1": "untrusted", "cmp2": "trusted", "cmp3": "trusted"}

    def setUp(self):
        self.setup_trustpool(dict(self.LEVELS), host_attribute="host",
                             attestation_auth_timeout=0)
        self.useFixture(fixtures.MonkeyPatch(
            "nova.virt.fake.FakeDriver.init_host", _named_apart))
        super().setUp()
        for host in self.LEVELS:
            self._start_compute(host)
        self.flavor = self._create_flavor(
            name="trusted-scale", extra_spec={
                "trust:trusted_host": "trusted",
                f"trait:{TRAIT}": "required"})
        self.conf_path = self.write_cli_conf()
        with self.conf_path.open("a") as f:
            f.write("host_attribute = host\n")
        self.nodes = {h["service"]["host"]: h["id"] for h in
                      self.admin_api.api_get(
                          "os-hypervisors/detail").body["hypervisors"]}
        self.placement.put(f"/traits/{TRAIT}", None, version="1.6")

    def set_traits(self, uuid: str, traits: list[str]) -> None:
        response = self._set_provider_traits(uuid, traits)
        self.assertEqual(200, response.status, response.body)

    def placement_api(self) -> PlacementAPI:
        fixture = self.placement.fixture
        return PlacementAPI(ks_adapter.Adapter(
            ks_session.Session(), endpoint_override=fixture.endpoint,
            additional_headers={"X-Auth-Token": fixture.token}))

    def sync(self, compute_api=None, expect=0) -> tuple[str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--config-file", str(self.conf_path),
                             "sync-traits"],
                            placement_api=self.placement_api(),
                            compute_api=compute_api)
        self.assertEqual(expect, code, out.getvalue() + err.getvalue())
        return out.getvalue(), err.getvalue()

    def carriers(self) -> set[str]:
        body = self.placement.get(f"/resource_providers?required={TRAIT}",
                                  version="1.18").body
        return {p["uuid"] for p in body["resource_providers"]}

    def candidates(self) -> set[str]:
        body = self.placement.get(
            f"/allocation_candidates?resources=VCPU:1&required={TRAIT}",
            version="1.36").body
        return {rp for request in body["allocation_requests"]
                for rp in request["allocations"]}

    def test_trusted_service_hosts_get_the_trait(self):
        # as in the field: Nova names each node's provider by its
        # hypervisor host name, which is not the service host
        hypervisors = self.admin_api.api_get(
            "os-hypervisors/detail").body["hypervisors"]
        self.assertEqual({f"{h}.hv.example" for h in self.LEVELS},
                         {h["hypervisor_hostname"] for h in hypervisors})
        for host, uuid in self.nodes.items():
            provider = self.placement.get(f"/resource_providers/{uuid}",
                                          version="1.18").body
            self.assertEqual(f"{host}.hv.example", provider["name"])
        # a stale trait on the untrusted node must go
        self.set_traits(self.nodes["cmp1"], ["COMPUTE_NODE", TRAIT])
        out, _ = self.sync(admin_compute_api(self.api_fixture))
        self.assertIn("3 providers seen, 2 added, 1 removed", out)
        trusted = {self.nodes["cmp2"], self.nodes["cmp3"]}
        self.assertEqual(trusted, self.carriers())
        self.assertEqual(trusted, self.candidates())
        # the attestation service was asked about service hosts only
        self.assertEqual(sorted(self.LEVELS),
                         sorted(self.oat.requests[-1].body["hosts"]))
        # TrustedFilter (host_attribute = host too) agrees with the trait
        landed = {self._create_server(flavor_id=self.flavor,
                                      networks="none")[
            "OS-EXT-SRV-ATTR:host"] for _ in range(4)}
        self.assertLessEqual(landed, {"cmp2", "cmp3"})
        self.assertTrue(landed)

        self.oat.levels["cmp2"] = "untrusted"
        out, _ = self.sync(admin_compute_api(self.api_fixture))
        self.assertIn("1 removed", out)
        self.assertEqual({self.nodes["cmp3"]}, self.candidates())

    def test_no_mapping_no_trait_and_the_pass_fails(self):
        """Each way the mapping can be missing: every provider it cannot
        name loses the trait (never kept on error), and the pass exits 2
        with one line naming host_attribute and what is missing."""
        self.sync(admin_compute_api(self.api_fixture))
        trusted = {self.nodes["cmp2"], self.nodes["cmp3"]}
        self.assertEqual(trusted, self.carriers())

        # no [trustpool_nova] credentials in the file
        out, err = self.sync(expect=2)
        self.assertEqual(set(), self.carriers())
        self.assertEqual(set(), self.candidates())
        self.assertIn("2 removed", out)
        last = err.strip().splitlines()[-1]
        self.assertEqual(
            "trustpool: sync-traits failed: [trusted_computing] "
            "host_attribute = host: compute node providers are named by "
            "service host through the Nova API, which failed: "
            "[trustpool_nova] auth_type: not set: no credentials for the "
            "Nova API", last)

        # the Nova API is down
        self.sync(admin_compute_api(self.api_fixture))
        self.assertEqual(trusted, self.carriers())
        dead = ComputeAPI(ks_adapter.Adapter(
            ks_session.Session(),
            endpoint_override=f"http://127.0.0.1:{free_port()}/v2.1"))
        _, err = self.sync(dead, expect=2)
        self.assertEqual(set(), self.carriers())
        last = err.strip().splitlines()[-1]
        self.assertIn("host_attribute = host: compute node providers are "
                      "named by service host through the Nova API, which "
                      "failed: Nova API GET /os-hypervisors/detail: Unable "
                      "to establish", last)

        # a compute node provider Nova does not know (left over from a
        # deleted service, or made by hand) under a name the attestation
        # service trusts: it cannot be named, so it loses the trait; the
        # others are synced as usual
        orphan = str(uuidlib.uuid4())
        made = self.placement.post("/resource_providers", {
            "name": "cmp9.hv.example", "uuid": orphan}, version="1.18")
        self.assertEqual(201, made.status, made.body)
        self.set_traits(orphan, ["COMPUTE_NODE", TRAIT])
        self.oat.levels["cmp9"] = "trusted"
        self.oat.levels["cmp9.hv.example"] = "trusted"
        _, err = self.sync(admin_compute_api(self.api_fixture), expect=2)
        self.assertEqual(trusted, self.carriers())
        last = err.strip().splitlines()[-1]
        self.assertIn("host_attribute = host: 1 compute node provider(s) "
                      "have no hypervisor in the Nova API, so no service "
                      f"host: cmp9.hv.example ({orphan})", last)
        self.assertIn(f"cmp9.hv.example ({orphan}) loses {TRAIT} (no "
                      "compute service host name", self.trust_log.output)
