# SPDX-License-Identifier: Apache-2.0
"""The report as one self-contained HTML page.

No network is needed to view it: the style is inline and the chart is SVG
drawn here, in Python. Every string that came from a log (host names,
reasons, flavors, ids, file names) is escaped, and the page's
Content-Security-Policy allows no script, image or connection at all, so
even a mistake in escaping could not make the page run or fetch anything.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from trustpool import events
from trustpool.report.aggregate import Aggregator, Record
from trustpool.report.reader import ReadStats

__all__ = ["render"]

_COLOURS = {"trusted": "#2e7d32", "unknown": "#9e9e9e",
            "untrusted": "#c62828", "refusals": "#ef6c00",
            "trust_lost": "#6a1b9a"}
_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;
margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.8em}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;
vertical-align:top}th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.summary th{width:22em}.meta{color:#555}
.left-out{color:#8a4b00;font-style:italic}
.level-trusted{color:#2e7d32}.level-untrusted{color:#c62828;
font-weight:bold}.level-unknown{color:#666}
.ok{color:#2e7d32}.warn{color:#c62828;font-weight:bold}
code,.id{font-family:ui-monospace,monospace;font-size:12px;
word-break:break-all}svg text{font:11px sans-serif;fill:#333}
.legend span{display:inline-block;margin-right:1.2em}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;
vertical-align:-.1em}
@media print{body{max-width:none}section{break-inside:avoid-page}}
"""
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; "
        "img-src 'none'; form-action 'none'; base-uri 'none'")


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True) if isinstance(
            value, (dict, list)) else str(value)
    return html.escape(value, quote=True)


def _short_time(text: str | None) -> str:
    if not text:
        return "-"
    try:
        when = datetime.datetime.fromtimestamp(
            events.parse_time(text), datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return text
    return when.strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if abs(seconds) < 120:
        return f"{seconds:.0f}s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _level(level: str | None) -> str:
    name = level if level in ("trusted", "untrusted", "unknown") else \
        "unknown"
    return f'<span class="level-{name}">{_e(level or "-")}</span>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]],
           css: str) -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f'<table class="{css}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _left_out(count: int, what: str) -> str:
    if count <= 0:
        return ""
    return (f'<p class="left-out" data-left-out="{count}">{count:,} more '
            f"{_e(what)} not shown here; the CSV and JSON formats list "
            "them all.</p>")


def _num(key: str, value: int, *, bad: bool = False) -> str:
    css = "n warn" if bad and value else "n"
    return f'<td class="{css}" data-key="{_e(key)}">{value:,}</td>'


def _summary(agg: Aggregator, stats: ReadStats) -> str:
    s = agg.summary()
    last = s["hosts_by_last_level"]
    rows = [
        ("Placements (trusted scheduling requests admitted)",
         _num("placements", s["placements"])),
        ("Refusals (requests no host was admitted for)",
         _num("refusals", s["refusals"])),
        ("&nbsp;&nbsp;of them with an invalid trust:trusted_host value",
         _num("invalid_requests", s["invalid_requests"], bad=True)),
        ("Candidate hosts rejected", _num("candidate_hosts_rejected",
                                          s["candidate_hosts_rejected"])),
        ("Flavors", _num("flavors", s["flavors"])),
        ("Hosts seen", _num("hosts_seen", s["hosts_seen"])),
        ("Hosts that admitted a placement",
         _num("hosts_admitting", s["hosts_admitting"])),
        ("Hosts by last level seen: trusted",
         _num("hosts_trusted", last["trusted"])),
        ("Hosts by last level seen: unknown",
         _num("hosts_unknown", last["unknown"])),
        ("Hosts by last level seen: untrusted",
         _num("hosts_untrusted", last["untrusted"], bad=True)),
        ("Drift: hosts seen untrusted after trusted",
         _num("drift_untrusted", s["drift"]["untrusted"], bad=True)),
        ("Drift: hosts seen unknown after trusted",
         _num("drift_unknown", s["drift"]["unknown"])),
        ("Trust-loss events", _num("trust_lost", s["trust_lost"], bad=True)),
        ("Instances on hosts when they lost trust",
         _num("instances_on_lost_hosts", s["instances_on_lost_hosts"],
              bad=True)),
        ("Quarantine: services disabled",
         _num("quarantine_disable", s["quarantine"]["disable"])),
        ("Quarantine: services re-enabled",
         _num("quarantine_enable", s["quarantine"]["enable"])),
        ("Quarantine: actions skipped or failed",
         _num("quarantine_not_done", s["quarantine"]["skipped"]
              + s["quarantine"]["failed"])),
        ("Events in the window", _num("events", stats.events)),
        ("Events outside the window (skipped)",
         _num("outside_window", stats.outside_window)),
        ("Events of unknown types (skipped)",
         _num("unknown_events", stats.unknown_total)),
        ("Malformed lines (skipped)",
         _num("malformed_lines", stats.malformed_total, bad=True)),
        ("Lines read", _num("lines", stats.lines)),
    ]
    if s["untracked_host_observations"]:
        rows.append(("Observations of hosts beyond the tracking cap",
                     _num("untracked", s["untracked_host_observations"],
                          bad=True)))
    body = "".join(f"<tr><th>{label}</th>{cell}</tr>"
                   for label, cell in rows)
    return (f'<section id="summary"><h2>Summary</h2>'
            f'<table class="summary">{body}</table></section>')


