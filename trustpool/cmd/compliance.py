# SPDX-License-Identifier: Apache-2.0
"""``trustpool report`` and ``trustpool explain``: the compliance commands,
the audit log read back.

``report`` turns the ``trustpool.audit`` log of a time window into a
compliance report (a self-contained HTML page, CSV or JSON); ``explain``
tells the story of one instance: the decision that placed it, its host's
level then and now. Exit codes follow the other commands: 0 all good, 1 a
host lost trust (``report``: the window has trust-loss events or drift to
untrusted; ``explain``: the instance's host is not at the level its
flavor asked for now, or lost it since), 2 the command could not do its
job (unreadable or corrupt log, no events in the window, instance not in
the logs, services unreachable). Nothing is written on exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import events
from trustpool.attestation import AttestationError, ConfigurationError
from trustpool.openstack import compute
from trustpool.report import page, provenance, reader
from trustpool.report.aggregate import Aggregator
from trustpool.report.tabular import CSVWriter, JSONWriter, input_summary

__all__ = ["COMMANDS", "add_parsers", "run"]

OK, NOT_TRUSTED, FAILED = 0, 1, 2
COMMANDS = ("report", "explain")

_REPORT_HELP = """Exit codes: 0 report written; 1 report written, and hosts
lost trust in the window (trust-loss events, or a decision saw a host
untrusted after trusted); 2 nothing written: a log cannot be read or a
compressed one is corrupt, a time is not ISO 8601, or there are no events
in the window. Malformed lines are counted and reported, never fatal."""
_EXPLAIN_HELP = """Exit codes: 0 the decision that placed the instance
admitted its host at the level its flavor asked for, and the host is at
that level now; 1 it is not now (drift), lost it since the placement
according to the logs, or no logged decision admitted the host it runs
on; 2 the instance is not in the logs, a log cannot be read, or Nova or
the attestation service cannot be asked."""


def add_parsers(subparsers: Any) -> None:
    """Add ``report`` and ``explain`` to the ``trustpool`` command."""
    summary = ("Write a compliance report from the trustpool.audit log: "
               "every trusted placement, refusal and trust loss in a time "
               "window, as a self-contained HTML page, CSV or JSON.")
    report = subparsers.add_parser(
        "report", help=summary, description=f"{summary} {_REPORT_HELP}")
    report.add_argument(
        "logs", nargs="+", metavar="FILE",
        help="audit log files (JSON lines; rotated .gz files are read as "
        "they are; '-' is standard input); read oldest first, by the time "
        "of their first event")
    report.add_argument("--since", metavar="TIME",
                        help="ISO 8601 start of the window (inclusive; no "
                        "offset means UTC), e.g. 2026-10-01")
    report.add_argument("--until", metavar="TIME",
                        help="ISO 8601 end of the window (exclusive)")
    report.add_argument("--format", choices=("html", "csv", "json"),
                        default="html")
    report.add_argument("--output", "-o", metavar="PATH", default="-",
                        help="where to write the report (default: standard "
                        "output); written whole or not at all")
    report.add_argument("--max-rows", type=int, default=500, metavar="N",
                        help="rows listed per section of the HTML page "
                        "(the rest are counted; CSV and JSON list all)")
    summary = ("Show the decision that placed an instance, its host's "
               "trust level then and now, and whether it has drifted.")
    explain = subparsers.add_parser(
        "explain", help=summary, description=f"{summary} {_EXPLAIN_HELP}")
    explain.add_argument("instance", metavar="INSTANCE_UUID")
    # "--log" is taken: oslo.log's options (--log-file, ...) own the prefix
    explain.add_argument("--audit-log", "-l", nargs="+", required=True,
                         metavar="FILE",
                         dest="logs", help="audit log files, as for report")
    explain.add_argument("--no-nova", action="store_true",
                         help="do not ask Nova where the instance runs now "
                         "(also when [trustpool_nova] has no credentials)")
    explain.add_argument("--format", choices=("table", "json"),
                         default="table")


def run(conf: cfg.ConfigOpts, compute_api: Any = None) -> int:
    """Run ``report`` or ``explain`` as parsed into ``conf.command``."""
    args = conf.command
    try:
        if args.name == "report":
            return _report(args)
        return _explain(conf, args, compute_api)
    except reader.LogReadError as exc:
        return _fail(str(exc))


def _fail(message: str) -> int:
    print(f"trustpool: {message}", file=sys.stderr)
    return FAILED


def _window(args: Any) -> tuple[float | None, float | None] | str:
    bounds: list[float | None] = []
    for option in ("since", "until"):
        text = getattr(args, option)
        if text is None:
            bounds.append(None)
            continue
        try:
            bounds.append(events.parse_time(text))
        except (ValueError, OverflowError):
            return f"--{option}: not an ISO 8601 time: {text!r}"
    since, until = bounds
    if since is not None and until is not None and since >= until:
        return "--since must be before --until"
    return since, until


# -- report -----------------------------------------------------------------

@contextlib.contextmanager
def _output(path: str) -> Iterator[TextIO]:
    """A file that becomes ``path`` (or goes to standard output) only if
    the block finishes: a failed report leaves nothing half written."""
    directory = "." if path == "-" else os.path.dirname(
        os.path.abspath(path))
    try:
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="", dir=directory,
            prefix=".trustpool-report-", delete=False)
    except OSError as exc:
        raise reader.LogReadError(
            f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with handle:
            yield handle  # type: ignore[misc]
        if path == "-":
            with open(handle.name, encoding="utf-8") as written:
                shutil.copyfileobj(written, sys.stdout)
            sys.stdout.flush()
        else:
            umask = os.umask(0o077)  # read it back: there is no getter
            os.umask(umask)
            os.chmod(handle.name, 0o666 & ~umask)
            os.replace(handle.name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)


class _NoEvents(Exception):
    pass


def _report(args: Any) -> int:
    window = _window(args)
    if isinstance(window, str):
        return _fail(window)
    since, until = window
    if args.max_rows < 0:
        return _fail("--max-rows must not be negative")
    sources = reader.open_sources(args.logs)
    names = [s.name for s in sources]
    stats = reader.ReadStats()
    try:
        with _output(args.output) as out:
            writer: CSVWriter | JSONWriter | None = None
            if args.format == "csv":
                writer = CSVWriter(out)
            elif args.format == "json":
                writer = JSONWriter(out, {
                    "window": {"since": _iso(since), "until": _iso(until)},
                    "sources": names})
            agg = Aggregator(since=since, until=until,
                             max_rows=args.max_rows,
                             sink=writer.record if writer else None)
            for event, _name, _line in reader.read_events(
                    sources, stats, since=since, until=until):
                agg.add(event)
            if not stats.events:
                raise _NoEvents
            if writer is not None:
                writer.finish(agg, stats)
            else:
                out.write(page.render(agg, stats, names,
                                      generated=time.time()))
    except _NoEvents:
        return _fail(_why_empty(stats, names, since, until))
    summary = _text_summary(agg, stats, args)
    print(summary, file=sys.stderr if args.output == "-" else sys.stdout)
    lost = agg.trust_lost_count + agg.drift_count["untrusted"]
    return NOT_TRUSTED if lost else OK


def _iso(when: float | None) -> str | None:
    return None if when is None else events.format_time(when)


def _why_empty(stats: reader.ReadStats, names: list[str],
               since: float | None, until: float | None) -> str:
    where = ", ".join(names)
    skipped = (f"{stats.lines:,} line(s): {stats.malformed_total:,} "
               f"malformed, {stats.unknown_total:,} of unknown event types")
    if stats.outside_window:
        return (f"no events in the window {_iso(since) or '-'} to "
                f"{_iso(until) or '-'} in {where}: its "
                f"{stats.outside_window:,} event(s) run from "
                f"{_iso(stats.first)} to {_iso(stats.last)} ({skipped}); "
                "nothing written")
    return f"no events in {where} ({skipped}); nothing written"


def _text_summary(agg: Aggregator, stats: reader.ReadStats,
                  args: Any) -> str:
    s = {**agg.summary(), **input_summary(stats)}
    span = f"{_iso(agg.since) or s['first_event']} .. " \
           f"{_iso(agg.until) or s['last_event']}"
    where = "standard output" if args.output == "-" else args.output
    lines = [
        ("window", span),
        ("placements", f"{s['placements']:,} ({s['flavors']:,} flavor(s), "
                       f"{s['hosts_admitting']:,} host(s) admitting, "
                       f"{s['hosts_seen']:,} seen)"),
        ("refusals", f"{s['refusals']:,} ({s['invalid_requests']:,} with an "
                     "invalid trust:trusted_host value)"),
        ("drift", f"{s['drift']['untrusted']:,} host(s) seen untrusted "
                  f"after trusted, {s['drift']['unknown']:,} unknown"),
        ("trust losses", f"{s['trust_lost']:,} event(s), "
                         f"{s['instances_on_lost_hosts']:,} instance(s) on "
                         "those hosts"),
        ("quarantine", f"{s['quarantine']['disable']:,} disabled, "
                       f"{s['quarantine']['enable']:,} re-enabled, "
                       f"{s['quarantine']['skipped']:,} skipped, "
                       f"{s['quarantine']['failed']:,} failed"),
        ("skipped", f"{s['malformed_lines']:,} malformed line(s), "
                    f"{s['unknown_events']:,} event(s) of unknown types, "
                    f"{s['outside_window']:,} outside the window"),
        ("written", f"{where} ({args.format})"),
    ]
    return "\n".join(f"{k:<13} {v}" for k, v in lines)


# -- explain ----------------------------------------------------------------

def _attestation_name(server: dict[str, Any], attribute: str) -> str | None:
    """The name the filter knew the server's host by (as ``audit``)."""
    host = server.get("OS-EXT-SRV-ATTR:host")
    if attribute == "host":
        return host
    return server.get("OS-EXT-SRV-ATTR:hypervisor_hostname") or host


