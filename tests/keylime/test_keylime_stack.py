"""trustpool's keylime backend and TrustedFilter against real Keylime.

A Keylime 6.6.0 verifier, registrar and Python agent on swtpm; the agent
is enrolled with a TPM policy pinning PCR 23 to its current value. The
host is trusted; after ``tpm2_pcrextend`` the verifier's next quote fails
(operational_state 9, INVALID_QUOTE) and the host must turn untrusted
within the quote interval plus trustpool's TTL, both for the backend and
for a scheduling pass through Nova's HostManager.
"""

from __future__ import annotations

import re
import time
from unittest import mock

import pytest
from nova import conf as nova_conf
from nova import objects
from nova.scheduler import host_manager
from nova.tests.unit.scheduler import fakes
from oslo_config import cfg
from oslo_utils.fixture import uuidsentinel as uuids

from trustpool import conf as tp_conf
from trustpool.attestation import TrustLevel
from trustpool.attestation.backends.keylime import KeylimeBackend
from trustpool.conf import make_client

from tests.support import leakcheck

CONF = nova_conf.CONF
TTL = 2
QUOTE_INTERVAL = 1  # tests/keylime/stack.py configures the verifier so
SLACK = 6  # process start-up and scheduling noise on a shared machine


def keylime_options(stack) -> dict:
    tls = stack.tls_dir
    for pem in ("client-private.pem", "server-private.pem"):
        leakcheck.register((tls / pem).read_text())
    return {
        "verifier_host": "127.0.0.1",
        "verifier_port": stack.ports["verifier"],
        "ca_file": str(tls / "cacert.crt"),
        "client_cert_file": str(tls / "client-cert.crt"),
        "client_key_file": str(tls / "client-private.pem"),
        # Keylime 6.6's certificate names 'server' and no IP address
        "tls_server_name": "server",
        # the Python agent takes only UUIDs as ids: map a host name to it
        "agent_ids": {"compute-tpm-1": stack.agent_uuid},
    }


def configure(conf: cfg.ConfigOpts, stack) -> None:
    tp_conf.register_opts(conf)
    conf.register_opts(KeylimeBackend.CONFIG_OPTS[0][1], group="keylime")
    conf.set_override("backend", "keylime", tp_conf.GROUP)
    conf.set_override("attestation_auth_timeout", TTL, tp_conf.GROUP)
    conf.set_override("failure_retry_interval", 0.5, tp_conf.GROUP)
    for key, value in keylime_options(stack).items():
        conf.set_override(key, value, "keylime")


def wait_for(predicate, timeout: float, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def spec(trust: str) -> objects.RequestSpec:
    return objects.RequestSpec(
        ignore_hosts=[], force_hosts=[], force_nodes=[],
        instance_uuid=uuids.instance,
        flavor=objects.Flavor(extra_specs={"trust:trusted_host": trust}))


def test_pcr_extension_flips_backend_and_scheduler(keylime_stack):
    stack = keylime_stack
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    configure(conf, stack)
    client = make_client(conf)
    names = ["compute-tpm-1", stack.agent_uuid, "compute-no-agent"]

    # -- trusted while PCR 23 holds the enrolled value ------------------
    def trusted_now():
        client.invalidate()
        reports = client.levels(names)
        return reports if reports["compute-tpm-1"].level is \
            TrustLevel.TRUSTED else None

    reports = wait_for(trusted_now, 30)
    assert reports, f"never trusted: {client.levels(names)}"
    assert reports[stack.agent_uuid].level is TrustLevel.TRUSTED  # id rule
    # 5 PROVIDE_V right after the first good quote, then 3 GET_QUOTE
    assert re.search(r"operational_state [3-6] \(", reports[
        "compute-tpm-1"].reason)
    assert reports["compute-no-agent"].level is TrustLevel.UNKNOWN
    assert "does not know agent compute-no-agent" in \
        reports["compute-no-agent"].reason

    # -- and through Nova's HostManager ---------------------------------
    configure(CONF, stack)
    CONF.set_override("available_filters", [
        "nova.scheduler.filters.all_filters",
        "trustpool.filter.TrustedFilter"], "filter_scheduler")
    CONF.set_override("enabled_filters", ["AllHostsFilter", "TrustedFilter"],
                      "filter_scheduler")
    with mock.patch.object(host_manager.HostManager, "refresh_cells_caches"), \
            mock.patch.object(host_manager.HostManager, "_init_aggregates"), \
            mock.patch.object(host_manager.HostManager,
                              "_init_instance_info"):
        manager = host_manager.HostManager()
    hosts = [fakes.FakeHostState("svc-1", "compute-tpm-1", {}),
             fakes.FakeHostState("svc-2", "compute-no-agent", {})]

    def passing(trust):
        return sorted(h.nodename for h in
                      manager.get_filtered_hosts(hosts, spec(trust)))

    assert passing("trusted") == ["compute-tpm-1"]
    assert passing("untrusted") == []

    # -- a changed measurement ------------------------------------------
    stack.extend_pcr()
    changed = time.monotonic()
    flipped = wait_for(lambda: passing("trusted") == [], 30)
    took = time.monotonic() - changed
    assert flipped, "TrustedFilter still passes the host after the change"
    assert took <= QUOTE_INTERVAL + TTL + SLACK, f"flipped after {took:.1f}s"
    assert passing("untrusted") == ["compute-tpm-1"]

    client.invalidate()
    report = client.level("compute-tpm-1")
    assert report.level is TrustLevel.UNTRUSTED
    assert "operational_state 9 (INVALID_QUOTE)" in report.reason
    print(f"\nflip seen by TrustedFilter {took:.1f}s after tpm2_pcrextend "
          f"(quote interval {QUOTE_INTERVAL}s, TTL {TTL}s)")


def test_verifier_refuses_without_client_certificate(keylime_stack):
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    configure(conf, keylime_stack)
    conf.clear_override("client_cert_file", "keylime")
    conf.clear_override("client_key_file", "keylime")
    client = make_client(conf)
    report = client.level("compute-tpm-1")
    assert report.level is TrustLevel.UNKNOWN
    # 6.6 fails the handshake ("certificate required"), 7.14 answers 403
    assert "attestation failed" in report.reason


@pytest.mark.parametrize("server_name", [None, "not-the-verifier"])
def test_certificate_name_is_checked(keylime_stack, server_name):
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    configure(conf, keylime_stack)
    conf.set_override("tls_server_name", server_name, "keylime")
    report = make_client(conf).level("compute-tpm-1")
    assert report.level is TrustLevel.UNKNOWN
    assert "TLS failure" in report.reason