# -- the chart ------------------------------------------------------------

_W, _LEFT, _RIGHT = 1100, 60, 20
_TOP_H, _BOTTOM_H, _GAP = 220, 110, 50


def _ticks(high: int) -> list[int]:
    if high <= 0:
        return [0]
    step = 1
    while high / step > 5:
        for mult in (2, 5, 10):
            if high / (step * mult) <= 5:
                step *= mult
                break
        else:
            step *= 10
    return list(range(0, high + 1, step))


def _chart(timeline: list[Record]) -> str:
    if not timeline:
        return '<p>No events to chart.</p>'
    count = len(timeline)
    plot_w = _W - _LEFT - _RIGHT
    bar_w = plot_w / count
    top_max = max(max(b["trusted"] + b["unknown"] + b["untrusted"]
                      for b in timeline), 1)
    bottom_max = max(max(b["refusals"] for b in timeline), 1)
    top_y0 = 20 + _TOP_H
    bottom_top = top_y0 + _GAP
    bottom_y0 = bottom_top + _BOTTOM_H
    height = bottom_y0 + 40
    out = [f'<svg id="timeline-chart" xmlns="http://www.w3.org/2000/svg" '
           f'width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" '
           f'role="img" aria-label="Hosts by level and refusals over time" '
           f'data-buckets="{count}" data-bucket-seconds='
           f'"{timeline[0]["seconds"]}">']
    for y0, box_h, peak, label in (
            (top_y0, _TOP_H, top_max, "hosts"),
            (bottom_y0, _BOTTOM_H, bottom_max, "refusals")):
        for tick in _ticks(peak):
            y = y0 - tick / peak * box_h
            out.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" '
                       f'y2="{y:.1f}" stroke="#eee"/>'
                       f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" '
                       f'text-anchor="end">{tick:,}</text>')
        out.append(f'<text x="{_LEFT}" y="{y0 - box_h - 6:.1f}">'
                   f'{_e(label)}</text>')
    for i, bucket in enumerate(timeline):
        x = _LEFT + i * bar_w
        width = max(bar_w - 1, 0.5)
        when = _short_time(bucket["start"])
        y = float(top_y0)
        for level in ("trusted", "unknown", "untrusted"):
            value = bucket[level]
            if not value:
                continue
            h = value / top_max * _TOP_H
            y -= h
            out.append(
                f'<rect class="bar {level}" data-bucket="{i}" '
                f'data-value="{value}" x="{x:.2f}" y="{y:.2f}" '
                f'width="{width:.2f}" height="{h:.2f}" '
                f'fill="{_COLOURS[level]}"><title>{_e(when)}: {value:,} '
                f'host(s) {level}</title></rect>')
        if bucket["trust_lost"]:
            cx = x + bar_w / 2
            out.append(
                f'<path class="marker trust_lost" data-bucket="{i}" '
                f'data-value="{bucket["trust_lost"]}" d="M{cx - 5:.1f} 8 '
                f'L{cx + 5:.1f} 8 L{cx:.1f} 18 Z" '
                f'fill="{_COLOURS["trust_lost"]}"><title>{_e(when)}: '
                f'{bucket["trust_lost"]:,} trust-loss event(s)</title>'
                f'</path>')
        value = bucket["refusals"]
        if value:
            h = value / bottom_max * _BOTTOM_H
            out.append(
                f'<rect class="bar refusals" data-bucket="{i}" '
                f'data-value="{value}" x="{x:.2f}" y="{bottom_y0 - h:.2f}" '
                f'width="{width:.2f}" height="{h:.2f}" '
                f'fill="{_COLOURS["refusals"]}"><title>{_e(when)}: '
                f'{value:,} refusal(s)</title></rect>')
    for y0 in (top_y0, bottom_y0):
        out.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y0}" '
                   f'y2="{y0}" stroke="#333"/>')
    labels = min(count, 6)
    for j in range(labels):
        i = round(j * (count - 1) / max(labels - 1, 1))
        x = _LEFT + i * bar_w
        anchor = "start" if j == 0 else "end" if j == labels - 1 else \
            "middle"
        if anchor == "end":
            x += bar_w
        out.append(f'<text x="{x:.1f}" y="{bottom_y0 + 16}" '
                   f'text-anchor="{anchor}">'
                   f'{_e(_short_time(timeline[i]["start"]))}</text>')
    out.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{_COLOURS[k]}"></i>{_e(label)}</span>'
        for k, label in (("trusted", "trusted"), ("unknown", "unknown"),
                         ("untrusted", "untrusted"),
                         ("trust_lost", "trust-loss event"),
                         ("refusals", "refusals")))
    return "".join(out) + f'<p class="legend">{legend}</p>'


