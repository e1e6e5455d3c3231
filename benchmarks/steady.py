"""``tox -e bench-steady``: does a scheduling request ever wait on attestation?

Figures, not pass/fail. Eight native threads (Nova's threading mode) make
scheduling passes through Nova's real HostManager for ``--seconds`` each
run, alternating a TrustedFilter pass with an AllHostsFilter pass over the
same hosts, so both see the same machine noise. Runs, per host count:

- ``warm``: a TTL far longer than the run: the cache never expires, the
  floor a pass can reach;
- ``ahead off``: a 5 s TTL, refresh ahead off: once per TTL one unlucky
  pass waits for the whole round trip to the attestation server;
- ``ahead here``: the same TTL with refresh ahead made in the
  scheduler's own process (``refresh_ahead_process = False``);
- ``ahead on``: the same TTL with refresh ahead made by the helper
  process (the default).

Printed: p50 / p99 / max pass time of each filter, TrustedFilter's p99
against the warm run's p99, the same ratio for AllHostsFilter (how much
the machine itself drifted between the runs), attestation requests per
TTL window, and for
refresh ahead how many refreshes ran, the longest of the last four and
the lead the client ended with (it grows with how long they take).
The attestation server is a separate process (no GIL shared with the
passes being measured).
"""

from __future__ import annotations

import benchmarks._common as common  # first: sets Nova's threading mode

import argparse
import pathlib
import statistics
import tempfile
import threading
import time

from benchmarks.bench import CONF, FILTER, host_states, manager, trusted_spec
from tests.support.pki import make_pki
from trustpool import conf as tp_conf

TTL = 5


def _percentiles(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


def run(pki: dict, workdir: pathlib.Path, size: int, ttl: int,
        ahead: bool, seconds: float, threads: int,
        helper: bool = True) -> dict:
    hosts = host_states(size)
    server = common.RemoteOAT(pki, [h.nodename for h in hosts], workdir)
    try:
        for key, value in {
                "backend": "oat", "attestation_server": "127.0.0.1",
                "attestation_port": server.port,
                "attestation_server_ca_file": str(pki["ca"].cert_path),
                "attestation_auth_timeout": ttl, "read_timeout": 30.0,
                "refresh_ahead": ahead,
                "refresh_ahead_process": helper}.items():
            CONF.set_override(key, value, tp_conf.GROUP)
        trusted, plain = manager("TrustedFilter"), manager("AllHostsFilter")
        spec = trusted_spec()
        # the first pass fills the cache; not part of the figures
        assert len(list(trusted.get_filtered_hosts(hosts, spec))) == size
        polls_before = server.polls()
        times: dict[str, list[float]] = {"trusted": [], "plain": []}
        lock = threading.Lock()
        stop = threading.Event()

        def worker() -> None:
            mine: dict[str, list[float]] = {"trusted": [], "plain": []}
            while not stop.is_set():
                for name, mgr in (("trusted", trusted), ("plain", plain)):
                    start = time.perf_counter()
                    passed = list(mgr.get_filtered_hosts(hosts, spec))
                    mine[name].append(time.perf_counter() - start)
                    assert len(passed) == size, (name, len(passed))
            with lock:
                for name, values in mine.items():
                    times[name].extend(values)

        workers = [threading.Thread(target=worker) for _ in range(threads)]
        started = time.monotonic()
        for w in workers:
            w.start()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join(60)
        elapsed = time.monotonic() - started
        polls = server.polls() - polls_before
        filt = next(f for f in trusted.enabled_filters
                    if type(f).__name__ == "TrustedFilter")
        client = filt.client
        client.close()
        took = list(client._ahead_took)
        helped = 0 if client.background is None else \
            client.background.answered
        return {"refreshes": client.stats.refreshes_ahead,
                "helped": helped,
                "took": max(took) if took else None,
                "lead": client._lead() if ahead else None,
                "trusted": _percentiles(times["trusted"]),
                "plain": _percentiles(times["plain"]),
                "passes": len(times["trusted"]),
                "per_window": polls / (elapsed / ttl)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*",
                        default=[1_000, 10_000])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--ttl", type=int, default=TTL,
                        help=f"attestation_auth_timeout of the runs that "
                        f"expire (default {TTL} s)")
    parser.add_argument("--quick", action="store_true",
                        help="10 s runs over 1,000 hosts, for a smoke run")
    args = parser.parse_args()
    sizes, seconds = ([1_000], 10.0) if args.quick else \
        (args.sizes, args.seconds)
    CONF([], project="nova", default_config_files=[])
    tp_conf.register_opts(CONF)
    CONF.set_override("available_filters", [
        "nova.scheduler.filters.all_filters", FILTER], "filter_scheduler")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-steady-"))
    pki = make_pki(workdir)
    expiring = args.ttl
    print(f"{args.threads} native threads, {seconds:g} s per run, TTL "
          f"{expiring} s (warm: TTL longer than the run); pass times in ms")
    print(f"{'hosts':>7}  {'run':<9}  {'Trusted p50/p99/max':>22}  "
          f"{'AllHosts p50/p99/max':>22}  {'p99/warm p99':>12}  "
          f"{'AllHosts p99/warm':>17}  "
          f"{'requests/TTL':>12}  {'passes':>7}  refresh ahead")
    for size in sizes:
        rows = {}
        for label, ttl, ahead, helper in (
                ("warm", 100_000, False, True),
                ("ahead off", expiring, False, True),
                ("ahead here", expiring, True, False),
                ("ahead on", expiring, True, True)):
            rows[label] = run(pki, workdir, size, ttl, ahead, seconds,
                              args.threads, helper)
        warm_p99 = rows["warm"]["trusted"][1]
        # the machine's own drift between runs: the same ratio for the
        # AllHostsFilter passes made beside them
        plain_p99 = rows["warm"]["plain"][1]
        for label, row in rows.items():
            t, a = row["trusted"], row["plain"]
            window = "-" if label == "warm" else f"{row['per_window']:.2f}"
            print(f"{size:>7}  {label:<9}  "
                  f"{'/'.join(f'{v * 1e3:.1f}' for v in t):>22}  "
                  f"{'/'.join(f'{v * 1e3:.1f}' for v in a):>22}  "
                  f"{t[1] / warm_p99:>11.2f}x  {a[1] / plain_p99:>16.2f}x  "
                  f"{window:>12}  "
                  f"{row['passes']:>7}  {_ahead(row)}")


def _ahead(row: dict) -> str:
    """How many refreshes ran ahead, the longest of the last ones (from
    the answers found due to the new answer stored) and the lead the
    client ended with."""
    if row["lead"] is None:
        return "-"
    took = "-" if row["took"] is None else f"{row['took']:.2f}"
    return (f"{row['refreshes']} runs ({row['helped']} by the helper), "
            f"longest {took} s, "
            f"lead {row['lead']:.2f} s")


if __name__ == "__main__":
    main()