def _explain(conf: cfg.ConfigOpts, args: Any, api: Any) -> int:
    try:
        instance = str(uuid.UUID(args.instance))
    except ValueError:
        return _fail(f"not an instance UUID: {args.instance!r}")
    sources = reader.open_sources(args.logs)
    names = [s.name for s in sources]
    nova_host, nova_note = None, None
    if args.no_nova:
        nova_note = "Nova not asked (--no-nova)"
    else:
        try:
            if api is None:
                api = compute.ComputeAPI(compute.adapter_from_conf(conf))
        except ConfigurationError:
            api = None
            nova_note = ("Nova not asked: [trustpool_nova] has no "
                         "credentials")
        if api is not None:
            try:
                server = api.server(instance)
            except compute.NovaAPIError as exc:
                return _fail(str(exc))
            if server is None:
                nova_note = "Nova does not know the instance (deleted?)"
            else:
                nova_host = _attestation_name(
                    server, conf[tp_conf.GROUP].host_attribute)
                nova_note = (f"Nova: runs on {nova_host}" if nova_host else
                             "Nova: the instance has no host now")
    stats = reader.ReadStats()
    trail = provenance.trace(
        (e for e, _n, _l in reader.read_events(sources, stats)),
        instance, nova_host)
    if not trail.decisions_total:
        return _fail(f"instance {instance} is not in the logs "
                     f"({stats.events:,} event(s) in {', '.join(names)}, "
                     f"{stats.malformed_total:,} malformed line(s))")
    now: dict[str, Any] = {}
    now_error = None
    if trail.hosts:
        try:
            client = tp_conf.make_client(conf)
        except ConfigurationError as exc:
            now_error = str(exc)
        else:
            try:
                now = client.attest_uncached(sorted(trail.hosts))
            except AttestationError as exc:
                now_error = str(exc)
            finally:
                client.close()
    result = _story(trail, nova_host, nova_note, now, now_error)
    if now_error is not None:
        result["drifted"] = None  # not known: the level now is unknown
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        _print_story(result)
    if now_error is not None:
        return _fail(f"cannot ask the attestation service: {now_error}")
    return NOT_TRUSTED if result["drifted"] else OK


