"""``tox -e bench-report``: ``trustpool report`` over a month of a busy
cloud.

Figures, not pass/fail: generates 1,000,000 audit events (30 days, 2,000
hosts, 20 flavors, 1 to 6 candidate hosts per decision as in scale mode
where Placement has already pre-filtered, 2% refusals, hosts drifting,
trust-loss and quarantine events, a malformed line in 10,000 and an
unknown event type in 1,000) to a temporary file, then times the report
in each format in a fresh process and reads that process's peak resident
memory (``getrusage`` maxrss). The same run over a tenth of the events
shows that memory follows the fleet, not the log: the two peaks should
be close.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

HOSTS = 2000
FLAVORS = 20
DAYS = 30
_CHILD = """
import resource, sys, time
from trustpool.cmd import main as cli
start = time.perf_counter()
code = cli.main(sys.argv[1:])
took = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print(f"RESULT {code} {took:.3f} {cpu:.3f} {usage.ru_maxrss}",
      file=sys.stderr)
"""
_BASELINE = """
import resource
from trustpool.cmd import compliance, main  # noqa: F401
import trustpool.report.aggregate  # noqa: F401
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(
        when, datetime.timezone.utc).isoformat()


def generate(path: pathlib.Path, count: int, seed: int = 17) -> int:
    """Write ``count`` events; returns the file's size in bytes."""
    rng = random.Random(seed)
    start = datetime.datetime(2026, 10, 1,
                              tzinfo=datetime.timezone.utc).timestamp()
    step = DAYS * 86400 / count
    hosts = [f"compute-{i:04d}.rack{i // 40:02d}.example.org"
             for i in range(HOSTS)]
    flavors = [f"t{i}.{size}" for i, size in enumerate(
        ["small", "medium", "large", "xlarge"] * (FLAVORS // 4))]
    # about 1% of the hosts drift for a while: (host, from, to)
    drifting = {h: (start + rng.uniform(0, DAYS * 86400),
                    rng.uniform(600, 86400))
                for h in rng.sample(hosts, HOSTS // 100)}
    server = "oat https://attestation.example.org:8443/OpenAttestation" \
        "WebServices/V1.0/PollHosts"
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            now = start + n * step
            roll = rng.random()
            if roll < 0.0001:
                out.write('{"event": "trustpool.placement_decision", '
                          '"time": "cut short\n')
                continue
            if roll < 0.0011:
                out.write(json.dumps({"event": "trustpool.future_event",
                                      "schema_version": 2,
                                      "time": _iso(now)}) + "\n")
                continue
            if roll < 0.00115:
                host = rng.choice(hosts)
                out.write(json.dumps({
                    "event": "trustpool.trust_lost", "schema_version": 1,
                    "time": _iso(now), "host": host,
                    "agent_id": f"{rng.getrandbits(128):032x}",
                    "source": "keylime-revocation",
                    "event_id": f"{rng.getrandbits(64):016x}",
                    "event_time": time.asctime(time.gmtime(now)),
                    "severity": "emergency",
                    "context": {"message": "PCR 10 mismatch"},
                    "trait_removed": True,
                    "instances": [{"instance": _uuid(rng)}
                                  for _ in range(rng.randint(0, 8))]})
                    + "\n")
                continue
            if roll < 0.00117:
                out.write(json.dumps({
                    "event": "trustpool.quarantine", "schema_version": 1,
                    "time": _iso(now), "host": rng.choice(hosts),
                    "action": rng.choice(["disable", "enable"]),
                    "trigger": "revocation", "reason": "trustpool: "
                    "quarantined", "event_id": None, "instances": []})
                    + "\n")
                continue
            candidates = rng.sample(hosts, rng.randint(1, 6))
            refused = rng.random() < 0.02
            entries = []
            for host in candidates:
                level = "trusted"
                window = drifting.get(host)
                if window and window[0] <= now < window[0] + window[1]:
                    level = "untrusted"
                if refused:
                    level = rng.choice(["untrusted", "unknown"])
                age = round(rng.uniform(0, 120), 1)
                entries.append(
                    f'{{"host": "{host}", "passed": '
                    f'{"true" if level == "trusted" else "false"}, '
                    f'"level": "{level}", "server_time": '
                    f'"{_iso(now - age)}", "age_seconds": {age}, '
                    f'"backend": "oat", "reason": "attestation server '
                    f"says '{level}'\"}}")
            passed = [h for h, e in zip(candidates, entries, strict=True)
                      if '"passed": true' in e]
            out.write(
                '{"event": "trustpool.placement_decision", '
                f'"schema_version": 1, "time": "{_iso(now)}", '
                f'"request_id": "req-{_uuid(rng)}", '
                f'"instance_uuid": "{_uuid(rng)}", '
                f'"project_id": "{rng.getrandbits(128):032x}", '
                f'"flavor": "{rng.choice(flavors)}", "wanted": "trusted", '
                f'"valid_request": true, "attestation_server": "{server}", '
                f'"hosts": [{", ".join(entries)}], '
                f'"passed": {json.dumps(passed)}}}\n')
    return path.stat().st_size


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def run(log: pathlib.Path, out: pathlib.Path,
        fmt: str) -> tuple[float, float, int]:
    """Wall and CPU seconds and peak RSS (KiB) of one report in a fresh
    process (CPU time too: on a shared machine the wall time is mostly
    other people's)."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, "--config-file", os.devnull,
         "report", str(log), "--format", fmt, "--output", str(out)],
        capture_output=True, text=True, check=False)
    line = [x for x in result.stderr.splitlines() if x.startswith("RESULT")]
    if not line or line[0].split()[1] not in ("0", "1"):
        sys.exit(f"report failed: {result.stderr[-2000:]}")
    _, _code, took, cpu, peak = line[0].split()
    return float(took), float(cpu), int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--formats", default="html,csv,json")
    args = parser.parse_args()
    baseline = int(subprocess.run(
        [sys.executable, "-c", _BASELINE], capture_output=True, text=True,
        check=True).stdout)
    print(f"python + trustpool imported: {baseline / 1024:.0f} MiB peak RSS",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="trustpool-bench-") as tmp:
        work = pathlib.Path(tmp)
        for count in (args.events // 10, args.events):
            log = work / f"audit-{count}.jsonl"
            started = time.perf_counter()
            size = generate(log, count)
            print(f"\n{count:,} events, {size / 2**20:,.0f} MiB, generated "
                  f"in {time.perf_counter() - started:.1f} s", flush=True)
            for fmt in args.formats.split(","):
                out = work / f"report.{fmt}"
                took, cpu, peak = run(log, out, fmt)
                print(f"  {fmt:<5} wall {took:7.1f} s  CPU {cpu:7.1f} s  "
                      f"{count / cpu:8,.0f} events/CPU-s  peak RSS "
                      f"{peak / 1024:5.0f} MiB  output "
                      f"{out.stat().st_size / 2**20:7.1f} MiB", flush=True)
                out.unlink()
            log.unlink()


if __name__ == "__main__":
    main()
