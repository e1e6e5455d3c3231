"""Quarantine against the real Nova API (os-services, os-hypervisors at
microversion 2.53) with computes, scheduler and placement in-process,
a real HTTPS attestation server on 127.0.0.1, real sync passes, and a
real revocation listener given an event signed as Keylime signs it.

The hypervisor host names are not the service hosts (``cmpN.hv.example``
vs ``cmpN``), and ``host_attribute`` is the default ``nodename``: the
attestation service knows the hypervisors, Nova disables services, so
every action depends on mapping one to the other through Nova.

One Nova for the whole story (a few seconds to start): untrusted passes
quarantine; an operator's service is never touched; a service trustpool
quarantined before this process started is released after trusted passes;
unknown never quarantines and holds back a release; a signed revocation
quarantines at once.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import socket
import ssl
import tempfile
import urllib.parse

import fixtures
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from nova.tests.functional import integrated_helpers
from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import events, quarantine, revocation, trait_sync
from trustpool.attestation.backends.keylime import AgentIds
from trustpool.openstack.placement import PlacementAPI
from trustpool.quarantine import options as q_options

from tests.nova.base import AUTH_BLOB, TrustpoolNovaMixin, admin_compute_api
from tests.support import keylime_events as ke
from tests.support.placement_server import _free_port as free_port

HOSTS = ("cmp1", "cmp2", "cmp3", "cmp4")


def _named_apart(driver, host):
    """Nova's fake driver with a hypervisor host name that is not the
    service host."""
    driver._host = host
    driver._set_nodes([f"{host}.hv.example"])


def hv(host: str) -> str:
    return f"{host}.hv.example"


class QuarantineTest(TrustpoolNovaMixin,
                     integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"
    microversion = "2.53"

    def setUp(self):
        self.setup_trustpool({hv(h): "trusted" for h in HOSTS},
                             enabled=("ComputeFilter",))
        self.useFixture(fixtures.MonkeyPatch(
            "nova.virt.fake.FakeDriver.init_host", _named_apart))
        super().setUp()
        for host in HOSTS:
            self._start_compute(host)
        self.admin_api.microversion = "2.53"
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-q-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.conf = self.trustpool_conf()
        self.compute = admin_compute_api(self.api_fixture)
        fixture = self.placement.fixture
        self.placement_api = PlacementAPI(ks_adapter.Adapter(
            ks_session.Session(), endpoint_override=fixture.endpoint,
            additional_headers={"X-Auth-Token": fixture.token}))
        self.client = tp_conf.make_client(self.conf)
        self.addCleanup(self.client.close)

    def trustpool_conf(self) -> cfg.ConfigOpts:
        conf = cfg.ConfigOpts()
        tp_conf.register_opts(conf)
        tp_conf.register_trait_opts(conf)
        q_options.register_opts(conf)
        revocation.register_opts(conf)
        conf([], project="trustpool", default_config_files=[])
        for name, value in {
                "attestation_server": "127.0.0.1",
                "attestation_port": self.oat.port,
                "attestation_auth_blob": AUTH_BLOB,
                "attestation_server_ca_file": str(self.ca.cert_path)}.items():
            conf.set_override(name, value, tp_conf.GROUP)
        for name, value in {"enabled": True, "untrusted_passes": 2,
                            "trusted_passes": 2}.items():
            conf.set_override(name, value, q_options.GROUP)
        return conf

    # -- helpers --------------------------------------------------------

    def services(self) -> dict[str, dict]:
        body = self.admin_api.api_get(
            "os-services?binary=nova-compute").body["services"]
        return {s["host"]: s for s in body}

    def set_service(self, host: str, **body) -> None:
        service = self.services()[host]
        self.admin_api.api_put(f"os-services/{service['id']}", body)

    def state(self) -> dict[str, tuple[str, str | None]]:
        return {h: (s["status"], s["disabled_reason"])
                for h, s in self.services().items()}

    def levels(self, **levels: str | None) -> None:
        for host, level in levels.items():
            if level is None:  # the server stops naming it: unknown
                self.oat.levels.pop(hv(host), None)
            else:
                self.oat.levels[hv(host)] = level

    def passes(self, guard, count: int = 1) -> None:
        one_pass = guard.wrap(trait_sync.sync)
        for _ in range(count):
            result = one_pass(self.conf, self.placement_api, self.client)
            self.assertIsNotNone(result.hosts)
        self.assertTrue(guard.join(30))

    def post(self, url: str, body: bytes) -> str:
        """POST over a plain TLS socket, as the verifier does (the Nova
        harness's wsgi-intercept replaces the HTTP client classes that
        requests would use); the answer's status line."""
        address = urllib.parse.urlsplit(url)
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        with socket.create_connection((address.hostname, address.port),
                                      timeout=15) as raw, \
                context.wrap_socket(raw,
                                    server_hostname=address.hostname) as tls:
            tls.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n"
                        b"\r\n" % len(body) + body)
            answer = b""
            while b"\r\n" not in answer:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
        return answer.split(b"\r\n", 1)[0].decode("latin-1")

    def audit(self) -> list[dict]:
        prefix = f"INFO {events.AUDIT_LOGGER} "
        return [json.loads(line[len(prefix):])
                for line in self.trust_log.output.splitlines()
                if line.startswith(prefix)
                and '"trustpool.quarantine' in line]

    # -- the story --------------------------------------------------------

    def test_quarantine_release_and_hands_off(self):
        # before the service starts: an operator's maintenance on cmp3,
        # and cmp4 quarantined by an earlier run of trustpool
        self.set_service("cmp3", status="disabled",
                         disabled_reason="maintenance")
        earlier = ("trustpool: quarantined: 2 untrusted attestations in a "
                   "row (cmp4.hv.example) at 2026-11-30T10:00:00+00:00")
        self.set_service("cmp4", status="disabled", disabled_reason=earlier)
        self.levels(cmp1="untrusted", cmp2=None, cmp3="untrusted",
                    cmp4="trusted")
        guard = quarantine.start(self.conf, self.compute)
        self.addCleanup(guard.stop)
        self.assertTrue(guard.join(30))
        self.assertEqual(["cmp4"], guard.dampener.held())

        self.passes(guard)
        self.assertEqual("enabled", self.state()["cmp1"][0])
        self.assertEqual(("disabled", earlier), self.state()["cmp4"])
        self.passes(guard)
        state = self.state()
        # N = 2 untrusted in a row: quarantined with trustpool's reason
        status, reason = state["cmp1"]
        self.assertEqual("disabled", status)
        self.assertRegex(reason, r"^trustpool: quarantined: 2 untrusted "
                         r"attestations in a row \(cmp1\.hv\.example\) at "
                         r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
        # the operator's service: untouched
        self.assertEqual(("disabled", "maintenance"), state["cmp3"])
        # unknown: never quarantined
        self.assertEqual(("enabled", None), state["cmp2"])
        # M = 2 trusted in a row: ours from before is released
        self.assertEqual(("enabled", None), state["cmp4"])

        # cmp1 trusted again, with unknown in between: the run starts over
        self.levels(cmp1="trusted", cmp2=None, cmp3="trusted")
        self.passes(guard)
        self.levels(cmp1=None)
        self.passes(guard, 3)
        self.levels(cmp1="trusted")
        self.passes(guard)
        self.assertEqual("disabled", self.state()["cmp1"][0])
        self.passes(guard)
        state = self.state()
        self.assertEqual(("enabled", None), state["cmp1"])
        # the operator's service stays disabled however trusted it is
        self.assertEqual(("disabled", "maintenance"), state["cmp3"])
        self.assertEqual(("enabled", None), state["cmp2"])

        # the audit trail: what was done, and what was left alone
        trail = [(e["event"], e["host"], e["action"],
                  e.get("outcome") or e["trigger"]) for e in self.audit()]
        self.assertEqual([  # within a pass, by service host
            (events.QUARANTINE, "cmp1", "disable", "untrusted_attestations"),
            (events.QUARANTINE_SKIPPED, "cmp3", "disable", "skipped"),
            (events.QUARANTINE, "cmp4", "enable", "trusted_attestations"),
            (events.QUARANTINE, "cmp1", "enable", "trusted_attestations"),
        ], trail)
        first = self.audit()[0]
        self.assertEqual(self.services()["cmp1"]["id"], first["service_id"])
        self.assertEqual(["cmp1.hv.example"], first["nodes"])
        self.assertIn("quarantine: disabled nova-compute on cmp1",
                      self.trust_log.output)

        # a signed revocation for cmp2 quarantines it at once, through
        # the real listener
        key = ke.RevocationKey(self.tmp / "revocation")
        issued = self.ca.issue("events")
        for name, value in {
                "listen": f"127.0.0.1:{free_port()}",
                "cert_file": str(issued.cert), "key_file": str(issued.key),
                "revocation_cert_file": str(key.cert_path)}.items():
            self.conf.set_override(name, value, revocation.options.GROUP)
        AgentIds(self.conf)  # [keylime]: the agent id is the host name
        listener = revocation.start(self.conf, self.placement_api,
                                    self.compute, guard.after_revocation)
        self.addCleanup(listener.stop)
        status_line = self.post(listener.url,
                                ke.signed_body(key, hv("cmp2")))
        self.assertTrue(status_line.startswith("HTTP/1.1 200"), status_line)
        self.assertTrue(guard.join(30))
        status, reason = self.state()["cmp2"]
        self.assertEqual("disabled", status)
        self.assertTrue(reason.startswith(
            "trustpool: quarantined: signed Keylime revocation "
            "pcr_validation.invalid_pcr_15 (cmp2.hv.example) at "), reason)
        last = self.audit()[-1]
        self.assertEqual(("cmp2", "disable", "revocation",
                          "pcr_validation.invalid_pcr_15"),
                         (last["host"], last["action"], last["trigger"],
                          last["event_id"]))

    def test_imitations_and_re_enabled_services(self):
        """Against the real os-services API: a reason that only starts like
        trustpool's is an operator's and is never re-enabled; a service
        trustpool quarantined and an operator re-enabled while the host
        is still untrusted is let go of and quarantined again after a new
        run, and a signed revocation of such a host quarantines it."""
        imitation = "trustpool: quarantined by ops, keep it off"
        self.set_service("cmp4", status="disabled",
                         disabled_reason=imitation)
        self.levels(cmp1="untrusted", cmp2="untrusted", cmp3="trusted",
                    cmp4="trusted")
        guard = quarantine.start(self.conf, self.compute)
        self.addCleanup(guard.stop)
        self.assertTrue(guard.join(30))
        self.assertEqual([], guard.dampener.held())
        self.passes(guard, 2)
        state = self.state()
        self.assertEqual("disabled", state["cmp1"][0])
        self.assertEqual("disabled", state["cmp2"][0])
        self.assertEqual(("disabled", imitation), state["cmp4"])

        # the operator re-enables both; the hosts are still untrusted
        self.set_service("cmp1", status="enabled")
        self.set_service("cmp2", status="enabled")
        self.passes(guard)
        self.assertEqual(["cmp1", "cmp2"], sorted(
            h for h, (s, _) in self.state().items() if s == "enabled"
            and h in ("cmp1", "cmp2")))
        self.assertEqual([], guard.dampener.held())
        # a signed revocation of cmp2: at once
        guard.after_revocation(hv("cmp2"), "ev-1", True)
        self.assertTrue(guard.join(30))
        status, reason = self.state()["cmp2"]
        self.assertEqual("disabled", status)
        self.assertIn("signed Keylime revocation ev-1", reason)
        # cmp1: a full new run
        self.passes(guard)
        status, reason = self.state()["cmp1"]
        self.assertEqual("disabled", status)
        self.assertTrue(quarantine.is_ours(self.services()["cmp1"]))
        # the imitation stays however trusted cmp4 is
        self.assertEqual(("disabled", imitation), self.state()["cmp4"])