def _timeline(agg: Aggregator) -> str:
    timeline = agg.timeline()
    width = timeline[0]["seconds"] if timeline else agg.width
    return (f'<section id="timeline"><h2>Timeline</h2><p class="meta">'
            f"Hosts by the worst level each was seen at in each bucket of "
            f"{_e(_age(width) if width < 7200 else f'{width / 3600:g}h')}"
            f" (top), refusals per bucket (bottom).</p>"
            f"{_chart(timeline)}</section>")


# -- sections -------------------------------------------------------------

def _admitted(row: Record) -> str:
    if row["host"] is not None:
        return _e(row["host"])
    names = ", ".join(_e(v["host"]) for v in row["admitted"])
    more = row["admitted_hosts"] - len(row["admitted"])
    return (f"one of {row['admitted_hosts']:,}: {names}"
            + (f" and {more:,} more" if more > 0 else ""))


def _flavor(stats: Any, max_rows: int) -> str:
    wanted = ", ".join(f"{_e(w)}" for w in sorted(stats.wanted))
    out = [f'<section class="flavor" data-flavor="{_e(stats.name)}">'
           f"<h2>Flavor <code>{_e(stats.name)}</code> "
           f"(trust:trusted_host = {wanted})</h2>"
           f'<p><span data-key="placements">{stats.placements:,}</span> '
           f'placement(s), <span data-key="refusals">{stats.refusals:,}'
           f"</span> refusal(s).</p>"]
    if stats.placement_rows:
        out.append("<h3>Placements</h3>")
        out.append(_table(
            ("time", "instance", "host", "level", "server time", "age",
             "backend", "request"),
            ((_e(_short_time(r["time"])),
              f'<span class="id">{_e(r["instance"])}</span>',
              _admitted(r), _level(r["level"]),
              _e(_short_time(r["server_time"])), _e(_age(r["age_seconds"])),
              _e(r["backend"]), f'<span class="id">{_e(r["request_id"])}'
              "</span>") for r in stats.placement_rows), "placements"))
        out.append(_left_out(stats.placements - len(stats.placement_rows),
                             "placements of this flavor"))
    if stats.refusal_rows:
        out.append("<h3>Refusals</h3>")
        out.append(_table(
            ("time", "instance", "candidates", "reasons", "request"),
            ((_e(_short_time(r["time"])),
              f'<span class="id">{_e(r["instance"])}</span>',
              f"{r['candidates']:,}", _e(r["reason"]),
              f'<span class="id">{_e(r["request_id"])}</span>')
             for r in stats.refusal_rows), "refusals"))
        out.append(_left_out(stats.refusals - len(stats.refusal_rows),
                             "refusals of this flavor"))
    if stats.reasons:
        out.append("<h3>Why hosts were rejected in refusals</h3>")
        out.append(_table(("hosts", "reason"), (
            (f"{n:,}", _e(r)) for r, n in stats.reasons.most_common(
                max_rows)), "reasons"))
    out.append("</section>")
    return "".join(out)


def _instances(items: list[Record], cap: int = 50) -> str:
    if not items:
        return "none listed"
    shown = ", ".join(
        f'<span class="id">{_e(i["instance"])}</span>'
        + (f" ({_e(i['name'])})" if i.get("name") else "")
        for i in items[:cap])
    if len(items) > cap:
        shown += f" and {len(items) - cap:,} more"
    return f"{len(items):,}: {shown}"


