"""Nova's own HostManager loading TrustedFilter by class path."""

from __future__ import annotations

import datetime
import json
import logging
import time
from unittest import mock

import fixtures
from nova import context as nova_context
from nova import objects, test
from nova.scheduler import host_manager
from nova.tests.unit.scheduler import fakes
from oslo_utils.fixture import uuidsentinel as uuids

from trustpool.filter import TrustedFilter

from tests.nova.base import AUTH_BLOB, CONF, TrustpoolNovaMixin

LEVELS = {"node-trusted": "trusted", "node-untrusted": "untrusted",
          "node-unknown": "unknown"}
NODES = [*LEVELS, "node-missing"]


def request(trust: str | None = None, **kw) -> objects.RequestSpec:
    extra_specs = {} if trust is None else {"trust:trusted_host": trust}
    flavor = objects.Flavor(name=f"flavor-{trust}", extra_specs=extra_specs,
                            memory_mb=512, vcpus=1, root_gb=1,
                            ephemeral_gb=0, swap=0)
    kw.setdefault("instance_uuid", uuids.instance)
    return objects.RequestSpec(ignore_hosts=[], force_hosts=[],
                               force_nodes=[], flavor=flavor, **kw)


def hosts(nodes) -> list:
    return [fakes.FakeHostState(f"compute-{i}", node, {})
            for i, node in enumerate(nodes)]


@mock.patch.object(host_manager.HostManager, "_init_instance_info",
                   new=mock.Mock())
@mock.patch.object(host_manager.HostManager, "_init_aggregates",
                   new=mock.Mock())
