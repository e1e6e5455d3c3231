"""The real Keylime 6.6.0 verifier's revocation webhook into
``trustpool sync-traits --interval``, end to end (issue 16, item 3).

The verifier is configured with ``enabled_revocation_notifications =
['webhook']`` and a ``webhook_url`` on 127.0.0.1 (tests/keylime/conftest.py);
it trusts the listener's test CA through ``REQUESTS_CA_BUNDLE``. A real
Placement (started beside the stack, same file) holds the host's compute
node provider. Two services run as the
operator runs them, each a ``trustpool sync-traits --interval`` process of
its own with the keylime backend:

* the event service listens for the webhook and manages
  ``CUSTOM_TRUSTPOOL_TRUSTED``; its interval is so long that after its
  first pass only an event can take the trait away;
* the polling service has no listener and manages
  ``CUSTOM_TRUSTPOOL_POLLED`` on the same provider every ``POLL_INTERVAL``
  seconds: the polling path, measured on the same PCR extension.

The tenant enrols the agent without ``--cert``, so the agent has no
revocation key and the verifier sends an empty signature: the event
service runs without ``revocation_cert_file`` (and warns that it does).
The signed path is tested with events made in Keylime's format
(tests/support/keylime_events.py) in tests/nova/test_revocation_events.py.

The latencies are printed (the tier runs with ``-s``), never asserted.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
import urllib.parse

import pytest
from oslo_config import cfg

from trustpool.attestation import TrustLevel
from trustpool.conf import make_client

from tests.keylime.stack import PCR
from tests.keylime.test_keylime_stack import configure, keylime_options
from tests.support import leakcheck
from tests.support.processes import stop_group

HOST = "compute-tpm-1"
TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"
POLLED = "CUSTOM_TRUSTPOOL_POLLED"
#: the polling service's interval; the event service's is longer than the
#: test, so its only pass is the first one
POLL_INTERVAL = 2
EVENT_SERVICE_INTERVAL = 600
RESOURCES = "resources=VCPU:1,MEMORY_MB:512"
#: how often the test reads the provider's traits: the one Placement
#: worker also serves the service, so a tighter watch slows the removal
WATCH_STEP = 0.05


class Service:
    """``python -m trustpool.cmd.main sync-traits --interval`` (what the
    ``trustpool`` console script runs) in a process group of its own."""

    def __init__(self, directory, name: str, config: str,
                 interval: float) -> None:
        self.path = directory / f"{name}.conf"
        self.path.write_text(config)
        self.log_path = directory / f"{name}.log"
        self.interval = interval
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
             str(self.path), "sync-traits", "--interval",
             str(self.interval)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def audit(self, name: str) -> list[dict]:
        """The audit events ``name`` the service logged (JSON lines)."""
        found = []
        for line in self.log().splitlines():
            if "trustpool.audit" not in line or "{" not in line:
                continue
            event = json.loads(line[line.index("{"):])
            if event.get("event") == name:
                found.append(event)
        return found

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, \
            f"{self.path.stem} exited:\n{self.log()[-3000:]}"

    def stop(self) -> None:
        stop_group(self.proc)


def config(stack, placement, trait: str, listen: str | None = None,
           pki=None) -> str:
    keylime = keylime_options(stack)
    agent_ids = ",".join(f"{h}:{a}" for h, a in
                         keylime.pop("agent_ids").items())
    lines = [
        "[DEFAULT]", "debug = False",
        "[trusted_computing]", "backend = keylime",
        "[keylime]", f"agent_ids = {agent_ids}", "agent_id_rule = map-only",
        *(f"{key} = {value}" for key, value in keylime.items()),
        "[trustpool_traits]", f"trait = {trait}",
        "[placement]", "auth_type = admin_token", "token = admin",
        f"endpoint = {placement.url}", f"endpoint_override = {placement.url}",
    ]
    if listen:
        # no revocation_cert_file: the agent has no revocation key
        lines += ["[trustpool_events]", f"listen = {listen}",
                  f"cert_file = {pki['server'].cert}",
                  f"key_file = {pki['server'].key}"]
    return "\n".join(lines) + "\n"


def _trusted(stack) -> bool:
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    configure(conf, stack)
    client = make_client(conf)
    try:
        return client.level(HOST).level is TrustLevel.TRUSTED
    finally:
        client.close()


def wait_for(predicate, what: str, timeout: float = 60,
             services: tuple[Service, ...] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for service in services:
            service.alive()
        time.sleep(0.1)
    logs = "\n".join(f"===== {s.path.stem} =====\n{s.log()[-2000:]}"
                     for s in services)
    raise AssertionError(f"not within {timeout} s: {what}\n{logs}")


def test_verifier_webhook_removes_the_trait_at_once(keylime_stack,
                                                    placement, pki,
                                                    tmp_path):
    stack = keylime_stack
    if stack.extended:  # an earlier test revoked the agent
        stack.reenrol()
    for trait in (TRAIT, POLLED):
        placement.session.put(f"{placement.url}/traits/{trait}")
    uuid = placement.create_provider(HOST, {"COMPUTE_NODE"})
    placement.set_inventory(uuid, {"VCPU": 8, "MEMORY_MB": 8192})
    listen = urllib.parse.urlsplit(stack.webhook_url).netloc
    events = Service(tmp_path, "events",
                     config(stack, placement, TRAIT, listen, pki),
                     EVENT_SERVICE_INTERVAL)
    polling = Service(tmp_path, "polling",
                      config(stack, placement, POLLED), POLL_INTERVAL)
    services = (events, polling)
    try:
        # the verifier vouches for the agent (first quotes) before the
        # event service's one and only pass
        wait_for(lambda: _trusted(stack), "the agent attested", 60)
        for service in services:
            service.start()
        wait_for(lambda: {TRAIT, POLLED} <= placement.traits(uuid)[0],
                 "both services' first pass", 60, services)
        assert "accepted UNSIGNED" in events.log()
        assert "listening for Keylime revocation events" in events.log()
        offered = f"{RESOURCES}&required={TRAIT}"
        assert placement.allocation_candidates(offered) == {uuid}

        # -- a changed measurement ------------------------------------
        before = time.time()
        stack.extend_pcr()
        extended = time.time()
        gone: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(gone) < 2 and time.monotonic() < deadline:
            traits = placement.traits(uuid)[0]
            now = time.time()
            for trait in (TRAIT, POLLED):
                if trait not in traits:
                    gone.setdefault(trait, now)
            time.sleep(WATCH_STEP)
        for service in services:
            service.alive()
        assert TRAIT in gone, f"the event never came:\n{events.log()[-3000:]}"
        assert POLLED in gone, "the polling service never removed its trait"

        # the host is no longer offered for the trait, and still for
        # requests that do not ask for it
        assert placement.allocation_candidates(offered) == set()
        assert placement.allocation_candidates(RESOURCES) == {uuid}

        # the event, not a pass, removed it: the one trust_lost event of
        # the service says so, with what the real verifier sent
        [lost] = wait_for(lambda: events.audit("trustpool.trust_lost"),
                          "the trust_lost audit event", 10, services)
        assert lost["host"] == HOST
        assert lost["agent_id"] == stack.agent_uuid
        assert lost["type"] == "revocation"
        assert lost["event_id"] == f"pcr_validation.invalid_pcr_{PCR}"
        assert lost["context"]["context"] == "PCR value is not in allowlist"
        assert lost["signed"] is False and lost["trait_removed"] is True
        assert lost["providers"] == [{"uuid": uuid, "name": HOST,
                                      "removed": True}]
        time.strptime(lost["event_time"])  # time.asctime()'s format
        sent = [t for t in stack.webhook_times() if t >= before - 1]
        assert sent, "the verifier logged no webhook:\n" + \
            stack.log("verifier")[-3000:]
        for service in services:
            assert not leakcheck.scan_text(service.log())
    finally:
        for service in services:
            service.stop()
        placement.delete_provider(uuid)

    revoked = sent[0]
    logged = datetime.datetime.fromisoformat(lost["time"]).timestamp()
    print(f"\nKeylime revocation webhook, one run: the verifier sent its "
          f"revocation (its log) {revoked - extended:.2f} s after "
          f"tpm2_pcrextend; Placement confirmed the trait's removal (the "
          f"service's trust_lost event) {logged - revoked:.3f} s after "
          f"the revocation; the test saw it gone (every "
          f"{WATCH_STEP * 1000:.0f} ms) {gone[TRAIT] - revoked:.3f} s after "
          f"the revocation, {gone[TRAIT] - extended:.2f} s after "
          f"tpm2_pcrextend; polling path (interval {POLL_INTERVAL} s, no "
          f"events): gone {gone[POLLED] - extended:.2f} s after "
          f"tpm2_pcrextend")




#: Run by the Keylime venv's python with the stack's configuration: the
#: body the 6.6 verifier sends for an agent enrolled with a revocation key
#: (the key's PEM on stdin) whose PCR 15 is not in its policy, made by
#: ``prepare_error``; written to argv[2] as ``notify_webhook`` hands it to
#: requests' ``json=`` (Keylime's console log goes to stdout), then sent by
#: ``notify_webhook`` itself to its ``webhook_url``, retries and all.
_KEYLIME_NOTIFY = """
import sys, threading
from requests.models import complexjson
from keylime import cloud_verifier_common, json, revocation_notifier
from keylime.failure import Component, Failure

