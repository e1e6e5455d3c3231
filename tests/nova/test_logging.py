"""The decision record in a file of its own, and Nova's log left as it is.

Issue 19: README's logging ini, used as ``log_config_append``, took
nova-scheduler's logging over (``log_file``, formats and
``default_log_levels`` ignored, bare lines on stderr), and its
``default_log_levels = ...,trustpool.audit=WARN`` crashed oslo.log.

The first tests start logging exactly as nova-scheduler does
(``nova.config.parse_args`` with the nova.conf, then
``oslo_log.log.setup(CONF, "nova")``) in a process of their own
(tests/nova/scheduler_start.py), because that set-up rewires the whole
process's logging; Nova's HostManager then loads TrustedFilter and
schedules against a real HTTPS attestation server. The others run in this
process, through the same HostManager, for what needs no oslo.log set-up;
they undo what the filter did to the ``trustpool.audit`` logger
(``decision_record.stop_sending_to_file``), so later tests find it as
before.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

import nova.config
from nova import monkey_patch
from nova import test as nova_test
from nova.scheduler import host_manager
from oslo_log import _options as oslo_log_options

from trustpool import decision_record
from trustpool.exceptions import ConfigurationError

from tests.nova.base import AUTH_BLOB, TrustpoolNovaMixin
from tests.nova.test_host_manager import hosts, request
from tests.support import leakcheck
from tests.support.oat_server import OATServer
from tests.support.pki import CA

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = pathlib.Path(__file__).with_name("scheduler_start.py")
MARK = "=== logging is set up ==="
LEVELS = {"node-trusted": "trusted", "node-untrusted": "untrusted",
          "node-unknown": "unknown"}
NODES = sorted(LEVELS)
FMT = "NOVA-FMT %(levelname)s %(name)s"


def nova_default_log_levels() -> list[str]:
    """Nova's own default_log_levels: oslo.log's list with Nova's
    additions, as ``oslo-config-generator --namespace nova.conf
    --namespace oslo.log`` prints it."""
    nova.config.set_log_defaults()
    [opt] = [o for o in oslo_log_options.log_opts
             if o.dest == "default_log_levels"]
    return list(opt.default)


class SchedulerLoggingTest(unittest.TestCase):
    """nova-scheduler's start-up with the audit record routed away."""

    def setUp(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-log-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        (self.tmp / "pki").mkdir()
        self.ca = CA(self.tmp / "pki")
        issued = self.ca.issue("attestation-server")
        self.oat = OATServer(issued.cert, issued.key,
                             levels=dict(LEVELS)).start()
        self.addCleanup(self.oat.stop)
        self.nova_log = self.tmp / "nova-scheduler.log"
        (self.tmp / "audit").mkdir()
        self.audit_log = self.tmp / "audit" / "trustpool-audit.jsonl"

    def start_scheduler(self, default_log_levels: list[str],
                        audit: str = "") -> list[list[str]]:
        conf = self.tmp / "nova.conf"
        conf.write_text(f"""
[DEFAULT]
log_file = {self.nova_log}
debug = True
logging_default_format_string = {FMT} [-] %(message)s
logging_context_format_string = {FMT} [%(request_id)s] %(message)s
logging_debug_format_suffix = @%(funcName)s
default_log_levels = {",".join(default_log_levels)}

[filter_scheduler]
available_filters = nova.scheduler.filters.all_filters
available_filters = trustpool.filter.TrustedFilter
enabled_filters = AllHostsFilter,TrustedFilter

[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {self.oat.port}
attestation_server_ca_file = {self.ca.cert_path}
attestation_auth_blob = {AUTH_BLOB}
{audit}
""")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        # the same concurrency mode as this test run
        env["OS_NOVA_DISABLE_EVENTLET_PATCHING"] = (
            "0" if monkey_patch.is_patched() else "1")
        job = {"nodes": NODES, "requests": ["trusted", "untrusted", None]}
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(conf), json.dumps(job)],
            cwd=self.tmp, env=env, capture_output=True, text=True,
            timeout=300, check=False)
        self.assertEqual(0, done.returncode, done.stderr[-3000:] + (
            self.nova_log.read_text()[-3000:]
            if self.nova_log.exists() else ""))
        before, mark, self.stderr = done.stderr.partition(MARK + "\n")
        self.assertTrue(mark, done.stderr[-3000:])
        return json.loads(done.stdout)

    def lines(self, path: pathlib.Path) -> list[str]:
        return path.read_text(encoding="utf-8").splitlines()

    def assert_novas_log(self) -> str:
        """Nova's log: the file from log_file, every line in the format
        nova.conf gives, DEBUG lines because debug is on."""
        lines = self.lines(self.nova_log)
        self.assertTrue(lines)
        bad = [line for line in lines if not line.startswith("NOVA-FMT ")]
        self.assertEqual([], bad)
        text = "\n".join(lines)
        self.assertIn("DEBUG nova.filters [-] Filter TrustedFilter returned "
                      "1 host(s) @get_filtered_objects", text)
        self.assertEqual([], leakcheck.scan_text(text))
        return text

    def test_audit_file_gets_the_record_and_novas_log_stays_novas(self):
        passed = self.start_scheduler(
            nova_default_log_levels() + ["trustpool.filter=INFO"],
            audit=f"audit_log_file = {self.audit_log}")
        self.assertEqual([["node-trusted"], ["node-untrusted"], NODES],
                         passed)

        events = [json.loads(line) for line in self.lines(self.audit_log)]
        self.assertEqual(["trusted", "untrusted"],
                         [e["wanted"] for e in events])
        self.assertEqual([["node-trusted"], ["node-untrusted"]],
                         [e["passed"] for e in events])
        for event in events:
            self.assertEqual("trustpool.placement_decision", event["event"])
            self.assertEqual("flavor-" + event["wanted"], event["flavor"])
            self.assertEqual(
                {n: LEVELS[n] for n in NODES},
                {h["host"]: h["level"] for h in event["hosts"]})
        self.assertEqual([], leakcheck.scan_text(
            self.audit_log.read_text(encoding="utf-8")))

        text = self.assert_novas_log()
        self.assertNotIn("placement_decision", text)
        # default_log_levels took effect: the filter's rejections are
        # DEBUG, and trustpool.filter was set to INFO
        self.assertNotIn("TrustedFilter rejects", text)
        self.assertEqual("", self.stderr)

    def test_readmes_way_to_turn_the_record_off(self):
        passed = self.start_scheduler(
            nova_default_log_levels() + ["trustpool.audit=WARN"])
        self.assertEqual([["node-trusted"], ["node-untrusted"], NODES],
                         passed)
        text = self.assert_novas_log()
        self.assertNotIn("placement_decision", text)
        # the rest of the list and debug still apply
        self.assertIn("DEBUG trustpool.filter [-] TrustedFilter rejects "
                      "node-unknown: wanted trusted, found unknown", text)
        self.assertFalse(self.audit_log.exists())
        self.assertEqual("", self.stderr)


