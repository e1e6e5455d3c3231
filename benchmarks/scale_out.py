"""``tox -e bench-scale``: the load W scheduler workers put on one
attestation service.

Figures, not pass/fail. Each of W worker processes is one nova-scheduler
worker: its own Nova HostManager with TrustedFilter, so its own
AttestationClient and cache, as W workers on S scheduler hosts each have.
All of them schedule (one pass every ``--interval`` seconds, every host a
candidate) against ONE loopback HTTPS OpenAttestation test server, itself a
process of its own, for ``--seconds`` with a short TTL. Printed, per host
count, W and ``refresh_ahead`` setting, from the server's own counters:

- requests per TTL window, in all and per worker (expected: 1 per worker
  without refresh ahead, up to 4/3 with it, which refreshes in the last
  quarter of the TTL);
- hosts asked per second (what a real service must attest or look up);
- the server's CPU time per request and per host asked, less its idle
  cost (measured before the runs); the test server is Python, so read
  these as its cost, which scales with hosts asked, not as a real
  OpenAttestation's;
- worker passes in which some host was not trusted (a request that found
  no fresh answer and no answer in time: expected 0).

Workers are started once and reused for every run; runs of one host count
share one server.
"""

from __future__ import annotations

import benchmarks._common as common  # first: sets Nova's threading mode

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from tests.support.pki import make_pki

TTL = 4
SECONDS = 24.0
INTERVAL = 0.5


def _schedule(trusted: Any, hosts: list, spec: Any, interval: float,
              stop: threading.Event, figures: dict) -> None:
    """A scheduler worker's passes, one every ``interval`` seconds, until
    ``stop``; counts passes in which some host was not trusted."""
    while not stop.wait(interval):
        start = time.perf_counter()
        passed = len(list(trusted.get_filtered_hosts(hosts, spec)))
        figures["max"] = max(figures["max"], time.perf_counter() - start)
        figures["passes"] += 1
        figures["short"] += passed < len(hosts)


def _worker() -> None:
    """One scheduler worker, driven by JSON lines on stdin: a run's
    settings (answered ``ready`` once its cache is filled), then ``go`` and
    ``stop`` (answered with the run's figures as JSON); EOF ends it."""
    from benchmarks.bench import CONF, FILTER, host_states, manager, \
        trusted_spec
    from trustpool import conf as tp_conf

    CONF([], project="nova", default_config_files=[])
    tp_conf.register_opts(CONF)
    CONF.set_override("available_filters", [
        "nova.scheduler.filters.all_filters", FILTER], "filter_scheduler")
    for line in sys.stdin:
        run = json.loads(line)
        for key, value in {
                "backend": "oat", "attestation_server": "127.0.0.1",
                "attestation_port": run["port"],
                "attestation_server_ca_file": run["ca"],
                "attestation_auth_timeout": run["ttl"], "read_timeout": 30.0,
                "refresh_ahead": run["ahead"]}.items():
            CONF.set_override(key, value, tp_conf.GROUP)
        hosts = host_states(run["size"])
        trusted = manager("TrustedFilter")
        spec = trusted_spec()
        size = len(list(trusted.get_filtered_hosts(hosts, spec)))
        assert size == run["size"], size  # the cache is filled
        print("ready", flush=True)
        assert sys.stdin.readline().strip() == "go"
        stop = threading.Event()
        figures = {"passes": 0, "short": 0, "max": 0.0}
        thread = threading.Thread(target=_schedule, args=(
            trusted, hosts, spec, run["interval"], stop, figures))
        thread.start()
        assert sys.stdin.readline().strip() == "stop"
        stop.set()
        thread.join(60)
        filt = next(f for f in trusted.enabled_filters
                    if type(f).__name__ == "TrustedFilter")
        filt.client.close()
        print(json.dumps(figures), flush=True)