def _verdict(v: events.Verdict) -> dict[str, Any]:
    return {"level": v.level, "server_time": v.server_time,
            "age_seconds": v.age_seconds, "backend": v.backend,
            "reason": v.reason}


def _story(trail: provenance.Provenance, nova_host: str | None,
           nova_note: str | None, now: dict[str, Any],
           now_error: str | None) -> dict[str, Any]:
    placed = trail.placed
    result: dict[str, Any] = {
        "schema_version": 1, "instance": trail.instance,
        "decisions": trail.decisions_total, "nova": {
            "host": nova_host, "note": nova_note},
        "placed": None, "hosts": [], "drifted": True, "problems": []}
    if placed is None:
        latest = trail.latest_admitted
        if latest is not None and nova_host is not None:
            result["problems"].append(
                f"it runs on {nova_host}, which no logged decision admitted "
                "it to (the latest admitted it to "
                + ", ".join(latest.passed) + ")")
        else:
            result["problems"].append(
                f"no logged decision admitted it ({trail.decisions_total} "
                "decision(s), none with a host that passed)")
        return result
    result["placed"] = {
        "time": events.format_time(placed.time), "flavor": placed.flavor,
        "wanted": placed.wanted, "request_id": placed.request_id,
        "project_id": placed.project_id,
        "attestation_server": placed.server,
        "admitted": list(placed.passed)}
    drifted = False
    for name, history in sorted(trail.hosts.items()):
        report = now.get(name)
        entry: dict[str, Any] = {
            "host": name, "then": _verdict(history.then),
            "now": None if report is None else {
                "level": report.level.value, "reason": report.reason,
                "server_time": report.vtime.isoformat()
                if report.vtime else None,
                "backend": report.backend},
            "since_placement": {
                "first_not_trusted": None if history.first_not_trusted is
                None else {"time": events.format_time(
                    history.first_not_trusted[0]),
                    "level": history.first_not_trusted[1],
                    "reason": history.first_not_trusted[2]},
                "trust_lost": [{"time": events.format_time(t.time),
                                "event_id": t.event_id,
                                "severity": t.severity}
                               for t in history.trust_lost]}}
        if report is None or report.level.value != placed.wanted or \
                history.trust_lost or history.first_not_trusted:
            drifted = True
        result["hosts"].append(entry)
    if trail.listed_in:
        drifted = True
        result["problems"].append(
            "listed among the instances of "
            f"{len(trail.listed_in)} trust-loss event(s) since placement")
    if nova_host is None and len(trail.hosts) > 1:
        result["problems"].append(
            "Nova not asked: the instance runs on one of the "
            f"{len(trail.hosts)} hosts its decision admitted")
    result["drifted"] = drifted
    return result


