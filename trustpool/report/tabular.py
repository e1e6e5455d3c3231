# SPDX-License-Identifier: Apache-2.0
"""The report as CSV and JSON, written row by row as the log is read.

Both list every row (the page keeps a capped number). CSV is one table
with a ``record`` column (placement, refusal, drift, trust_lost,
quarantine); JSON is one object whose ``records`` come first and whose
``summary``, ``timeline`` and ``input`` come last, once they are known.
"""

from __future__ import annotations

import csv
import json
from typing import Any, TextIO

from trustpool.report.aggregate import Aggregator, Record
from trustpool.report.reader import ReadStats

__all__ = ["CSV_COLUMNS", "JSON_SCHEMA_VERSION", "CSVWriter", "JSONWriter"]

JSON_SCHEMA_VERSION = 1
CSV_COLUMNS = ("record", "time", "flavor", "wanted", "instance",
               "request_id", "project_id", "host", "level", "server_time",
               "age_seconds", "backend", "admitted_hosts", "candidates",
               "reason", "last_trusted", "agent_id", "event_id",
               "event_time", "severity", "action", "trigger",
               "instances", "outcome")
#: A cell a spreadsheet would run as a formula (the log is input from the
#: network at one remove) gets a leading apostrophe.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


class CSVWriter:
    """One CSV row per record."""

    def __init__(self, out: TextIO) -> None:
        self._csv = csv.writer(out, lineterminator="\n")
        self._csv.writerow(CSV_COLUMNS)

    def record(self, row: Record) -> None:
        flat = dict(row)
        instances = flat.get("instances")
        if isinstance(instances, list):
            flat["instances"] = " ".join(i["instance"] for i in instances)
        self._csv.writerow([_cell(flat.get(c)) for c in CSV_COLUMNS])

    def finish(self, agg: Aggregator, stats: ReadStats) -> None:
        """Nothing to add: the summary is printed, not written, for CSV."""


class JSONWriter:
    """``{"schema_version", "window", "sources", "records": [...],
    "summary", "flavors", "timeline", "input"}``."""

    def __init__(self, out: TextIO, header: dict[str, Any]) -> None:
        self._out = out
        self._first = True
        body = json.dumps({"schema_version": JSON_SCHEMA_VERSION, **header})
        out.write(body[:-1] + ', "records": [')

    def record(self, row: Record) -> None:
        self._out.write("\n" if self._first else ",\n")
        self._first = False
        self._out.write(json.dumps(row))

    def finish(self, agg: Aggregator, stats: ReadStats) -> None:
        tail = {
            "summary": {**agg.summary(), **input_summary(stats)},
            "flavors": {
                f.name: {"wanted": dict(f.wanted), "placements": f.placements,
                         "refusals": f.refusals, "invalid": f.invalid,
                         "refusal_reasons": dict(f.reasons.most_common())}
                for f in agg.flavors.values()},
            "timeline": agg.timeline(),
            "input": {"malformed_by_reason": dict(stats.malformed),
                      "malformed_examples": [
                          {"file": f, "line": n, "reason": r}
                          for f, n, r in stats.examples],
                      "unknown_by_type": dict(stats.unknown)},
        }
        self._out.write("\n], " + json.dumps(tail)[1:] + "\n")


def input_summary(stats: ReadStats) -> dict[str, int]:
    """The reader's counts, as the summary shows them."""
    return {"lines": stats.lines, "events": stats.events,
            "malformed_lines": stats.malformed_total,
            "unknown_events": stats.unknown_total,
            "outside_window": stats.outside_window}