class HostManagerTest(TrustpoolNovaMixin, test.TestCase):

    def setUp(self):
        super().setUp()
        self.setup_trustpool(LEVELS, enabled=("AllHostsFilter",
                                              "TrustedFilter"))
        self.manager = host_manager.HostManager()
        self.hosts = hosts(NODES)

    def passing(self, spec, candidates=None):
        result = self.manager.get_filtered_hosts(
            candidates if candidates is not None else self.hosts, spec)
        return sorted(h.nodename for h in result)

    def test_filter_is_loaded_by_class_path(self):
        names = [type(f).__name__ for f in self.manager.enabled_filters]
        self.assertEqual(["AllHostsFilter", "TrustedFilter"], names)
        self.assertIsInstance(self.manager.enabled_filters[1], TrustedFilter)

    def test_exact_match_for_every_level(self):
        self.assertEqual(["node-trusted"], self.passing(request("trusted")))
        self.assertEqual(["node-untrusted"],
                         self.passing(request("untrusted")))
        self.assertEqual(["node-missing", "node-unknown"],
                         self.passing(request("unknown")))
        self.assertEqual(1, self.oat.polls())  # one batch, then the cache

    def test_no_spec_passes_everything_without_asking(self):
        self.assertEqual(sorted(NODES), self.passing(request()))
        self.assertEqual(0, self.oat.polls())

    def test_one_request_for_a_hundred_hosts_and_none_within_ttl(self):
        nodes = [f"node{i:03d}" for i in range(100)]
        self.oat.levels = {n: "trusted" for n in nodes[::2]}
        many = hosts(nodes)
        self.assertEqual(sorted(nodes[::2]),
                         self.passing(request("trusted"), many))
        self.assertEqual(1, self.oat.polls())
        self.assertEqual(sorted(nodes), sorted(
            self.oat.requests[0].body["hosts"]))
        self.assertEqual(100, self.oat.requests[0].body["count"])
        self.passing(request("trusted"), many)
        self.passing(request("untrusted"), many)
        self.assertEqual(1, self.oat.polls())

    def test_rejections_are_logged_with_host_wanted_found_and_reason(self):
        self.passing(request("trusted"))
        log = self.trust_log.output
        self.assertIn("TrustedFilter rejects node-untrusted: wanted trusted, "
                      "found untrusted (attestation server says "
                      "'untrusted')", log)
        self.assertIn("TrustedFilter rejects node-missing: wanted trusted, "
                      "found unknown (the attestation service did not "
                      "mention this host)", log)
        self.assertNotIn("rejects node-trusted", log)

    def test_invalid_value_rejects_all_and_is_logged_once(self):
        for _ in range(3):
            self.assertEqual([], self.passing(request("trustd")))
        self.assertEqual(0, self.oat.polls())
        self.assertEqual(1, self.trust_log.output.count("'trustd'"))

    def test_invalid_value_on_a_flavor_without_name_does_not_raise(self):
        # found by the property test: logging the flavor's name lazy-loaded
        # it, and a Flavor object without one raised into Nova
        spec = request("bogus")
        del spec.flavor.name
        self.assertEqual([], self.passing(spec))
        self.assertIn("flavor ?: trust:trusted_host='bogus'",
                      self.trust_log.output)

    def test_server_down_rejects_trusted_but_not_plain_flavors(self):
        self.oat.stop()
        self.assertEqual([], self.passing(request("trusted")))
        self.assertEqual(sorted(NODES), self.passing(request()))
        self.assertEqual([], self.passing(request("trusted")))
        self.assertEqual(1, self.trust_log.output.count("WARNING"))

    def test_rebuild_does_not_ask(self):
        spec = request("trusted", scheduler_hints={
            "_nova_check_type": ["rebuild"]})
        self.assertEqual(sorted(NODES), self.passing(spec))
        self.assertEqual(0, self.oat.polls())

    def test_host_attribute_host(self):
        self.flags(group="trusted_computing", host_attribute="host")
        self.oat.levels = {"compute-1": "trusted"}
        manager = host_manager.HostManager()
        result = manager.get_filtered_hosts(self.hosts, request("trusted"))
        self.assertEqual(["compute-1"], [h.host for h in result])
        self.assertEqual(sorted(h.host for h in self.hosts),
                         sorted(self.oat.requests[0].body["hosts"]))

    def test_ttl_expiry_asks_again(self):
        self.flags(group="trusted_computing", attestation_auth_timeout=0)
        manager = host_manager.HostManager()
        manager.get_filtered_hosts(self.hosts, request("trusted"))
        self.oat.levels["node-trusted"] = "untrusted"
        result = manager.get_filtered_hosts(self.hosts, request("trusted"))
        self.assertEqual([], list(result))
        self.assertEqual(2, self.oat.polls())

    def test_refresh_ahead_means_no_request_waits_after_the_first(self):
        """In the last quarter of the TTL, a request served from the cache
        starts a background refresh (a green thread under eventlet, a real
        one in native-threading mode), so the request after the first
        answer's deadline finds a fresh answer and never asks the server
        itself."""
        self.flags(group="trusted_computing", attestation_auth_timeout=4)
        manager = host_manager.HostManager()

        def passing():
            return sorted(h.nodename for h in manager.get_filtered_hosts(
                self.hosts, request("trusted")))

        self.assertEqual(["node-trusted"], passing())
        answered = time.monotonic()
        self.assertEqual(1, self.oat.polls())
        time.sleep(3.2)                  # in the window [3 s, 4 s)
        self.assertEqual(["node-trusted"], passing())
        deadline = time.monotonic() + 5
        while self.oat.polls() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(2, self.oat.polls())
        # what a poll would say now; the refreshed answer serves instead
        self.oat.levels["node-trusted"] = "untrusted"
        time.sleep(max(0.0, answered + 4.3 - time.monotonic()))
        self.assertEqual(["node-trusted"], passing())
        self.assertEqual(2, self.oat.polls())
        # made by the helper process (refresh_ahead_process, the default),
        # under eventlet as in native-threading mode
        client = next(f for f in manager.enabled_filters
                      if isinstance(f, TrustedFilter)).client
        self.addCleanup(client.close)
        self.assertEqual(1, client.background.answered)

    def test_second_instance_of_a_request_is_filtered_too(self):
        spec = request("trusted")
        for index in range(3):
            result = self.manager.get_filtered_hosts(self.hosts, spec,
                                                     index=index)
            self.assertEqual(["node-trusted"],
                             sorted(h.nodename for h in result))

    def trusted_filter(self):
        return next(f for f in self.manager.enabled_filters
                    if isinstance(f, TrustedFilter))

    def test_nothing_raises_into_nova_whatever_breaks(self):
        """The filter is one boundary: a bug of any type anywhere below it
        (here, the rebuild check Nova's own helper makes) passes no host,
        is logged once with its type, and never reaches Nova."""
        broken = mock.Mock()
        broken.request_is_rebuild.side_effect = OverflowError("out of range")
        with mock.patch("trustpool.filter.scheduler_utils", broken):
            for _ in range(3):
                self.assertEqual([], self.passing(request("trusted")))
        self.assertEqual(1, self.trust_log.output.count(
            "passes no host for this request: unexpected OverflowError"))

    def test_a_flavor_that_cannot_be_read_passes_no_host(self):
        class Unreadable:
            @property
            def flavor(self):
                raise RecursionError("lazy-load loop")

        result = self.trusted_filter().filter_all(self.hosts, Unreadable())
        self.assertEqual([], result)
        self.assertIn("unexpected RecursionError", self.trust_log.output)