@mock.patch.object(host_manager.HostManager, "_init_instance_info",
                   new=mock.Mock())
@mock.patch.object(host_manager.HostManager, "_init_aggregates",
                   new=mock.Mock())
class AuditFileOptionTest(TrustpoolNovaMixin, nova_test.TestCase):
    """audit_log_file and audit_record through Nova's HostManager."""

    def setUp(self):
        super().setUp()
        self.setup_trustpool(dict(LEVELS), enabled=("AllHostsFilter",
                                                    "TrustedFilter"))
        self.addCleanup(decision_record.stop_sending_to_file)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-log-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.audit_log = self.tmp / "audit.jsonl"

    def manager(self, **options) -> host_manager.HostManager:
        self.flags(group="trusted_computing", **options)
        return host_manager.HostManager()

    def schedule(self, manager, trust="trusted") -> list[str]:
        return sorted(h.nodename for h in manager.get_filtered_hosts(
            hosts(NODES), request(trust)))

    def assert_start_up_fails(self, path, why):
        with self.assertRaises(ConfigurationError) as caught:
            self.manager(audit_log_file=str(path))
        message = str(caught.exception)
        self.assertIn("[trusted_computing] audit_log_file: ", message)
        self.assertIn(str(path), message)
        self.assertIn(why, message)
        self.assertEqual([], logging.getLogger("trustpool.audit").handlers)

    def test_missing_directory_stops_start_up_naming_option_and_path(self):
        self.assert_start_up_fails(self.tmp / "nowhere" / "audit.jsonl",
                                   f"no such directory: {self.tmp}/nowhere")

    def test_a_file_where_the_directory_should_be(self):
        (self.tmp / "plain").write_text("")
        self.assert_start_up_fails(self.tmp / "plain" / "audit.jsonl",
                                   "Not a directory")

    def test_an_existing_file_that_cannot_be_written(self):
        self.audit_log.write_text("")
        real = os.access

        def access(path, mode, **kw):  # tests run as root: pretend
            return path != str(self.audit_log) and real(path, mode, **kw)

        with mock.patch("os.access", access):
            self.assert_start_up_fails(self.audit_log, "not writable")

    def test_a_directory_or_a_fifo_is_refused(self):
        self.assert_start_up_fails(self.tmp, "not a regular file")
        os.mkfifo(self.tmp / "fifo")  # opening it would block start-up
        self.assert_start_up_fails(self.tmp / "fifo", "not a regular file")

    def test_a_relative_path_is_refused(self):
        self.assert_start_up_fails("audit.jsonl", "not an absolute path")

    def test_one_handler_however_often_the_filter_is_built(self):
        for _ in range(3):
            manager = self.manager(audit_log_file=str(self.audit_log))
        self.assertEqual(["node-trusted"], self.schedule(manager))
        self.assertEqual(1, len(self.audit_log.read_text().splitlines()))
        audit = logging.getLogger("trustpool.audit")
        self.assertEqual(1, len(audit.handlers))
        self.assertFalse(audit.propagate)
        self.assertNotIn("placement_decision", self.trust_log.output)
        decision_record.stop_sending_to_file()
        self.assertEqual([], audit.handlers)
        self.assertTrue(audit.propagate)
        self.assertEqual(logging.NOTSET, audit.level)

    def test_a_lost_file_costs_one_warning_and_no_scheduling(self):
        manager = self.manager(audit_log_file=str(self.audit_log))
        shutil.rmtree(self.tmp)  # file and directory gone: no reopening
        for _ in range(3):
            self.assertEqual(["node-trusted"], self.schedule(manager))
        warnings = [line for line in self.trust_log.output.splitlines()
                    if "cannot write the audit record" in line]
        self.assertEqual(1, len(warnings), self.trust_log.output)
        self.assertIn(str(self.audit_log), warnings[0])
        self.assertNotIn("could not write its audit event",
                         self.trust_log.output)

    def test_audit_record_off_writes_nothing_and_opens_nothing(self):
        manager = self.manager(audit_record=False,
                               audit_log_file=str(self.audit_log))
        self.assertEqual(["node-trusted"], self.schedule(manager))
        self.assertFalse(self.audit_log.exists())
        self.assertNotIn("placement_decision", self.trust_log.output)

    def test_by_default_the_record_joins_the_main_log(self):
        manager = self.manager()
        self.assertEqual(["node-trusted"], self.schedule(manager))
        self.assertIn("INFO trustpool.audit {", self.trust_log.output)
