"""Figures behind trustpool/attestation/cache.py's docstring: storing and
looking up 10,000 reports in ReportCache against cachetools.TTLCache.

``pip install cachetools`` first (it is not a trustpool dependency), then
``python -m benchmarks.cache_vs_ttlcache``. Prints per-host medians of 15
rounds and their ratio; figures, not pass/fail.
"""

from __future__ import annotations

import statistics
import time

import cachetools

from trustpool.attestation.answer import Answer
from trustpool.attestation.cache import ReportCache
from trustpool.attestation.model import HostReport, TrustLevel

N = 10_000
ROUNDS = 15


def _ours(reports, names):
    cache = ReportCache(60, 1_000_000)
    # the reports as the client keeps them (made by a backend's reader or
    # the client's contract check, not by the cache)
    answer = Answer.of_reports(reports)
    start = time.perf_counter()
    cache.store(answer, time.monotonic())
    stored = time.perf_counter() - start
    start = time.perf_counter()
    cache.lookup(names, time.monotonic())
    return stored, time.perf_counter() - start


def _ttlcache(reports, names):
    cache = cachetools.TTLCache(1_000_000, 60, timer=time.monotonic)
    start = time.perf_counter()
    for name, report in reports.items():
        cache[name] = report
    stored = time.perf_counter() - start
    start = time.perf_counter()
    found = {}
    for name in names:
        report = cache.get(name)
        if report is not None:
            found[name] = report
    return stored, time.perf_counter() - start


def main() -> None:
    reports = {f"h{i}": HostReport(f"h{i}", TrustLevel.TRUSTED, "oat", "r")
               for i in range(N)}
    names = list(reports)
    runs = {"ReportCache": [], "TTLCache": []}
    for _ in range(ROUNDS):
        runs["ReportCache"].append(_ours(reports, names))
        runs["TTLCache"].append(_ttlcache(reports, names))
    medians = {k: (statistics.median(r[0] for r in v) * 1e6 / N,
                   statistics.median(r[1] for r in v) * 1e6 / N)
               for k, v in runs.items()}
    for name, (store, lookup) in medians.items():
        print(f"{name:12} store {store:.2f} us/host  lookup {lookup:.2f} "
              "us/host")
    ours, theirs = medians["ReportCache"], medians["TTLCache"]
    print(f"TTLCache / ReportCache: store {theirs[0] / ours[0]:.1f}x, "
          f"lookup {theirs[1] / ours[1]:.1f}x")


if __name__ == "__main__":
    main()
