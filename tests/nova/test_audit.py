"""``trustpool audit`` against Nova's in-process API, scheduler and
placement, with a real HTTPS attestation server.

Servers of a trusted flavor run on host-a and host-b; host-a then turns
untrusted. The drift report names exactly host-a's server (exit 1);
``--disable-untrusted-hosts`` disables host-a's nova-compute service, which
the API then shows, a new trusted boot asked for host-a fails with
NoValidHost, and host-b stays untouched.
"""

from __future__ import annotations

import contextlib
import io
import json

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from nova.tests.functional import integrated_helpers

from trustpool.cmd import main as cli
from trustpool.openstack.compute import ComputeAPI

from tests.nova.base import TrustpoolNovaMixin

LEVELS = {"host-a": "trusted", "host-b": "trusted", "host-c": "untrusted"}


class AuditTest(TrustpoolNovaMixin,
                integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def setUp(self):
        self.setup_trustpool(dict(LEVELS), attestation_auth_timeout=0)
        super().setUp()
        for host in LEVELS:
            self._start_compute(host)
        self.trusted = self._create_flavor(
            name="trusted", extra_spec={"trust:trusted_host": "trusted"})
        self.plain = self._create_flavor(name="plain")
        self.on_a = self._create_server(flavor_id=self.trusted,
                                        networks="none", host="host-a")
        self.on_b = self._create_server(flavor_id=self.trusted,
                                        networks="none", host="host-b")
        self.plain_on_c = self._create_server(flavor_id=self.plain,
                                              networks="none", host="host-c")
        self.conf_path = self.write_cli_conf()


    def compute_api(self) -> ComputeAPI:
        admin = self.api_fixture.admin_api
        # The harness stubs keystone: identity travels in these headers.
        adapter = ks_adapter.Adapter(
            ks_session.Session(), endpoint_override=admin.base_url,
            additional_headers={
                "X-Auth-User": "admin", "X-User-Id": "admin",
                "X-Auth-Project-Id": admin.project_id,
                "X-Roles": "reader,member,admin"})
        return ComputeAPI(adapter)

    def audit(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["--config-file", str(self.conf_path), "audit",
                             "--format", "json", *args],
                            compute_api=self.compute_api())
        return code, json.loads(out.getvalue())

    def service(self, host):
        [service] = self.api_fixture.admin_api.get_services(
            binary="nova-compute", host=host)
        return service

    def test_no_drift_while_hosts_stay_trusted(self):
        code, report = self.audit()
        self.assertEqual(0, code)
        self.assertEqual([], report["drift"])
        self.assertEqual(2, report["checked_instances"])
        self.assertEqual(["host-a", "host-b"], report["checked_hosts"])

    def test_drift_is_reported_and_the_host_disabled(self):
        self.oat.levels["host-a"] = "untrusted"
        code, report = self.audit()
        self.assertEqual(1, code)
        [row] = report["drift"]
        self.assertEqual(self.on_a["id"], row["instance"])
        self.assertEqual("host-a", row["host"])
        self.assertEqual("untrusted", row["level"])
        self.assertIn("'untrusted'", row["reason"])
        self.assertEqual([], report["disabled_hosts"])
        self.assertEqual("enabled", self.service("host-a")["status"])

        code, report = self.audit("--disable-untrusted-hosts")
        self.assertEqual(1, code)
        self.assertEqual(["host-a"], report["disabled_hosts"])
        service = self.service("host-a")
        self.assertEqual("disabled", service["status"])
        self.assertEqual("trustpool: host not trusted",
                         service["disabled_reason"])
        self.assertEqual("enabled", self.service("host-b")["status"])
        self.assertEqual("enabled", self.service("host-c")["status"])
        # running instances are not touched
        self.assertEqual("ACTIVE", self.api.get_server(
            self.on_a["id"])["status"])
        # nothing new lands on host-a
        self.oat.levels["host-a"] = "trusted"  # even if it said so again
        failed = self._create_server(flavor_id=self.trusted, networks="none",
                                     host="host-a", expected_state="ERROR")
        self.assertIn("No valid host", failed["fault"]["message"])

    def test_unknown_hosts_are_reported_but_not_disabled(self):
        del self.oat.levels["host-b"]
        code, report = self.audit("--disable-untrusted-hosts")
        self.assertEqual(1, code)
        [row] = report["drift"]
        self.assertEqual("host-b", row["host"])
        self.assertEqual("unknown", row["level"])
        self.assertEqual([], report["disabled_hosts"])
        self.assertEqual("enabled", self.service("host-b")["status"])

    def test_attestation_down_is_an_error_and_changes_nothing(self):
        self.oat.stop()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["--config-file", str(self.conf_path), "audit",
                             "--disable-untrusted-hosts"],
                            compute_api=self.compute_api())
        self.assertEqual(2, code)
        self.assertIn("cannot reach", err.getvalue())
        for host in LEVELS:
            self.assertEqual("enabled", self.service(host)["status"])
