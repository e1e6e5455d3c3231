"""Load: 32 scheduler threads, 10,000 hosts, a live HTTPS server, short TTL.

Prints figures, asserts nothing about time (shared machines are noisy):

* attestation requests made against TTL windows elapsed (single-flight:
  one request per window, whatever the number of threads);
* p50 / p99 / max time of one scheduling pass (TrustedFilter.filter_all);
* with the server hung (accepts, never answers) for a while: how long
  threads waited, and how many slow passes each thread saw per failure
  window (the promise: at most one timeout per window).

Run with ``tox -e load`` (real Nova's FakeHostState and TrustedFilter).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import threading
import time

import nova.tests.functional  # noqa: F401  (monkey-patches; keep first)
from nova import objects
from nova.tests.unit.scheduler import fakes
from oslo_config import cfg

from tests.support.oat_server import OATServer
from tests.support.pki import make_pki
from trustpool import conf as tp_conf
from trustpool.filter import TrustedFilter

objects.register_all()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--ttl", type=int, default=1)
    parser.add_argument("--outage", type=float, default=4.0)
    args = parser.parse_args()

    pki = make_pki(pathlib.Path(tempfile.mkdtemp(prefix="tp-load-")))
    names = [f"node{i:06d}" for i in range(args.hosts)]
    server = OATServer(pki["server"].cert, pki["server"].key,
                       levels={n: "trusted" for n in names[::2]}).start()
    conf = cfg.ConfigOpts()
    tp_conf.register_opts(conf)
    conf([], default_config_files=[])
    read_timeout, retry = 0.5, 1.0
    for key, value in {"attestation_server": "127.0.0.1",
                       "attestation_port": server.port,
                       "attestation_server_ca_file": str(pki["ca"].cert_path),
                       "attestation_auth_timeout": args.ttl,
                       "connect_timeout": 0.5, "read_timeout": read_timeout,
                       "failure_retry_interval": retry}.items():
        conf.set_override(key, value, tp_conf.GROUP)
    trusted_filter = TrustedFilter(conf)
    hosts = [fakes.FakeHostState(f"c{i}", n, {}) for i, n in enumerate(names)]
    spec = objects.RequestSpec(flavor=objects.Flavor(
        extra_specs={"trust:trusted_host": "trusted"}))

    stop = threading.Event()
    samples: list[tuple[float, float, int]] = []  # (start, duration, thread)
    lock = threading.Lock()
    wrong = []

    def worker(index: int) -> None:
        while not stop.is_set():
            start = time.monotonic()
            passed = trusted_filter.filter_all(hosts, spec)
            took = time.monotonic() - start
            with lock:
                samples.append((start, took, index))
                if len(passed) not in (0, args.hosts // 2 +
                                       args.hosts % 2):
                    wrong.append(len(passed))

    threads = [threading.Thread(target=worker, args=(i,))
               for i in range(args.threads)]
    began = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    healthy_polls = server.polls()
    healthy_end = time.monotonic()

    # the outage: the server accepts connections and never answers
    server.responder = lambda request: server.stopping.wait(60) and None
    outage_start = time.monotonic()
    time.sleep(args.outage)
    outage_end = time.monotonic()
    stop.set()
    for t in threads:
        t.join(30)
    outage_polls = server.polls() - healthy_polls
    server.stop()

    healthy = [d for s, d, _ in samples if s < healthy_end]
    windows = (healthy_end - began) / args.ttl
    print(f"hosts={args.hosts} threads={args.threads} ttl={args.ttl}s "
          f"healthy={healthy_end - began:.1f}s outage={args.outage:.1f}s")
    print(f"healthy: {len(healthy)} passes, {healthy_polls} attestation "
          f"requests over {windows:.1f} TTL windows "
          f"({healthy_polls / windows:.2f} per window)")
    print(f"healthy pass time: p50 {statistics.median(healthy) * 1e3:.1f} ms"
          f", p99 {percentile(healthy, 0.99) * 1e3:.1f} ms, "
          f"max {max(healthy) * 1e3:.1f} ms")
    during = [(s, d, i) for s, d, i in samples
              if outage_start <= s + d and s < outage_end]
    budget = 0.5 + read_timeout
    slow = [(s, d, i) for s, d, i in during if d > budget / 2]
    per_thread_window: dict[tuple[int, int], int] = {}
    for s, d, i in slow:
        window = int((s - outage_start) // (budget + retry))
        per_thread_window[(i, window)] = \
            per_thread_window.get((i, window), 0) + 1
    outage_windows = args.outage / (budget + retry)
    print(f"outage: {outage_polls} attestation requests over "
          f"{outage_windows:.1f} failure windows "
          f"(timeout {budget:.1f}s + retry {retry:.1f}s)")
    print(f"outage pass time: max {max(d for _, d, _ in during):.2f}s; "
          f"passes slower than {budget / 2:.2f}s: {len(slow)}; most slow "
          f"passes by one thread in one window: "
          f"{max(per_thread_window.values(), default=0)}")
    print(f"passes with a wrong host count: {len(wrong)}")


if __name__ == "__main__":
    main()
