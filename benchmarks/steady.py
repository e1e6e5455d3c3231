"""``tox -e bench-steady``: does a scheduling request ever wait on attestation?

Figures, not pass/fail. Eight native threads (Nova's threading mode) make
scheduling passes through Nova's real HostManager for ``--seconds`` each
run, alternating a TrustedFilter pass with an AllHostsFilter pass over the
same hosts. Runs, per host count, with a 5 s TTL unless said:

- ``warm``: a never-expiring cache too (see below): how far the ratios
  move when nothing differs;
- ``ahead off``: refresh ahead off: once per TTL one unlucky pass waits
  for the whole round trip to the attestation server;
- ``ahead here``: refresh ahead made in the scheduler's own process
  (``refresh_ahead_process = False``);
- ``ahead on``: refresh ahead made by the helper process (the default).

Each run is measured against a ``warm`` run beside it: a scheduler whose
TTL is far longer than the run, so that its cache never expires (the
floor a pass can reach), in a process of its own, started and measured at
the same moments. Why not one run after the other: on a shared machine
the same warm run, repeated, moved by a third between one minute and the
next (p50 118, 118, 148 and 170 ms in four 15 s runs at 10,000 hosts,
2026-12-02), more than the effect measured; side by side, both see the
same machine. What the warm process does not see is the other's own
costs in its process (its refreshes, the answers it takes in); the
helper's and the server's CPU land on the cores both share.

Printed: p50 / p99 / max pass time of TrustedFilter in the run and in the
warm run beside it, the run's p99 against the warm p99, the same ratio
for the AllHostsFilter passes of the two processes (how evenly the
machine treated them: near 1.00 when it did), attestation requests per
TTL window, how many exchanges a scheduling pass made itself (it waited
on attestation; the pass that fills the cache first is not counted), and
for refresh ahead how many refreshes ran (and how many
the helper made), the longest of the last four and the lead the client
ended with (it grows with how long they take). The attestation server is
a separate process (no GIL shared with the passes being measured).
"""

from __future__ import annotations

import benchmarks._common as common  # first: sets Nova's threading mode

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from benchmarks.bench import CONF, FILTER, host_states, manager, trusted_spec
from tests.support.pki import make_pki
from trustpool import conf as tp_conf

TTL = 5
#: the TTL of the warm runs: longer than any run
WARM_TTL = 100_000


def _percentiles(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


def run(size: int, ttl: int, ahead: bool, seconds: float, threads: int,
        helper: bool, start: Callable[[], None]) -> dict:
    """One run in this process; ``start`` is called once the cache is
    filled, and the measured passes begin when it returns."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-steady-"))
    pki = make_pki(workdir)
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
        times: dict[str, list[float]] = {"trusted": [], "plain": []}
        lock = threading.Lock()
        stop = threading.Event()

        def worker() -> None:
            mine: dict[str, list[float]] = {"trusted": [], "plain": []}
            while not stop.is_set():
                for name, mgr in (("trusted", trusted), ("plain", plain)):
                    began = time.perf_counter()
                    passed = list(mgr.get_filtered_hosts(hosts, spec))
                    mine[name].append(time.perf_counter() - began)
                    assert len(passed) == size, (name, len(passed))
            with lock:
                for name, values in mine.items():
                    times[name].extend(values)

        workers = [threading.Thread(target=worker) for _ in range(threads)]
        start()
        polls_before = server.polls()
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
                # exchanges made in a pass (the first fill excluded): a
                # request that waited on attestation; one per refresh
                "waited": client.stats.backend_calls - 1
                - client.stats.refreshes_ahead,
                "helped": helped,
                "took": max(took) if took else None,
                "lead": client._lead() if ahead else None,
                "trusted": _percentiles(times["trusted"]),
                "plain": _percentiles(times["plain"]),
                "passes": len(times["trusted"]),
                "per_window": polls / (elapsed / ttl)}
    finally:
        server.stop()


def _setup() -> None:
    CONF([], project="nova", default_config_files=[])
    tp_conf.register_opts(CONF)
    CONF.set_override("available_filters", [
        "nova.scheduler.filters.all_filters", FILTER], "filter_scheduler")


def _child(config: str) -> None:
    """A run in a process of its own (``--child``): says ``ready`` once
    its cache is filled, starts at the parent's line, and prints its
    figures as one JSON line."""
    _setup()
    args = json.loads(config)

    def start() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    result = run(start=start, **args)
    print("result " + json.dumps(result), flush=True)


def side_by_side(configs: list[dict]) -> list[dict]:
    """The runs of ``configs`` at the same time, each in a process of its
    own, started together once every one has filled its cache."""
    procs = [subprocess.Popen(
        [sys.executable, "-m", "benchmarks.steady", "--child",
         json.dumps(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for config in configs]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a run did not start: {line!r}")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            for line in proc.stdout:
                if line.startswith("result "):
                    results.append(json.loads(line[len("result "):]))
                    break
            else:
                raise RuntimeError("a run ended without its figures")
        return results
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(120)


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
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    sizes, seconds = ([1_000], 10.0) if args.quick else \
        (args.sizes, args.seconds)
    print(f"{args.threads} native threads, {seconds:g} s per run, TTL "
          f"{args.ttl} s; each run beside a warm one (TTL longer than the "
          "run, a process of its own, the same moments); pass times in ms")
    print(f"{'hosts':>7}  {'run':<10}  {'Trusted p50/p99/max':>22}  "
          f"{'warm beside it':>22}  {'p99/warm p99':>12}  "
          f"{'AllHosts p99/warm':>17}  "
          f"{'requests/TTL':>12}  {'passes':>7}  {'waited':>6}  "
          "refresh ahead")
    for size in sizes:
        for label, ahead, helper in (("warm", None, True),
                                     ("ahead off", False, True),
                                     ("ahead here", True, False),
                                     ("ahead on", True, True)):
            base = {"size": size, "seconds": seconds,
                    "threads": args.threads}
            # the warm row: two warm runs side by side, how far the ratio
            # moves when nothing differs
            warm_run = dict(base, ttl=WARM_TTL, ahead=False, helper=True)
            row, warm = side_by_side([
                warm_run if ahead is None else
                dict(base, ttl=args.ttl, ahead=ahead, helper=helper),
                warm_run])
            t, w = row["trusted"], warm["trusted"]
            window = "-" if ahead is None else f"{row['per_window']:.2f}"
            print(f"{size:>7}  {label:<10}  "
                  f"{'/'.join(f'{v * 1e3:.1f}' for v in t):>22}  "
                  f"{'/'.join(f'{v * 1e3:.1f}' for v in w):>22}  "
                  f"{t[1] / w[1]:>11.2f}x  "
                  f"{row['plain'][1] / warm['plain'][1]:>16.2f}x  "
                  f"{window:>12}  "
                  f"{row['passes']:>7}  {row['waited']:>6}  "
                  f"{_ahead(row)}", flush=True)


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
