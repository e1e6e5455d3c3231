"""``tox -e demo``: trustpool working in real Nova, on one machine.

Starts Nova 34's API, conductor, scheduler, placement and five fake
computes in-process, with TrustedFilter enabled and a real HTTPS
OpenAttestation server on 127.0.0.1 that vouches for some of the hosts.
Boots servers of a trusted, an untrusted and a plain flavor, prints where
each landed, then stops the attestation server to show a trusted boot
failing closed (NoValidHost) while a plain boot still works.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import textwrap
import time
import unittest

import nova.tests.functional  # noqa: F401  (monkey-patches; keep first)
from nova import version
from nova.tests.functional import integrated_helpers

from tests.nova.base import TrustpoolNovaMixin

HOSTS = {"compute-a": "trusted", "compute-b": "trusted",
         "compute-c": "untrusted", "compute-d": "unknown",
         "compute-e": None}  # the attestation server has never heard of it
BOOTS = [("trusted", 3), ("untrusted", 2), ("plain", 3)]  # quota: 10
TTL = 2  # attestation_auth_timeout, short so the demo need not wait long


class Demo(TrustpoolNovaMixin, integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"
    result: dict = {}

    def setUp(self):
        self.setup_trustpool({h: lvl for h, lvl in HOSTS.items() if lvl},
                             attestation_auth_timeout=TTL)
        super().setUp()
        for host in HOSTS:
            self._start_compute(host)

    def test_demo(self):
        out = Demo.result
        out["server"] = self.oat.url
        flavors = {name: self._create_flavor(
            name=name, memory_mb=512, vcpu=1, disk=1, ephemeral=0,
            extra_spec=None if name == "plain" else
            {"trust:trusted_host": name}) for name, _ in BOOTS}
        landed: dict[str, list[str]] = {h: [] for h in HOSTS}
        for name, count in BOOTS:
            for i in range(1, count + 1):
                server = self._create_server(
                    name=f"{name}-{i}", flavor_id=flavors[name],
                    networks="none")
                landed[server["OS-EXT-SRV-ATTR:host"]].append(
                    server["name"])
        out["landed"] = landed
        out["polls"] = self.oat.polls()

        self.oat.stop()
        time.sleep(TTL + 0.2)  # cached answers stay valid for the TTL
        failed = self._create_server(name="trusted-while-server-down",
                                     flavor_id=flavors["trusted"],
                                     networks="none", expected_state="ERROR")
        plain = self._create_server(name="plain-while-server-down",
                                    flavor_id=flavors["plain"],
                                    networks="none")
        out["down"] = [(failed["name"], failed["status"],
                        failed["fault"]["message"]),
                       (plain["name"], plain["status"],
                        plain["OS-EXT-SRV-ATTR:host"])]
        out["log"] = [line for line in self.trust_log.output.splitlines()
                      if "WARNING" in line]


@contextlib.contextmanager
def _fds_to(target):
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def main() -> int:
    stream = io.StringIO()
    suite = unittest.TestSuite([Demo("test_demo")])
    print("Starting Nova in-process with TrustedFilter (about 15 s)...")
    sys.stdout.flush()
    # Nova's services log plenty, some of it straight to the process's
    # file descriptors; keep it for a failure report only.
    with tempfile.TemporaryFile("w+") as noise, _fds_to(noise):
        outcome = unittest.TextTestRunner(stream=stream,
                                          verbosity=0).run(suite)
        sys.stdout.flush()
        sys.stderr.flush()
        noise.seek(0)
        logged = noise.read()
    if not outcome.wasSuccessful():
        print(logged[-20000:])
        print(stream.getvalue())
        print("demo FAILED")
        return 1
    r = Demo.result
    print()
    print(f"trustpool demo: Nova {version.version_string()} in-process "
          "(API, conductor, scheduler, placement, 5 fake computes)")
    print(f"attestation server: {r['server']} (OpenAttestation PollHosts, "
          "HTTPS with a CA made for this run)")
    print()
    print(f"{'host':<11} {'attested':<10} servers that landed there")
    print(f"{'-' * 11} {'-' * 10} {'-' * 40}")
    for host, level in HOSTS.items():
        shown = level or "unknown *"
        names = ", ".join(r["landed"][host]) or "-"
        print(f"{host:<11} {shown:<10} {names}")
    print("* the attestation server has never heard of compute-e")
    print()
    print(f"{sum(n for _, n in BOOTS)} boots made {r['polls']} attestation "
          f"request(s): one batch for all hosts per {TTL} s cache window.")
    print()
    print(f"Attestation server stopped, {TTL} s TTL passed:")
    for name, status, detail in r["down"]:
        print(f"  {name:<27} {status:<7} {detail}")
    for line in r["log"]:
        print(textwrap.fill(line, width=78, initial_indent="  log: ",
                            subsequent_indent="       "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