class BadConfigTest(TrustpoolNovaMixin, test.NoDBTestCase):

    def test_bad_option_stops_the_scheduler_at_start_up(self):
        self.setup_trustpool(LEVELS)
        self.flags(group="trusted_computing", backend="no-such-backend")
        from trustpool.exceptions import ConfigurationError
        with self.assertRaises(ConfigurationError) as err:
            TrustedFilter()
        self.assertIn("[trusted_computing] backend", str(err.exception))

    def test_a_missing_keylime_ca_file_stops_the_scheduler_at_start_up(self):
        """Not an OSError at every request later, with every host
        unknown: one error naming the option and the path, at start-up,
        as for any other bad value."""
        self.setup_trustpool(LEVELS)
        self.flags(group="trusted_computing", backend="keylime")
        from trustpool.attestation.backends import keylime
        CONF.register_opts(keylime._opts, group=keylime.GROUP)
        self.flags(group=keylime.GROUP, verifier_host="127.0.0.1",
                   ca_file="/nonexistent/keylime/cacert.crt")
        from trustpool.exceptions import ConfigurationError
        with self.assertRaises(ConfigurationError) as err:
            host_manager.HostManager()
        self.assertEqual(
            "[keylime] ca_file: no such file: "
            "/nonexistent/keylime/cacert.crt", str(err.exception))


@mock.patch.object(host_manager.HostManager, "_init_instance_info",
                   new=mock.Mock())
@mock.patch.object(host_manager.HostManager, "_init_aggregates",
                   new=mock.Mock())
class AuditEventTest(TrustpoolNovaMixin, test.TestCase):
    """The trustpool.audit event: content for pass, reject and failure."""

    def setUp(self):
        super().setUp()
        self.setup_trustpool(LEVELS, enabled=("AllHostsFilter",
                                              "TrustedFilter"))
        self.audit_log = self.useFixture(fixtures.FakeLogger(
            name="trustpool.audit", level=logging.INFO,
            format="%(message)s"))
        self.manager = host_manager.HostManager()
        self.hosts = hosts(NODES)
        self.context = nova_context.RequestContext(
            "user", "project-1", request_id="req-0123-audit")
        self.context.update_store()

    def events(self):
        return [json.loads(line) for line in
                self.audit_log.output.splitlines() if line.strip()]

    def test_event_for_a_trusted_request(self):
        spec = request("trusted", project_id="project-1")
        self.manager.get_filtered_hosts(self.hosts, spec)
        [event] = self.events()
        self.assertEqual("trustpool.placement_decision", event["event"])
        self.assertEqual(1, event["schema_version"])
        self.assertEqual("req-0123-audit", event["request_id"])
        self.assertEqual(uuids.instance, event["instance_uuid"])
        self.assertEqual("project-1", event["project_id"])
        self.assertEqual("flavor-trusted", event["flavor"])
        self.assertEqual("trusted", event["wanted"])
        self.assertTrue(event["valid_request"])
        self.assertTrue(event["attestation_server"].startswith(
            "oat https://127.0.0.1:"))
        self.assertEqual(["node-trusted"], event["passed"])
        by_host = {h["host"]: h for h in event["hosts"]}
        self.assertEqual(set(NODES), set(by_host))
        trusted = by_host["node-trusted"]
        self.assertTrue(trusted["passed"])
        self.assertEqual("trusted", trusted["level"])
        self.assertEqual("oat", trusted["backend"])
        self.assertLess(abs(trusted["age_seconds"]), 60)
        self.assertTrue(trusted["server_time"].endswith("+00:00"))
        rejected = by_host["node-untrusted"]
        self.assertFalse(rejected["passed"])
        self.assertEqual("untrusted", rejected["level"])
        self.assertIn("'untrusted'", rejected["reason"])
        self.assertIsNone(by_host["node-missing"]["server_time"])
        datetime.datetime.fromisoformat(event["time"])
        self.assertNotIn(AUTH_BLOB, self.audit_log.output)

    def test_event_for_an_attestation_failure(self):
        self.oat.stop()
        self.manager.get_filtered_hosts(self.hosts, request("trusted"))
        [event] = self.events()
        self.assertEqual([], event["passed"])
        for host in event["hosts"]:
            self.assertEqual("unknown", host["level"])
            self.assertIn("attestation failed", host["reason"])

    def test_event_for_an_invalid_value_and_none_without_spec(self):
        self.manager.get_filtered_hosts(self.hosts, request())
        self.assertEqual([], self.events())
        self.manager.get_filtered_hosts(self.hosts, request("bogus"))
        [event] = self.events()
        self.assertFalse(event["valid_request"])
        self.assertEqual("bogus", event["wanted"])
        self.assertEqual([], event["passed"])
        self.assertEqual(0, self.oat.polls())