def _print_story(result: dict[str, Any]) -> None:
    out = print
    out(f"instance {result['instance']}: "
        f"{result['decisions']} decision(s) in the logs")
    if result["nova"]["note"]:
        out(f"  {result['nova']['note']}")
    placed = result["placed"]
    if placed is not None:
        out(f"placed {placed['time']} by request {placed['request_id']}: "
            f"flavor {placed['flavor']} wants {placed['wanted']}; "
            f"admitted {len(placed['admitted'])} host(s) "
            f"({placed['attestation_server']})")
    for host in result["hosts"]:
        then = host["then"]
        out(f"host {host['host']}")
        out(f"  then: {then['level']}, server time "
            f"{then['server_time'] or '-'}, age "
            f"{'-' if then['age_seconds'] is None else then['age_seconds']}"
            f"s, backend {then['backend']}: {then['reason']}")
        now = host["now"]
        out(f"  now:  {now['level']}: {now['reason']}" if now else
            "  now:  not asked (see the error below)")
        since = host["since_placement"]
        if since["first_not_trusted"]:
            seen = since["first_not_trusted"]
            out(f"  since placement: seen {seen['level']} at {seen['time']}"
                f": {seen['reason']}")
        for lost in since["trust_lost"]:
            out(f"  since placement: trust lost at {lost['time']} (event "
                f"{lost['event_id']}, severity {lost['severity']})")
    for problem in result["problems"]:
        out(f"note: {problem}")
    if result["drifted"] is None:
        out("UNKNOWN: the host's level now could not be asked")
    elif result["drifted"]:
        out("DRIFTED: not provably at the level its flavor asked for")
    else:
        out("OK: placed on an attested host that is still at that level")