class Worker:
    """A worker process, seen from the driver."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scale_out", "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} ended")
        return line.strip()

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def run(server: common.RemoteOAT, workers: list[Worker], settings: dict,
        seconds: float, idle: float) -> dict:
    for worker in workers:
        worker.send(json.dumps(settings))
    for worker in workers:
        assert worker.read() == "ready"
    polls0, hosts0, cpu0 = server.stats()
    started = time.monotonic()
    for worker in workers:
        worker.send("go")
    time.sleep(seconds)
    polls1, hosts1, cpu1 = server.stats()
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.send("stop")
    figures = [json.loads(worker.read()) for worker in workers]
    polls, hosts = polls1 - polls0, hosts1 - hosts0
    cpu = max(0.0, cpu1 - cpu0 - idle * elapsed)
    windows = elapsed / settings["ttl"]
    return {"polls": polls, "per_window": polls / windows,
            "per_worker": polls / windows / len(workers),
            "hosts_per_s": hosts / elapsed,
            "ms_per_request": cpu / polls * 1e3 if polls else 0.0,
            "us_per_host": cpu / hosts * 1e6 if hosts else 0.0,
            "busy": cpu / elapsed,
            "passes": sum(f["passes"] for f in figures),
            "short": sum(f["short"] for f in figures),
            "max_pass": max(f["max"] for f in figures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="*",
                        default=[1_000, 10_000])
    parser.add_argument("--workers", type=int, nargs="*",
                        default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--ttl", type=int, default=TTL)
    parser.add_argument("--interval", type=float, default=INTERVAL,
                        help="seconds each worker waits between passes")
    parser.add_argument("--ahead", choices=("on", "off", "both"),
                        default="on", help="refresh_ahead in the runs "
                        "(on, the default; off; both)")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 hosts, 1 and 4 workers, 12 s runs: "
                        "a smoke run")
    args = parser.parse_args()
    if args.worker:
        _worker()
        return
    if args.quick:
        args.sizes, args.workers, args.seconds = [1_000], [1, 4], 12.0
    aheads = {"on": [True], "off": [False], "both": [True, False]}[args.ahead]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-scale-"))
    pki = make_pki(workdir)
    workers = [Worker() for _ in range(max(args.workers))]
    try:
        print(f"W worker processes, each its own HostManager + TrustedFilter "
              f"+ cache, one pass every {args.interval:g} s, against one "
              f"loopback OAT server; TTL {args.ttl} s, {args.seconds:g} s a "
              "run")
        print(f"{'hosts':>6} {'ahead':>5} {'W':>2}  {'req/TTL':>7}  "
              f"{'/worker':>7}  {'hosts/s':>8}  {'srv ms/req':>10}  "
              f"{'srv us/host':>11}  {'srv busy':>8}  {'passes':>6}  "
              f"{'short':>5}  {'max pass ms':>11}")
        for size in args.sizes:
            names = [f"node{i:06d}" for i in range(size)]
            server = common.RemoteOAT(pki, names, workdir)
            idle = 0.0
            try:
                _, _, cpu0 = server.stats()
                time.sleep(2.0)
                idle = (server.stats()[2] - cpu0) / 2.0
                for ahead in aheads:
                    for count in args.workers:
                        settings = {"port": server.port,
                                    "ca": str(pki["ca"].cert_path),
                                    "size": size, "ttl": args.ttl,
                                    "ahead": ahead,
                                    "interval": args.interval}
                        r = run(server, workers[:count], settings,
                                args.seconds, idle)
                        print(f"{size:>6} {'on' if ahead else 'off':>5} "
                              f"{count:>2}  {r['per_window']:>7.2f}  "
                              f"{r['per_worker']:>7.2f}  "
                              f"{r['hosts_per_s']:>8.0f}  "
                              f"{r['ms_per_request']:>10.2f}  "
                              f"{r['us_per_host']:>11.2f}  "
                              f"{r['busy'] * 100:>7.1f}%  "
                              f"{r['passes']:>6}  {r['short']:>5}  "
                              f"{r['max_pass'] * 1e3:>11.1f}", flush=True)
            finally:
                print(f"       (server idle: {idle * 1e3:.2f} ms CPU/s, "
                      "subtracted)")
                server.stop()
    finally:
        for worker in workers:
            worker.stop()


if __name__ == "__main__":
    main()