failure = Failure(Component.PCR_VALIDATION)
failure.add_event("invalid_pcr_15", {
    "context": "PCR value is not in allowlist", "got": "ab" * 32,
    "expected": ["0" * 64]}, True)
agent = {"ip": "127.0.0.1", "agent_id": sys.argv[1], "port": 9002,
         "tpm_policy": '{"15": ["' + "0" * 64 + '"], "mask": "0x8000"}',
         "meta_data": '{"cert_serial": 2}',
         "revocation_key": sys.stdin.read()}
tosend = cloud_verifier_common.prepare_error(
    agent, event=failure.highest_severity_event)
with open(sys.argv[2], "w") as out:
    out.write(complexjson.dumps(json.bytes_to_str(dict(tosend)),
                                allow_nan=False))
revocation_notifier.notify_webhook(tosend)
for thread in threading.enumerate():
    if thread is not threading.main_thread():
        thread.join()
"""


class _Outcomes:
    """The listener's observer: what it answered, in order; on the first
    failure (Placement unreachable: 503) Placement comes back."""

    def __init__(self, adapter, url: str) -> None:
        self.adapter = adapter
        self.url = url
        self.seen: list[str] = []

    def revocation_event(self, outcome: str, *_args) -> None:
        self.seen.append(outcome)
        if outcome == "failed":
            self.adapter.endpoint_override = self.url

    def revocation_refused(self, reason: str) -> None:
        self.seen.append(reason)


def test_keylime_signs_and_retries_as_trustpool_expects(
        keylime_stack, placement, pki, conf, tmp_path):
    """Keylime 6.6's own code makes, signs and sends a revocation for an
    agent with a revocation key: the body has the fields, order, types and
    values of the events tests/support/keylime_events.py makes; the
    listener (with ``revocation_cert_file``) verifies its signature; while
    Placement is unreachable it answers 503 and the verifier's retry,
    ``retry_interval`` later, removes the trait; Keylime then stops."""
    from cryptography.hazmat.primitives import serialization
    from keystoneauth1 import adapter as ks_adapter
    from keystoneauth1 import session as ks_session

    from trustpool import revocation, trait_sync
    from trustpool.attestation.backends.keylime import AgentIds
    from trustpool.openstack.placement import PlacementAPI
    from trustpool.revocation.message import Refused, SignatureCheck, read

    from tests.support import keylime_events as ke
    from tests.support.placement_server import _free_port as free_port

    host, agent = "compute-tpm-retry", "retry-agent"
    key = ke.RevocationKey(tmp_path)
    uuid = placement.create_provider(host, {"COMPUTE_NODE", TRAIT})
    adapter = ks_adapter.Adapter(
        ks_session.Session(),
        endpoint_override=f"http://127.0.0.1:{free_port()}",  # nobody
        additional_headers={"X-Auth-Token": "admin"})
    trait_sync.register_opts(conf)
    revocation.register_opts(conf)
    AgentIds(conf)  # registers [keylime]
    conf.set_override("agent_ids", {host: agent}, "keylime")
    conf.set_override("agent_id_rule", "map-only", "keylime")
    for name, value in {"listen": f"127.0.0.1:{free_port()}",
                        "cert_file": str(pki["server"].cert),
                        "key_file": str(pki["server"].key),
                        "revocation_cert_file": str(key.cert_path)}.items():
        conf.set_override(name, value, revocation.options.GROUP)
    service = revocation.start(conf, PlacementAPI(adapter))
    outcomes = _Outcomes(adapter, placement.url)
    service.observe(outcomes)
    pem = key.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()
    stack = keylime_stack
    env = {**stack.env(), "REQUESTS_CA_BUNDLE": str(pki["ca"].cert_path),
           "KEYLIME_VERIFIER_REVOCATIONS_WEBHOOK_URL": service.url,
           "KEYLIME_VERIFIER_MAX_RETRIES": "5",
           "KEYLIME_VERIFIER_RETRY_INTERVAL": "1",
           "KEYLIME_VERIFIER_EXPONENTIAL_BACKOFF": "False"}
    try:
        result = subprocess.run(
            [str(stack.venv / "bin" / "python"), "-c", _KEYLIME_NOTIFY,
             agent, str(tmp_path / "body.json")],
            input=pem, env=env, cwd=stack.dir, capture_output=True,
            text=True, timeout=90, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        assert outcomes.seen == ["failed", "removed"], result.stdout[-3000:]
        assert TRAIT not in placement.traits(uuid)[0]
    finally:
        service.stop()
        placement.delete_provider(uuid)

    body = (tmp_path / "body.json").read_bytes()
    check = SignatureCheck(str(key.cert_path))
    notification = read(body, check)
    assert notification.signed is True
    assert (notification.kind, notification.agent_id) == ("revocation",
                                                          agent)
    real, made = json.loads(body), json.loads(ke.signed_body(key, agent))
    assert list(real) == list(made) == ["msg", "signature"]
    real_msg, made_msg = json.loads(real["msg"]), json.loads(made["msg"])
    assert list(real_msg) == list(made_msg)  # the same fields, in order
    assert {k: type(v) for k, v in real_msg.items()} == \
        {k: type(v) for k, v in made_msg.items()}
    for name in ("type", "ip", "agent_id", "port", "tpm_policy",
                 "meta_data", "event_id", "severity_label", "context"):
        assert real_msg[name] == made_msg[name], name
    # another msg under Keylime's signature is refused
    forged = json.dumps({
        "msg": real["msg"].replace("invalid_pcr_15", "invalid_pcr_16"),
        "signature": real["signature"]}).encode()
    with pytest.raises(Refused) as refused:
        read(forged, check)
    assert refused.value.status == 403
