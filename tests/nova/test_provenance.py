"""``trustpool explain`` and ``trustpool report`` on the audit lines the
real filter wrote, inside Nova's in-process API, scheduler and placement,
with a real HTTPS attestation server on 127.0.0.1.

Trusted servers land on host-a and host-b, a trusted boot asked for the
untrusted host-c is refused; the log is what TrustedFilter wrote on
``trustpool.audit``, routed to a file the way README says. Then host-a
turns untrusted: ``explain`` names the decision that placed each server
and tells the drifted one (exit 1) from the one still trusted (exit 0),
asking Nova where each runs; the report counts what happened.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pathlib
import shutil
import tempfile

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from nova.tests.functional import integrated_helpers

from trustpool import events
from trustpool.cmd import main as cli
from trustpool.openstack.compute import ComputeAPI

from tests.nova.base import TrustpoolNovaMixin

LEVELS = {"host-a": "trusted", "host-b": "trusted", "host-c": "untrusted"}


class ProvenanceTest(TrustpoolNovaMixin,
                     integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def setUp(self):
        self.setup_trustpool(dict(LEVELS), attestation_auth_timeout=0)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-audit-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        self.log_path = workdir / "trustpool-audit.jsonl"
        handler = logging.FileHandler(self.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit = logging.getLogger(events.AUDIT_LOGGER)
        audit.addHandler(handler)
        self.addCleanup(audit.removeHandler, handler)
        self.addCleanup(handler.close)
        super().setUp()
        for host in LEVELS:
            self._start_compute(host)
        trusted = self._create_flavor(
            name="m1.trusted", extra_spec={"trust:trusted_host": "trusted"})
        plain = self._create_flavor(name="plain")
        self.on_a = self._create_server(flavor_id=trusted, networks="none",
                                        host="host-a")
        self.on_b = self._create_server(flavor_id=trusted, networks="none",
                                        host="host-b")
        self._create_server(flavor_id=plain, networks="none", host="host-c")
        self.refused = self._create_server(
            flavor_id=trusted, networks="none", host="host-c",
            expected_state="ERROR")
        handler.flush()
        self.conf_path = self.write_cli_conf()

    def compute_api(self) -> ComputeAPI:
        admin = self.api_fixture.admin_api
        adapter = ks_adapter.Adapter(
            ks_session.Session(), endpoint_override=admin.base_url,
            additional_headers={
                "X-Auth-User": "admin", "X-User-Id": "admin",
                "X-Auth-Project-Id": admin.project_id,
                "X-Roles": "reader,member,admin"})
        return ComputeAPI(adapter)

    def cli(self, *args, nova=True):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--config-file", str(self.conf_path), *args],
                            compute_api=self.compute_api() if nova else None)
        return code, out.getvalue(), err.getvalue()

    def explain(self, server, *args):
        code, out, err = self.cli("explain", server["id"], "--audit-log",
                                  str(self.log_path), "--format", "json",
                                  *args)
        return code, (json.loads(out) if out else None), err

    def test_explain_and_report_while_trusted(self):
        # the log holds exactly what the filter decided
        decisions = [json.loads(line) for line in
                     self.log_path.read_text().splitlines()]
        self.assertEqual(
            [self.on_a["id"], self.on_b["id"], self.refused["id"]],
            [d["instance_uuid"] for d in decisions])
        self.assertEqual([["host-a"], ["host-b"], []],
                         [d["passed"] for d in decisions])

        code, story, err = self.explain(self.on_b)
        self.assertEqual(0, code, err)
        self.assertEqual("host-b", story["nova"]["host"])
        self.assertEqual("m1.trusted", story["placed"]["flavor"])
        [host] = story["hosts"]
        self.assertEqual(("host-b", "trusted", "oat", "trusted"),
                         (host["host"], host["then"]["level"],
                          host["then"]["backend"], host["now"]["level"]))
        self.assertIsNotNone(host["then"]["age_seconds"])
        self.assertFalse(story["drifted"])

        code, out, err = self.cli("explain", self.on_b["id"], "--audit-log",
                                  str(self.log_path), "--no-nova",
                                  nova=False)
        self.assertEqual(0, code, err)
        self.assertIn("Nova not asked (--no-nova)", out)
        self.assertIn("host host-b", out)
        self.assertIn("OK: placed on an attested host", out)

        # refused: Nova gave it no host, no decision admitted it
        code, story, _ = self.explain(self.refused)
        self.assertEqual(1, code)
        self.assertIsNone(story["placed"])
        self.assertIn("no logged decision admitted it",
                      story["problems"][0])
        code, story, err = self.explain(
            {"id": "0a0a0a0a-0000-4000-8000-000000000000"})
        self.assertEqual(2, code)
        self.assertIn("is not in the logs", err)

        code, out, err = self.cli("report", str(self.log_path), "--format",
                                  "json", nova=False)
        self.assertEqual(0, code, err)
        report = json.loads(out)
        summary = report["summary"]
        self.assertEqual((2, 1, 0, 0), (
            summary["placements"], summary["refusals"],
            summary["malformed_lines"], summary["trust_lost"]))
        placements = {r["instance"]: r for r in report["records"]
                      if r["record"] == "placement"}
        self.assertEqual("host-a", placements[self.on_a["id"]]["host"])
        self.assertEqual("trusted", placements[self.on_a["id"]]["level"])
        [refusal] = [r for r in report["records"]
                     if r["record"] == "refusal"]
        self.assertEqual(self.refused["id"], refusal["instance"])
        self.assertIn("'untrusted'", refusal["reason"])
        code, page, _ = self.cli("report", str(self.log_path), nova=False)
        self.assertIn(self.on_a["id"], page)
        self.assertIn('data-key="placements">2<', page)

    def test_explain_drift_and_an_attestation_outage(self):
        self.oat.levels["host-a"] = "untrusted"
        code, story, err = self.explain(self.on_a)
        self.assertEqual(1, code, err)
        self.assertEqual("host-a", story["nova"]["host"])
        self.assertEqual(["host-a"], story["placed"]["admitted"])
        [host] = story["hosts"]
        self.assertEqual("trusted", host["then"]["level"])
        self.assertEqual("untrusted", host["now"]["level"])
        self.assertTrue(story["drifted"])
        code, story, err = self.explain(self.on_b)
        self.assertEqual(0, code, err)

        self.oat.stop()
        code, story, err = self.explain(self.on_b)
        self.assertEqual(2, code)
        self.assertIn("cannot ask the attestation service", err)
        self.assertIsNone(story["drifted"])
