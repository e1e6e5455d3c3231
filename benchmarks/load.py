"""Load: 32 scheduler threads, 10,000 hosts, a live HTTPS server, short TTL.

Prints figures, asserts nothing about time (shared machines are noisy):

* attestation requests made against TTL windows elapsed (single-flight:
  one request per window, whatever the number of threads);
* p50 / p99 / max time of one scheduling pass (TrustedFilter.filter_all);
* with the server hung (accepts, never answers) for a while: how long
  threads waited, and how many slow passes each thread saw per failure
  window (the promise: at most one timeout per window).

Run with ``tox -e load`` (real Nova's FakeHostState and TrustedFilter, in
Nova's native-threading mode; the attestation server runs in a process of
its own so that it does not compete with the scheduler threads for the
GIL, as a real one would not).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import threading
import time

from benchmarks._common import RemoteOAT
from nova import objects
from nova.tests.unit.scheduler import fakes
from oslo_config import cfg

from tests.support.pki import make_pki
from trustpool import conf as tp_conf
from trustpool.filter import TrustedFilter


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

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tp-load-"))
    pki = make_pki(tmp)
    names = [f"node{i:06d}" for i in range(args.hosts)]
    server = RemoteOAT(pki, names[::2], tmp)
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
    # Measure what the promise is about: time a thread spends in the
    # client waiting for attestation (the refresh lock or the network),
    # apart from the CPU time it shares with 31 other threads.
    waits: list[tuple[float, float, str]] = []  # (start, seconds, thread)
    client = trusted_filter.client
    fetch = client._fetch

    def timed_fetch(missing, generation):
        start = time.monotonic()
        try:
            return fetch(missing, generation)
        finally:
            waits.append((start, time.monotonic() - start,
                          threading.current_thread().name))

    client._fetch = timed_fetch
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
    server.hang()
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
    budget = 0.5 + read_timeout
    during = [(s, d, t) for s, d, t in waits
              if outage_start <= s + d and s < outage_end]
    long_waits: dict[str, int] = {}
    for _, d, t in during:
        if d > budget / 2:
            long_waits[t] = long_waits.get(t, 0) + 1
    print(f"outage: {outage_polls} attestation request(s) in "
          f"{args.outage:.1f}s (timeout {budget:.1f}s, failure remembered "
          f"{retry:.1f}s), i.e. {outage_polls} failure window(s)")
    print(f"outage: {len(during)} waits on attestation, longest "
          f"{max((d for _, d, _ in during), default=0):.2f}s; waits over "
          f"{budget / 2:.2f}s by one thread: at most "
          f"{max(long_waits.values(), default=0)} "
          f"({len(long_waits)} of {args.threads} threads waited at all)")
    print(f"passes with a wrong host count: {len(wrong)}")


if __name__ == "__main__":
    main()