def _context(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(
        value, sort_keys=True)
    if len(text) > 300:
        text = text[:300] + "..."
    return f"<code>{_e(text)}</code>" if value is not None else ""


def _trust_lost(agg: Aggregator) -> str:
    kept = agg.trust_lost
    out = ['<section id="trust-lost"><h2>Trust losses</h2>']
    if not kept.rows:
        out.append("<p>No trust-loss events in the window.</p>")
    else:
        out.append(_table(
            ("time", "host", "agent", "event", "verifier time", "severity",
             "context", "trait removed", "instances on the host"),
            ((_e(_short_time(r["time"])), _e(r["host"]),
              f'<span class="id">{_e(r["agent_id"])}</span>',
              f'<span class="id">{_e(r["event_id"])}</span>',
              _e(r["event_time"]), _e(r["severity"]), _context(r["context"]),
              _e({True: "yes", False: "no", None: "-"}[r["trait_removed"]]),
              _instances(r["instances"])) for r in kept.rows), "trust-lost"))
        out.append(_left_out(kept.left_out, "trust-loss events"))
    out.append("</section>")
    return "".join(out)


def _drift(agg: Aggregator) -> str:
    kept = agg.drift
    out = ['<section id="drift"><h2>Drift seen in decisions</h2>'
           '<p class="meta">A host that a decision saw trusted and a later '
           "one saw untrusted or unknown. The instances running there are "
           "in its trust-loss event, or ask <code>trustpool audit</code>.</p>"]
    if not kept.rows:
        out.append("<p>No host was seen losing trust.</p>")
    else:
        out.append(_table(
            ("seen at", "host", "level", "last seen trusted", "reason"),
            ((_e(_short_time(r["time"])), _e(r["host"]), _level(r["level"]),
              _e(_short_time(r["last_trusted"])), _e(r["reason"]))
             for r in kept.rows), "drift"))
        out.append(_left_out(kept.left_out, "drift observations"))
    out.append("</section>")
    return "".join(out)


def _quarantine(agg: Aggregator) -> str:
    kept = agg.quarantine
    if not kept.rows:
        return ('<section id="quarantine"><h2>Quarantine</h2>'
                "<p>No quarantine actions in the window.</p></section>")
    return ('<section id="quarantine"><h2>Quarantine</h2>' + _table(
        ("time", "host", "action", "trigger", "reason", "event",
         "instances"),
        ((_e(_short_time(r["time"])), _e(r["host"]),
          _e(r["action"] if r.get("outcome", "done") == "done"
             else f'{r["action"]} ({r["outcome"]})'),
          _e(r["trigger"]), _e(r["reason"]),
          f'<span class="id">{_e(r["event_id"])}</span>',
          _instances(r["instances"])) for r in kept.rows), "quarantine")
        + _left_out(kept.left_out, "quarantine actions") + "</section>")


def _input(stats: ReadStats, sources: Sequence[str]) -> str:
    out = ['<section id="input"><h2>Input</h2>',
           "<p>Read, oldest first: "
           + ", ".join(f"<code>{_e(s)}</code>" for s in sources) + "</p>"]
    if stats.malformed:
        out.append(f"<h3>Malformed lines ({stats.malformed_total:,}, "
                   "skipped)</h3>")
        out.append(_table(("lines", "why"), (
            (f"{n:,}", _e(r)) for r, n in stats.malformed.most_common()),
            "malformed"))
        out.append(_table(("file", "line", "why"), (
            (f"<code>{_e(f)}</code>", f"{n:,}", _e(r))
            for f, n, r in stats.examples), "malformed-examples"))
    else:
        out.append("<p>No malformed lines.</p>")
    if stats.unknown:
        out.append("<h3>Events of types this version does not know "
                   "(skipped)</h3>")
        out.append(_table(("events", "type"), (
            (f"{n:,}", f"<code>{_e(t)}</code>")
            for t, n in stats.unknown.most_common()), "unknown-types"))
    out.append("</section>")
    return "".join(out)


def render(agg: Aggregator, stats: ReadStats, sources: Sequence[str],
           *, generated: float) -> str:
    """The whole page."""
    since = events.format_time(agg.since) if agg.since is not None \
        else "the first event"
    until = events.format_time(agg.until) if agg.until is not None \
        else "the last event"
    s = agg.summary()
    title = "trustpool compliance report"
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width">'
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>")
    if agg.since is not None:
        since = _short_time(since)
    if agg.until is not None:
        until = _short_time(until)
    intro = (f"<h1>{_e(title)}</h1><p class=\"meta\">Window: from "
             f"{_e(since)} to {_e(until)}"
             f" (events from {_e(_short_time(s['first_event']))} to "
             f"{_e(_short_time(s['last_event']))}). Generated "
             f"{_e(_short_time(events.format_time(generated)))} by "
             "<code>trustpool report</code> from the "
             "<code>trustpool.audit</code> log.</p>")
    flavors = "".join(_flavor(f, agg.max_rows) for f in sorted(
        agg.flavors.values(), key=lambda f: f.name))
    if not flavors:
        flavors = "<p>No placement decisions in the window.</p>"
    return "".join((head, intro, _summary(agg, stats), _timeline(agg),
                    '<div id="flavors">', flavors, "</div>",
                    _trust_lost(agg), _drift(agg), _quarantine(agg),
                    _input(stats, sources), "</body></html>\n"))
