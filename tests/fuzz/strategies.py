"""Hypothesis strategies for raw attestation answers, with their oracle.

:func:`examples` draws one whole exchange for a backend: the scripts a
:class:`~tests.fuzz.raw_server.RawServer` plays (status line, header set,
framing, body, pacing, ending, for every request the backend makes) and,
as data, the ORACLE: the host names the answer proves ``trusted``.

A host is proven only by a well-formed, complete, on-time, fresh
``trusted`` answer naming exactly that host. The oracle is deliberately
conservative: anything odd (a status line, a framing or a JSON text that
an RFC calls invalid, an odd spelling, a wrong type, a duplicate, a time
that cannot be read, any doubt) makes it say "not proven", and says why
(:attr:`Example.why`). It is an upper bound: a product that trusts fewer
hosts is never wrong by it (fail-closed), one that trusts more is.

Generation stays out of the zones where the truth depends on timing or on
the stack depth: an answer is either clearly on time (its pauses add up to
at most :data:`ON_TIME` seconds) or clearly late (at least :data:`LATE`
seconds, past the deadline), a time is either clearly fresh (within a fifth
of the allowed age) or clearly not (three times past it), JSON is either
shallow (at most 40 levels) or deep (at least 5,000).

Timing: every exchange runs with ``connect_timeout`` :data:`CONNECT` and
``read_timeout`` :data:`READ`; the deadline of one exchange (all requests
of a backend's fan-out included) is their sum, :data:`DEADLINE`. A script's
pauses add up to at most :data:`MAX_PACE` (deadline + 1 s), so one example
stays short even when the product does not cut a dripping peer.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import functools
import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.raw_server import Script

CONNECT = 0.5
READ = 1.0
DEADLINE = CONNECT + READ
#: an exchange whose pauses add up to at most this is on time
ON_TIME = 0.5
#: no single pause of an on-time answer is longer than this
ON_TIME_GAP = 0.2
#: an exchange whose bytes cannot all arrive before this is late
LATE = DEADLINE + 0.4
#: the pauses of one script never add up to more than this
MAX_PACE = DEADLINE + 1.0

#: the allowed age (max_report_age, max_attestation_age) when one is set
MAX_AGE = 600
#: how far a server's time may be ahead of ours (DESIGN: the smaller of
#: 60 s and the age limit); fresh times are at most FRESH_AHEAD ahead
MAX_SKEW = 60
FRESH_AHEAD = 20

HOSTS = ("node-a", "node-b", "node-c")
STRANGERS = ("node-x", "NODE-A", "node-a ", "node-a.", "node-a\u0000",
             "node-\u0430", "uuids")

#: auth blobs, by kind; a blob that cannot be sent as a header (a line
#: break from a continuation line, a character outside Latin-1) must be
#: refused at start-up
BLOBS = {
    "plain": "fuzzBlob-Qm2ZrX9vK4pLw8NzT6yH",
    "latin1": "fuzzBlob-\u00e9t\u00e9-Hs7Jq2Vx9LmC4wPz",
    "multiline": "fuzzBlob-line1-Qm2ZrX9v\nsecond-line-K4pLw8NzTq",
    "nonlatin1": "fuzzBlob-\u2603-Rk8Wd3Nf6Yb1Gz5Tc",
}
SENDABLE_BLOBS = ("plain", "latin1", "none")
#: a Keylime agent's bootstrap key half ("v"), in every generated record
V_HALF = "dkhhbGYtc2VjcmV0LWZ1enotWjRrUVpYN2c="

OAT_ROUTE = r"^POST /OpenAttestationWebServices/V1\.0/PollHosts$"
VERSION_ROUTE = r"^GET /version$"
BULK_ROUTE = r"^GET /v[^/]+/agents/\?bulk=True$"


def agent_route(agent_id: str) -> str:
    return rf"^GET /v[^/]+/agents/{re.escape(agent_id)}$"


# -- JSON text, including what json.dumps cannot write ------------------------

@dataclasses.dataclass(frozen=True)
class Raw:
    """JSON text written as is (may be invalid: that is the point)."""

    data: bytes

    def __repr__(self) -> str:
        if len(self.data) <= 40:
            return f"Raw({self.data!r})"
        return f"Raw({self.data[:20]!r}...<{len(self.data)} bytes>)"


@dataclasses.dataclass(frozen=True)
class Obj:
    """An object whose pairs are written in order, duplicates included."""

    pairs: tuple[tuple[Any, Any], ...]


@dataclasses.dataclass(frozen=True)
class Str:
    """A string with a spelling: ``ascii`` (\\u escapes), ``utf8`` (raw
    UTF-8) or ``escape-all`` (every character as \\uXXXX)."""

    value: str
    style: str = "ascii"


@dataclasses.dataclass(frozen=True)
class Deep:
    """``depth`` nested lists or objects around ``inner``."""

    depth: int
    kind: str
    inner: Any = None


def render(node: Any) -> bytes:
    out: list[bytes] = []
    _render(node, out)
    return b"".join(out)


def _render(node: Any, out: list[bytes]) -> None:
    if isinstance(node, Raw):
        out.append(node.data)
    elif isinstance(node, Str):
        out.append(_string(node.value, node.style))
    elif isinstance(node, str):
        out.append(_string(node, "ascii"))
    elif isinstance(node, Obj):
        out.append(b"{")
        for index, (key, value) in enumerate(node.pairs):
            if index:
                out.append(b",")
            _render(key, out)
            out.append(b":")
            _render(value, out)
        out.append(b"}")
    elif isinstance(node, (list, tuple)):
        out.append(b"[")
        for index, value in enumerate(node):
            if index:
                out.append(b",")
            _render(value, out)
        out.append(b"]")
    elif isinstance(node, Deep):
        if node.kind == "list":
            opening, closing = b"[", b"]"
        else:
            opening, closing = b'{"a":', b"}"
        out.append(opening * node.depth)
        _render(node.inner, out)
        out.append(closing * node.depth)
    elif node is None or isinstance(node, (bool, int, float)):
        out.append(json.dumps(node).encode())
    else:
        raise TypeError(f"cannot render {type(node).__name__}")


def _string(value: str, style: str) -> bytes:
    if style == "escape-all":
        return ('"' + "".join(_escape(c) for c in value) + '"').encode()
    if style == "utf8":
        try:
            return json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escape it
            pass
    return json.dumps(value).encode()


def _escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        high, low = 0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)
        return f"\\u{high:04x}\\u{low:04x}"
    return f"\\u{code:04x}"


def max_depth(node: Any) -> int:
    """Nesting depth of ``node`` (generated trees are shallow, except
    :class:`Deep`)."""
    if isinstance(node, Deep):
        return node.depth + max_depth(node.inner)
    if isinstance(node, Obj):
        return 1 + max((max_depth(v) for _, v in node.pairs), default=0)
    if isinstance(node, (list, tuple)):
        return 1 + max((max_depth(v) for v in node), default=0)
    return 0


# -- the oracle's own readers -------------------------------------------------

#: deeper than this, a JSON text is "doubt" (the reading depends on the
#: stack, and generation never makes a depth between 40 and 5,000)
DEPTH_LIMIT = 1000


class _Duplicate(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


def _constant(name: str) -> Any:
    raise ValueError(name)


def strict_json(raw: bytes, depth: int) -> tuple[Any, str | None]:
    """``(value, None)`` for JSON a trust decision may rest on, else
    ``(None, why)``. RFC 8259: UTF-8 (a byte order mark may be ignored),
    no NaN/Infinity; and no key twice in one object."""
    if depth > DEPTH_LIMIT:
        return None, "json:deep"
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\x00" in raw:  # UTF-16 or UTF-32 (or a raw NUL: not JSON either)
        return None, "json:not-utf8"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "json:not-utf8"
    try:
        return json.loads(text, object_pairs_hook=_unique,
                          parse_constant=_constant), None
    except _Duplicate:
        return None, "json:duplicate-key"
    except RecursionError:
        return None, "json:deep"
    except ValueError:  # incl. ints past the digit limit
        return None, "json:invalid"


_ISO_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?", re.ASCII)
_CTIME_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
    r"Oct|Nov|Dec) ( ?[0-9]{1,2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) "
    r"([0-9]{4})", re.ASCII)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
           "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def ref_vtime(value: Any) -> float | None:
    """The oracle's reading of a vtime: POSIX seconds, or None when it is
    not a time in a form the attestation services send."""
    if not isinstance(value, str):
        return None
    try:
        match = _ISO_RE.fullmatch(value)
        if match:
            y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
            offset = match.group(8)
            minutes = 0
            if offset and offset != "Z":
                digits = offset[1:].replace(":", "")
                oh, om = int(digits[:2]), int(digits[2:])
                if oh > 23 or om > 59:
                    return None
                minutes = (oh * 60 + om) * (-1 if offset[0] == "-" else 1)
            stamp = datetime.datetime(y, mo, d, h, mi, s)  # validates
            return (calendar.timegm(stamp.timetuple()) - minutes * 60)
        match = _CTIME_RE.fullmatch(value)
        if match:
            _, mon, d, h, mi, s, y = match.groups()
            stamp = datetime.datetime(int(y), _MONTHS.index(mon) + 1,
                                      int(d), int(h), int(mi), int(s))
            return calendar.timegm(stamp.timetuple())
    except (ValueError, OverflowError):
        return None
    return None


def freshness(stamp: float | None, now: float, max_age: float) -> str | None:
    """None when ``stamp`` is clearly within ``max_age`` before ``now``, and
    clearly within the allowed clock skew after it."""
    if stamp is None:
        return "unreadable"
    if not math.isfinite(stamp):
        return "unreadable"
    if now - stamp > max_age / 2:
        return "stale"
    if stamp - now > min(MAX_SKEW, max_age) / 2:
        return "future"
    return None


def _ascii_fold(value: str) -> str | None:
    return value.lower() if value.isascii() else None


def oat_level_trusted(value: Any) -> str | None:
    """None for a ``trusted`` trust_lvl; ASCII case and surrounding spaces
    or tabs are tolerated (the product documents case-insensitive levels),
    anything else is not."""
    if not isinstance(value, str):
        return "level:not-a-string"
    folded = _ascii_fold(value.strip(" \t"))
    if folded == "trusted":
        return None
    if value.strip().lower() == "trusted":
        return "level:odd-spelling"
    return "level:not-trusted"


# -- what the answers mean ----------------------------------------------------

def oat_proofs(body: bytes, depth: int, asked: Sequence[str], now: float,
               max_age: float) -> dict[str, str | None]:
    """For each asked name: None if the PollHosts answer proves it trusted,
    else why not."""
    value, why = strict_json(body, depth)
    if why:
        return dict.fromkeys(asked, why)
    if not isinstance(value, dict) or not isinstance(value.get("hosts"),
                                                       list):
        return dict.fromkeys(asked, "pollhosts:shape")
    entries = value["hosts"]
    for entry in entries:
        if not isinstance(entry, dict) or \
                not isinstance(entry.get("host_name"), str) or \
                not isinstance(entry.get("trust_lvl"), str):
            return dict.fromkeys(asked, "pollhosts:bad-entry")
        if entry["host_name"] not in asked:
            return dict.fromkeys(asked, "pollhosts:stranger")
    proofs: dict[str, str | None] = {}
    for name in asked:
        mine = [e for e in entries if e["host_name"] == name]
        if not mine:
            proofs[name] = "pollhosts:not-mentioned"
        elif len(mine) > 1:
            proofs[name] = "pollhosts:duplicate-entry"
        else:
            why = oat_level_trusted(mine[0]["trust_lvl"])
            if why is None and max_age:
                if "vtime" not in mine[0] or mine[0]["vtime"] is None:
                    why = "vtime:absent"
                elif not isinstance(mine[0]["vtime"], str):
                    why = "vtime:not-a-string"
                else:
                    stale = freshness(ref_vtime(mine[0]["vtime"]), now,
                                      max_age)
                    why = stale and f"vtime:{stale}"
            proofs[name] = why
    return proofs


def keylime_record_proof(record: Any, now: float,
                         max_age: float) -> str | None:
    """None if one verifier record proves its agent trusted."""
    if not isinstance(record, dict):
        return "keylime:record-not-object"
    status = record.get("attestation_status")
    state = record.get("operational_state")
    if status is not None:
        if not isinstance(status, str):
            return "keylime:status-type"
        if _ascii_fold(status) != "pass":
            return ("keylime:status-odd-spelling"
                    if status.upper() == "PASS" else "keylime:not-pass")
    elif type(state) is not int:
        return "keylime:no-state"
    elif not 3 <= state <= 6:
        return "keylime:state-not-passing"
    if max_age:
        last = record.get("last_successful_attestation")
        if last is None:
            return "keylime:time-absent"
        if type(last) not in (int, float):
            return "keylime:time-type"
        if last <= 0:
            return "keylime:time-not-positive"
        try:
            stamp = float(last)
        except OverflowError:
            return "keylime:time-huge"
        why = freshness(stamp, now, max_age)
        if why:
            return f"keylime:time-{why}"
    return None


def keylime_version_ok(body: bytes, depth: int) -> str | None:
    value, why = strict_json(body, depth)
    if why:
        return why
    results = value.get("results") if isinstance(value, dict) else None
    versions = results.get("supported_versions") if isinstance(
        results, dict) else None
    if not isinstance(versions, list) or not any(
            isinstance(v, str) and re.fullmatch(r"2\.[0-9]+", v, re.ASCII)
            for v in versions):
        return "keylime:version-answer"
    return None


def keylime_envelope(body: bytes, depth: int) -> tuple[Any, str | None]:
    """The ``results`` of a verifier answer whose envelope says 200."""
    value, why = strict_json(body, depth)
    if why:
        return None, why
    if not isinstance(value, dict) or "results" not in value:
        return None, "keylime:envelope"
    code = value.get("code")
    if type(code) is not int or code != 200:
        return None, "keylime:envelope-code"
    return value["results"], None


def is_legacy_list(results: Any) -> bool:
    return isinstance(results, dict) and set(results) == {"uuids"} and \
        isinstance(results["uuids"], list)


# -- the example --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Leg:
    """One request's answer: the route, the script, and how it went."""

    route: str
    script: Script
    #: None when the transport delivered a complete, well-framed, 2xx
    #: answer (the body the client then reads is :attr:`body`), else why
    transport: str | None
    body: bytes
    depth: int
    #: seconds of pauses before the last byte (None: never complete)
    arrival: float | None
    clean: bool
    label: str


@dataclasses.dataclass(frozen=True)
class Example:
    backend: str
    asked: tuple[str, ...]
    blob_kind: str
    #: option overrides, by (group, option)
    options: tuple[tuple[str, str, Any], ...]
    legs: tuple[Leg, ...]
    #: the ORACLE: hosts the answer proves trusted
    proven: frozenset[str]
    #: for every asked host not proven: why not
    why: tuple[tuple[str, str], ...]
    #: a plain, well-formed, on-time answer: the product must then trust
    #: exactly :attr:`proven` (else the tier would prove nothing)
    clean: bool
    #: seconds of pauses on the exchange's critical path
    critical: float | None

    @property
    def blob(self) -> str | None:
        return BLOBS.get(self.blob_kind)

    @property
    def sendable(self) -> bool:
        return self.blob_kind in SENDABLE_BLOBS

    @property
    def routes(self) -> list[tuple[str, Script]]:
        return [(leg.route, leg.script) for leg in self.legs]

    def reason(self, host: str) -> str:
        return dict(self.why).get(host, "proven")

    def option(self, group: str, name: str, default: Any = None) -> Any:
        for g, n, v in self.options:
            if (g, n) == (group, name):
                return v
        return default

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis' report: the short form

    def __repr__(self) -> str:
        legs = "\n".join(f"    {leg.label}: transport={leg.transport} "
                         f"arrival={leg.arrival} body={_short(leg.body)}\n"
                         f"      {leg.script!r}" for leg in self.legs)
        return (f"Example({self.backend}, asked={list(self.asked)}, "
                f"blob={self.blob_kind}, options={list(self.options)}, "
                f"proven={sorted(self.proven)}, why={dict(self.why)}, "
                f"clean={self.clean}, critical={self.critical}\n{legs})")


def _short(data: bytes) -> str:
    if len(data) <= 300:
        return repr(data)
    return repr(data[:200]) + f"...<{len(data)} bytes>..." + repr(data[-60:])


class Context:
    """What one example's drawing needs to know, and its fault plan: the
    layers (:data:`OAT_LAYERS`, :data:`KEYLIME_LAYERS`) that deviate from a
    well-formed answer in this example. Most examples deviate in none or
    one, so the nearly-valid answers where a lenient reader goes wrong are
    common."""

    def __init__(self, blob: str | None, now: float, max_age: float,
                 plan: frozenset[str] = frozenset(),
                 plain: bool = False) -> None:
        self.blob = blob
        self.now = now
        self.max_age = max_age
        self.plan = plan
        #: every request answered in the plainest HTTP: 200 OK, JSON,
        #: Content-Length, at once, connection kept (the "clean" answers
        #: the product must take exactly as the oracle reads them)
        self.plain = plain and not plan

    def odd(self, layer: str) -> bool:
        return layer in self.plan


# -- scalars, junk and echoes -------------------------------------------------

_ODD_NUMBERS = [Raw(b"1e400"), Raw(b"-1e400"), Raw(b"1" + b"0" * 5000),
                Raw(b"-0"), Raw(b"1E+2"), Raw(b"0.1e-400"), Raw(b"NaN"),
                Raw(b"Infinity"), Raw(b"01"), Raw(b"1.")]
#: numbers that are valid JSON (if odd to read)
_VALID_ODD_NUMBERS = [Raw(b"1e400"), Raw(b"-1e400"), Raw(b"-0"),
                      Raw(b"1E+2"), Raw(b"0.1e-400"), Raw(b"9" * 4000)]
_ODD_TEXT = ["\ud800", "\udfff", "\ud83d\ude00", "\x00", "\u2028", "\ufeff",
             "\u202e", "trusted\x00", "\U0001f600", "\\", "\"", ""]
KEYS = ["hosts", "host_name", "trust_lvl", "vtime", "results", "code",
        "status", "uuids", "count", "operational_state",
        "attestation_status", "last_successful_attestation"]


def echo(ctx: Context) -> st.SearchStrategy[str]:
    """The auth blob, alone or padded so that a message cut at some length
    cuts the blob (a truncated secret escapes a redactor that only knows
    the whole value)."""
    return _echo(ctx.blob)


# Strategies are built once and reused: building (and validating) them
# anew for every draw costs more than drawing from them.

@functools.cache
def _echo(blob: str | None) -> st.SearchStrategy[str]:
    if not blob:
        return st.just("no-blob")
    return st.builds(lambda pad, tail: "x" * pad + blob + tail,
                     st.sampled_from([0, 5, 40, 55, 64, 70, 75, 190, 195,
                                      290, 480, 495]),
                     st.sampled_from(["", " end"]))


def text_values(ctx: Context, valid: bool) -> st.SearchStrategy[Any]:
    return _text_values(ctx.blob, valid)


@functools.cache
def _text_values(blob: str | None, valid: bool) -> st.SearchStrategy[Any]:
    options = [
        st.text(max_size=12),
        st.sampled_from(_ODD_TEXT),
        st.sampled_from(list(HOSTS) + ["trusted", "PASS", "untrusted"]),
        st.builds(Str, st.text(max_size=8),
                  st.sampled_from(["ascii", "utf8", "escape-all"])),
        _echo(blob),
    ]
    if not valid:
        options += [st.just(Raw(b'"invalid \xff\xfe utf-8"')),
                    st.just(Raw(b'"cesu \xed\xa0\x80 surrogate"')),
                    st.just(Raw(b'"raw\tcontrol"'))]
    return st.one_of(*options)


def junk(ctx: Context, valid: bool = False) -> st.SearchStrategy[Any]:
    """Arbitrary shallow JSON trees: huge and odd numbers, odd strings,
    duplicate keys; with ``valid``, only what RFC 8259 calls JSON (a
    duplicate key is still possible: RFC 8259 only says SHOULD)."""
    return _junk(ctx.blob, valid)


@functools.cache
def _junk(blob: str | None, valid: bool) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.sampled_from(KEYS + list(HOSTS)), st.text(max_size=6))
    numbers = _VALID_ODD_NUMBERS if valid else _ODD_NUMBERS
    leaves = st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(numbers), _text_values(blob, valid))
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.builds(lambda pairs: Obj(tuple(pairs)),
                      st.lists(st.tuples(keys, children), max_size=4,
                               unique_by=(lambda p: p[0]) if valid
                               else None))),
        max_leaves=8)


def deep(inner: Any) -> st.SearchStrategy[Deep]:
    return st.builds(Deep,
                     st.one_of(st.integers(1, 40),
                               st.sampled_from([5_000, 20_000, 100_000])),
                     st.sampled_from(["list", "object"]), st.just(inner))


@functools.cache
def styled(value: str) -> st.SearchStrategy[Any]:
    """``value`` under one of the spellings JSON allows."""
    return st.sampled_from([value, Str(value, "utf8"),
                            Str(value, "escape-all")])


@functools.cache
def _choice(options: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(options)


def pick(draw: st.DrawFn, common: Sequence[Any], weight: int,
         rare: Sequence[Any] = ()) -> Any:
    """One of ``common`` (each ``weight`` times as likely) or ``rare``;
    shrinks towards ``common[0]``."""
    return draw(_choice(tuple(common) * weight + tuple(rare)))


# -- vtimes and epochs --------------------------------------------------------

_OFFSETS = [0, 60, -300, 330, -720, 840, -59, 765]
VTIME_FORMS = ("oat", "Z", "colon", "basic", "naive", "space", "ctime",
               "micro")
_EXTREME_VTIMES = [
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999999-00:01", "0000-01-01T00:00:00Z",
    "2016-02-30T12:00:00Z", "2016-01-14T25:00:00Z",
    "2016-01-14T12:20:50+24:00", "2016-01-14T12:20:50+99:99",
    "Tue Feb 30 09:02:48 2012", "Xyz Feb 14 09:02:48 2012",
    "+275760-09-13T00:00:00Z", "2016-01-14T12:20:60Z", "", " ",
    "yesterday", "1452774050", "2016-01-14", "12:20:50",
    "2016-01-14T12:20:50.679+0000junk",
]


def render_vtime(stamp: float, form: str, offset: int) -> str:
    """``stamp`` as an attestation server writes it; every form has a fixed
    width, so that the bytes' length, and with it hypothesis' choices,
    never depends on the clock."""
    if form == "ctime":
        moment = datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc)
        return (f"{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} "
                f"{moment.day:2d} {moment:%H:%M:%S} {moment.year}")
    if form in ("Z", "naive", "space"):
        offset = 0
    tz = datetime.timezone(datetime.timedelta(minutes=offset))
    moment = datetime.datetime.fromtimestamp(stamp, tz)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    sign = "-" if offset < 0 else "+"
    hh, mm = divmod(abs(offset), 60)
    if form == "oat":
        return f"{base}.{moment.microsecond // 1000:03d}{sign}{hh:02d}{mm:02d}"
    if form == "micro":
        return f"{base}.{moment.microsecond:06d}{sign}{hh:02d}:{mm:02d}"
    if form == "Z":
        return base + "Z"
    if form == "colon":
        return f"{base}{sign}{hh:02d}:{mm:02d}"
    if form == "basic":
        return f"{base}{sign}{hh:02d}{mm:02d}"
    if form == "space":
        return base.replace("T", " ")
    return base  # naive: UTC by convention


def epoch_number(stamp: float, kind: str) -> Any:
    """POSIX seconds as a JSON number of fixed width (see
    :func:`render_vtime`)."""
    if kind == "int":
        return Raw(b"%d" % int(stamp))
    return Raw(b"%.3f" % stamp)


#: seconds before now, by category; "fresh" stays well inside MAX_AGE and
#: the allowed skew, the others well outside
def _age(category: str) -> st.SearchStrategy[float]:
    if category == "fresh":
        return st.floats(-FRESH_AHEAD, MAX_AGE / 5)
    if category == "stale":
        return st.floats(3 * MAX_AGE, 10 * 365 * 86400)
    return st.floats(-10 * 365 * 86400, -3 * MAX_SKEW)  # future


def fresh_vtime(ctx: Context) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda age, form, offset, style: Str(render_vtime(
            ctx.now - age, form, offset), style),
        _age("fresh"), st.sampled_from(VTIME_FORMS),
        st.sampled_from(_OFFSETS),
        st.sampled_from(["ascii", "utf8", "escape-all"]))


@st.composite
def odd_vtime(draw: st.DrawFn, ctx: Context) -> Any:
    """A vtime that proves no freshness (or ABSENT)."""
    kind = draw(st.sampled_from(
        ["stale", "future", "extreme", "absent", "null", "number", "list",
         "junk", "echo"]))
    if kind in ("stale", "future"):
        return render_vtime(ctx.now - draw(_age(kind)),
                            draw(st.sampled_from(VTIME_FORMS)),
                            draw(st.sampled_from(_OFFSETS)))
    if kind == "extreme":
        return draw(st.sampled_from(_EXTREME_VTIMES))
    if kind == "absent":
        return ABSENT
    if kind == "null":
        return None
    if kind == "number":
        return draw(st.sampled_from([
            epoch_number(ctx.now, "int"), epoch_number(ctx.now, "float"),
            Raw(b"1e400"), Raw(b"1" + b"0" * 400)]))
    if kind == "list":
        return [render_vtime(ctx.now, "oat", 0)]
    if kind == "echo":
        return draw(echo(ctx))
    return draw(junk(ctx, valid=True))


@st.composite
def odd_epoch(draw: st.DrawFn, ctx: Context) -> Any:
    """A last_successful_attestation that proves no freshness."""
    kind = draw(st.sampled_from(
        ["future", "stale", "absent", "null", "zero", "negative", "huge",
         "string", "bool", "list"]))
    if kind in ("stale", "future"):
        return epoch_number(ctx.now - draw(_age(kind)),
                            draw(st.sampled_from(["int", "float"])))
    if kind == "absent":
        return ABSENT
    return {
        "null": None, "zero": 0, "negative": Raw(b"-%d" % int(ctx.now)),
        "huge": draw(st.sampled_from([10 ** 20, 2 ** 63, Raw(b"1e400"),
                                      Raw(b"9" * 4000),
                                      Raw(b"1" + b"0" * 5000), 1e300])),
        "string": str(int(ctx.now)), "bool": True,
        "list": [Raw(b"%d" % int(ctx.now))],
    }[kind]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


def _pairs(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(k, v) for k, v in pairs if v is not ABSENT]


# -- fault plans --------------------------------------------------------------

#: layers an exchange can deviate in; "transport" layers apply to one
#: request of a multi-request exchange
TRANSPORT_LAYERS = ("status", "headers", "framing", "pacing", "encoding")
OAT_LAYERS = TRANSPORT_LAYERS + ("blob", "shape", "entries", "level",
                                 "vtime", "entry-fields")
KEYLIME_LAYERS = TRANSPORT_LAYERS + ("blob", "shape", "version",
                                     "envelope", "agents", "status-field",
                                     "state-field", "epoch", "fan-out")


@st.composite
def plans(draw: st.DrawFn, layers: Sequence[str]) -> frozenset[str]:
    count = draw(st.sampled_from([0, 0, 1, 1, 1, 1, 1, 2, 2, 3]))
    return frozenset(draw(st.lists(st.sampled_from(list(layers)),
                                   min_size=count, max_size=count,
                                   unique=True)))


# -- PollHosts answers --------------------------------------------------------

_LEVELS = ["trusted", "untrusted", "unknown", "timeout", "pending"]
_ODD_LEVELS = ["TRUSTED", "Trusted", " trusted", "trusted\t", "\ttrusted ",
               "trusted\n", "\u00a0trusted", "trusted\u3000", "\u2028trusted",
               "tru\u017fted", "trusted\u0000", "trust", "trusted!", "",
               "\uff34\uff32\uff35\uff33\uff34\uff25\uff24", "true",
               "UNTRUSTED", " untrusted", "Pending", "trusted\u200b"]


@st.composite
def poll_entry(draw: st.DrawFn, ctx: Context, name: str, target: bool
               ) -> Any:
    """The entry for ``name``; the per-host layers deviate only for the
    ``target`` host."""
    name_node: Any = draw(styled(name))
    if target and ctx.odd("level"):
        level = draw(st.one_of(
            st.sampled_from(_ODD_LEVELS), echo(ctx),
            st.sampled_from([None, True, 1, ["trusted"],
                             Obj((("trust_lvl", "trusted"),)),
                             Raw(b"1e400")])))
    else:
        level = draw(styled(pick(draw, ["trusted"], 6, _LEVELS[1:])))
    if target and ctx.odd("vtime"):
        vtime = draw(odd_vtime(ctx))
    else:
        vtime = draw(fresh_vtime(ctx))
    pairs = _pairs([("host_name", name_node), ("trust_lvl", level),
                    ("vtime", vtime)])
    if target and ctx.odd("entry-fields"):
        kind = draw(st.sampled_from(["dup-level", "dup-name", "dup-vtime",
                                     "drop-level", "drop-name",
                                     "name-type"]))
        if kind == "dup-level":
            pairs.insert(draw(st.integers(0, len(pairs))), (
                "trust_lvl", draw(st.sampled_from(["untrusted", "trusted",
                                                   "unknown"]))))
        elif kind == "dup-name":
            pairs.insert(draw(st.integers(0, len(pairs))), (
                "host_name", draw(st.sampled_from(HOSTS + STRANGERS))))
        elif kind == "dup-vtime":
            pairs.insert(draw(st.integers(0, len(pairs))), (
                "vtime", render_vtime(ctx.now - 10 * MAX_AGE, "oat", 0)))
        elif kind == "drop-level":
            pairs = [p for p in pairs if p[0] != "trust_lvl"]
        elif kind == "drop-name":
            pairs = [p for p in pairs if p[0] != "host_name"]
        else:
            pairs[0] = ("host_name", draw(st.sampled_from(
                [None, 1, [name], Obj(()), ""])))
    elif draw(st.integers(0, 5)) == 0:
        # fields nobody reads are no reason for doubt
        pairs.append((draw(st.sampled_from(["comment", "signature",
                                            "Trust_Lvl", "analysis"])),
                      draw(junk(ctx, valid=True))))
    order = draw(st.permutations(range(len(pairs))))
    return Obj(tuple(pairs[i] for i in order))


@st.composite
def poll_hosts_body(draw: st.DrawFn, ctx: Context, asked: Sequence[str]
                    ) -> Any:
    """A PollHosts answer, deviating where the plan says."""
    if ctx.odd("shape"):
        shape = draw(st.sampled_from(["junk", "deep", "hosts-type", "array",
                                      "dup-hosts", "deep-inside",
                                      "invalid-field"]))
        if shape == "junk":
            return draw(junk(ctx))
        if shape == "array":
            return [Obj((("host_name", n), ("trust_lvl", "trusted")))
                    for n in asked]
        if shape == "hosts-type":
            return Obj((("hosts", draw(junk(ctx))),))
    else:
        shape = "answer"
    target = draw(st.sampled_from(list(asked)))
    entries: list[Any] = []
    for name in asked:
        if name != target and draw(st.integers(0, 9)) == 0:
            continue  # not mentioned: valid, and no proof
        entries.append(draw(poll_entry(ctx, name, name == target)))
    if ctx.odd("entries"):
        for extra in draw(st.lists(st.sampled_from(
                ["stranger", "duplicate", "conflict", "junk-entry",
                 "omit-target"]), min_size=1, max_size=2, unique=True)):
            if extra == "stranger":
                entries.append(Obj((
                    ("host_name", draw(st.sampled_from(STRANGERS))),
                    ("trust_lvl", "trusted"),
                    ("vtime", render_vtime(ctx.now, "oat", 0)))))
            elif extra in ("duplicate", "conflict"):
                level = "trusted" if extra == "duplicate" else draw(
                    st.sampled_from(["untrusted", "unknown", "trusted"]))
                age = draw(_age(draw(st.sampled_from(["fresh", "stale"]))))
                entries.append(Obj((
                    ("host_name", target), ("trust_lvl", level),
                    ("vtime", render_vtime(ctx.now - age, "oat", 0)))))
            elif extra == "junk-entry":
                entries.append(draw(junk(ctx, valid=True)))
            elif entries:
                entries.pop(0)
    order = draw(st.permutations(range(len(entries))))
    top: list[tuple[Any, Any]] = [("hosts", [entries[i] for i in order])]
    if draw(st.booleans()):
        top.append(("count", len(asked)))
    if shape == "dup-hosts":
        top.insert(draw(st.integers(0, len(top))), ("hosts", []))
    elif shape == "deep-inside":
        top.append(("padding", draw(deep(None))))
    elif shape == "invalid-field":
        top.append(("comment", draw(st.sampled_from(
            [Raw(b'"\xff"'), Raw(b'"\xed\xa0\x80"'), Raw(b"NaN"),
             Raw(b"01"), Raw(b'"a\x01b"')]))))
    elif draw(st.integers(0, 5)) == 0:
        top.append((draw(st.sampled_from(["comment", "errors", "HOSTS"])),
                    draw(junk(ctx, valid=True))))
    body: Any = Obj(tuple(top))
    if shape == "deep":
        body = draw(deep(body))
    return body


# -- Keylime answers ----------------------------------------------------------

_STATUSES = ["PASS", "FAIL", "PENDING", "TIMEOUT"]
_ODD_STATUSES = ["pass", "Pass", "PA\u017fS", "PA\u017f\u017f", "PASS ",
                 " PASS", "PASSED", "", "\uff30\uff21\uff33\uff33", "OK",
                 "pass\u0000"]
_STATES = [3, 4, 5, 6, 7, 9, 10, 0, 1, 2, 8]


@st.composite
def keylime_record(draw: st.DrawFn, ctx: Context, target: bool) -> Any:
    """One verifier record; the record layers deviate only for the
    ``target`` agent."""
    status: Any = ABSENT
    state: Any = ABSENT
    if target and ctx.odd("status-field"):
        status = draw(st.one_of(st.sampled_from(_ODD_STATUSES),
                                st.sampled_from([None, 1, True, ["PASS"],
                                                 Obj((("s", "PASS"),)),
                                                 Raw(b"1e400")])))
    elif draw(st.integers(0, 3)):
        status = draw(styled(pick(draw, ["PASS"], 6, _STATUSES[1:])))
    if target and ctx.odd("state-field"):
        state = draw(st.sampled_from([Raw(b"3.0"), "3", True, None, -1,
                                      2 ** 70, Raw(b"1e400"), Raw(b"3e0"),
                                      ABSENT]))
    elif status is ABSENT or draw(st.booleans()):
        state = pick(draw, [3], 6, _STATES[1:])
    if target and ctx.odd("epoch"):
        last = draw(odd_epoch(ctx))
    else:
        last = epoch_number(ctx.now - draw(_age("fresh")),
                            draw(st.sampled_from(["int", "float"])))
    pairs = _pairs([
        ("operational_state", state), ("attestation_status", status),
        ("last_successful_attestation", last), ("v", V_HALF),
        ("ip", "127.0.0.1"), ("port", 9002),
        ("tpm_policy", '{"mask": "0x400"}'), ("hash_alg", "sha256"),
        ("severity_level", None), ("last_event_id", None)])
    if target and ctx.odd("status-field") and draw(st.booleans()):
        pairs.insert(draw(st.integers(0, len(pairs))),
                     ("attestation_status", draw(st.sampled_from(
                         ["FAIL", "PASS"]))))
    if target and ctx.odd("state-field") and draw(st.booleans()):
        pairs.insert(draw(st.integers(0, len(pairs))),
                     ("operational_state", draw(st.sampled_from([9, 3]))))
    if draw(st.integers(0, 5)) == 0:
        pairs.append(("meta_data", draw(junk(ctx, valid=True))))
    order = draw(st.permutations(range(len(pairs))))
    return Obj(tuple(pairs[i] for i in order))


def envelope(results: Any, code: Any = 200,
             status: str = "Success") -> Obj:
    return Obj(_pairs([("code", code), ("status", status),
                       ("results", results)]))


def odd_code() -> st.SearchStrategy[Any]:
    return st.sampled_from([500, "200", True, ABSENT, Raw(b"200.0"), 201,
                            Raw(b"2e2")])


@st.composite
def version_body(draw: st.DrawFn, ctx: Context) -> Any:
    versions: Any = draw(st.sampled_from([
        ["1.0", "2.0", "2.1"], ["2.1"], ["2.0", "2.1", "2.2", "2.3", "3.0"],
        ["2.3", "2.10"]]))
    if not ctx.odd("version"):
        return envelope(Obj((("current_version", "2.1"),
                             ("supported_versions", versions))))
    kind = draw(st.sampled_from(["no-2x", "not-list", "numbers", "junk",
                                 "no-results"]))
    if kind == "no-2x":
        versions = draw(st.sampled_from([["3.0"], ["1.0"], [], ["2"],
                                         ["2.x"], ["2.1.1"]]))
    elif kind == "not-list":
        versions = draw(st.sampled_from(["2.1", None, Obj((("2.1", 1),))]))
    elif kind == "numbers":
        versions = [2.1, 2.0]
    elif kind == "junk":
        return draw(junk(ctx))
    if kind == "no-results":
        return Obj((("code", 200), ("status", "Success")))
    return envelope(Obj((("current_version", "2.1"),
                         ("supported_versions", versions))))


@st.composite
def bulk_body(draw: st.DrawFn, ctx: Context, asked: Sequence[str],
              target: str) -> Any:
    shape = "bulk"
    if ctx.odd("shape"):
        shape = draw(st.sampled_from(["junk", "results-type", "deep"]))
        if shape == "junk":
            return draw(junk(ctx))
        if shape == "results-type":
            return envelope(draw(st.sampled_from([None, [], "x", 1])))
    elif draw(st.integers(0, 9)) == 0:
        # verifiers before 5.8.2: a list of ids, then one request per agent
        ids = [n for n in asked if draw(st.booleans())] + ["other-agent"]
        nested = draw(st.booleans())
        return envelope(Obj((("uuids", [ids] if nested else ids),)))
    agents: list[tuple[Any, Any]] = []
    for name in asked:
        if name != target and draw(st.integers(0, 9)) == 0:
            continue  # not listed: valid, and no proof
        agents.append((draw(styled(name)),
                       draw(keylime_record(ctx, name == target))))
    count = draw(st.sampled_from([0, 0, 1, 1, 2]))
    for stranger in draw(st.lists(st.sampled_from(
            ["node-x", "uuids", "agent-7", "NODE-A"]), min_size=count,
            max_size=count, unique=True)):
        # other agents, one possibly named "uuids": valid
        agents.append((stranger, draw(keylime_record(ctx, False))))
    if ctx.odd("agents"):
        kind = draw(st.sampled_from(["omit-target", "duplicate",
                                     "stranger-not-object",
                                     "uuids-list"]))
        if kind == "omit-target":
            agents = [a for a in agents if a[0] != target and
                      getattr(a[0], "value", None) != target]
        elif kind == "duplicate":
            agents.append((target, draw(keylime_record(ctx, False))))
        elif kind == "stranger-not-object":
            agents.append(("node-y", draw(junk(ctx, valid=True))))
        else:
            agents.append(("uuids", [[n for n in asked]]))
    order = draw(st.permutations(range(len(agents))))
    results = Obj(tuple(agents[i] for i in order))
    code = draw(odd_code()) if ctx.odd("envelope") else 200
    body: Any = envelope(results, code)
    if shape == "deep":
        body = draw(deep(body))
    return body


@st.composite
def agent_body(draw: st.DrawFn, ctx: Context, target: bool) -> Any:
    """One agent's answer (``GET /v2.x/agents/{id}``)."""
    record = draw(keylime_record(ctx, target))
    code = draw(odd_code()) if target and ctx.odd("envelope") else 200
    return envelope(record, code)


# -- HTTP: status line, headers, framing --------------------------------------

_REASONS = {100: "Continue", 101: "Switching Protocols", 103: "Early Hints",
            200: "OK", 201: "Created", 202: "Accepted",
            203: "Non-Authoritative Information", 204: "No Content",
            205: "Reset Content", 206: "Partial Content", 299: "",
            301: "Moved Permanently", 302: "Found", 304: "Not Modified",
            307: "Temporary Redirect", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            410: "Gone", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 599: "", 999: "Odd"}
#: 2xx statuses whose body a trust decision may rest on (204 and 205
#: carry no content)
PROOF_STATUSES = frozenset(range(200, 300)) - {204, 205}
_BAD_STATUS_LINES = [
    b"HTTP/1.1 2OO OK", b"HTTP/1.1 +200 OK", b"HTTP/1.1 0200 OK",
    b"HTTP/1.1 2_00 OK", b"HTTP/2 200 OK", b"HTTP/1.1  200 OK",
    b"http/1.1 200 OK", b"HTTP/1.1 200OK", b"HTTP/1.1 20 OK",
    b"ICY 200 OK", b"", b"HTTP/1.1 -200 OK", b"\x16\x03\x01\x00\x05hello",
    b"HTTP/1.1 200 OK\x00trailing", b"HTTP/1.1 200 OK\rX",
    b"HTTP/1.1 200 OK\x1b[2J", b"HTTP/1.1 200 \x7f",
]


@dataclasses.dataclass(frozen=True)
class Wire:
    head: bytes
    body_wire: bytes
    #: why the answer, fully delivered, is no proof (None: it is)
    problem: str | None
    #: the client knows where the body ends without a close
    delimited: bool
    #: offsets (in head + body_wire) worth pausing at
    points: tuple[int, ...]
    clean: bool
    label: str

    @property
    def data(self) -> bytes:
        return self.head + self.body_wire


@st.composite
def status_lines(draw: st.DrawFn, ctx: Context, odd: bool
                 ) -> tuple[bytes, str | None, int | None, str | None]:
    """``(line without CRLF, version, code, problem)``."""
    if odd and draw(st.integers(0, 2)) == 0:
        return (draw(st.sampled_from(_BAD_STATUS_LINES)), None, None,
                "status:malformed-line")
    if odd:
        code = draw(st.sampled_from(
            sorted(set(_REASONS) - PROOF_STATUSES)))
    else:
        code = pick(draw, [200], 20, sorted(set(_REASONS) & PROOF_STATUSES))
    version = pick(draw, ["HTTP/1.1"], 5, ["HTTP/1.0"])
    reason_kind = pick(draw, ["usual"], 8, [
        "none", "none-no-space", "echo", "latin1"])
    reason = _REASONS[code].encode()
    problem = None if code in PROOF_STATUSES else f"status:{code}"
    if reason_kind == "none":
        reason = b""
    elif reason_kind == "none-no-space":
        return f"{version} {code}".encode(), version, code, problem
    elif reason_kind == "echo":
        reason = draw(echo(ctx)).encode("latin-1", "replace")
    elif reason_kind == "latin1":
        reason = "\u00c7a va tr\u00e8s bien".encode("latin-1")
    # any reason phrase of visible characters (or Latin-1 "obs-text") is
    # valid
    return f"{version} {code} ".encode() + reason, version, code, problem


_CONTENT_TYPES = [b"application/json; charset=utf-8",
                  b"application/json;charset=UTF-8", b"text/html",
                  b"text/plain", b"application/octet-stream",
                  b"application/problem+json", b"", None]
_FRAMINGS = ["length", "chunked", "close"]
_ODD_FRAMINGS = ["length-small", "length-large", "length-negative",
                 "length-garbage", "length-conflict", "length-huge",
                 "length+chunked", "chunked-broken", "chunked-broken",
                 "chunked-broken", "te-odd", "chunked-http/1.0"]


@st.composite
def http_response(draw: st.DrawFn, ctx: Context, body: bytes,
                  odd: frozenset[str] = frozenset()) -> Wire:
    """A whole HTTP response around ``body``; ``odd``: the transport
    layers that deviate."""
    if ctx.plain:
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        return Wire(head, body, None, True, (len(head) // 2, len(head)),
                    True, "plain")
    line, version, code, problem = draw(status_lines(ctx, "status" in odd))
    clean = problem is None and code == 200 and version == "HTTP/1.1" and \
        line.endswith(b" OK")
    headers: list[bytes] = []
    interim = b""
    if problem is None and draw(st.integers(0, 14)) == 0:
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        clean = False
    content_type = draw(st.one_of(
        st.sampled_from([b"application/json"] * 6 + _CONTENT_TYPES),
        echo(ctx).map(lambda e: b"application/json; x=" + e.encode(
            "latin-1", "replace"))))
    if content_type is not None:
        headers.append(b"Content-Type: " + content_type)
    if content_type != b"application/json":
        clean = False
    count = pick(draw, [0], 6, [1, 1, 2])
    extras = draw(st.lists(st.sampled_from(
        ["location", "location-echo", "connection-close", "keep-alive",
         "server", "date", "echo-header"]), min_size=count, max_size=count,
        unique=True))
    if "headers" in odd:
        extras.append(draw(st.sampled_from(
            ["garbage-line", "big-header", "many-headers", "space-colon",
             "nul-value"])))
    for extra in extras:
        clean = False
        if extra == "location":
            headers.append(b"Location: https://elsewhere.example/PollHosts")
        elif extra == "location-echo":
            headers.append(b"Location: https://elsewhere.example/?blob=" +
                           draw(echo(ctx)).encode("latin-1", "replace"))
        elif extra == "connection-close":
            headers.append(b"Connection: close")
        elif extra == "keep-alive":
            headers.append(b"Connection: keep-alive")
        elif extra == "server":
            headers.append(b"Server: fuzz/1.0")
        elif extra == "date":
            headers.append(b"Date: Tue, 14 Feb 2012 09:02:48 GMT")
        elif extra == "echo-header":
            headers.append(b"X-Auth-Blob: " +
                           draw(echo(ctx)).encode("latin-1", "replace"))
        elif extra == "garbage-line":
            headers.append(b"this line has no colon")
            problem = problem or "framing:header-line"
        elif extra == "space-colon":
            headers.append(b"X-Spaced : value")
            problem = problem or "framing:header-line"
        elif extra == "nul-value":
            headers.append(b"X-Nul: a\x00b")
            problem = problem or "framing:header-line"
        elif extra == "big-header":
            headers.append(b"X-Big: " + b"a" * 70_000)
        elif extra == "many-headers":
            headers.extend(b"X-H%d: v" % i for i in range(120))
    if "framing" in odd:
        framing = draw(st.sampled_from(_ODD_FRAMINGS))
    else:
        framing = pick(draw, ["length"], 4, ["chunked", "chunked", "close"])
    body_wire = body
    delimited = True
    chunk_points: list[int] = []
    n = len(body)
    if framing == "length":
        headers.append(b"Content-Length: %d" % n)
    elif framing == "close":
        delimited = False
        clean = False
    elif framing == "length-small":
        headers.append(b"Content-Length: %d" % (
            n * draw(st.integers(0, 99)) // 100))
        problem = problem or "framing:length-wrong"
    elif framing == "length-large":
        headers.append(b"Content-Length: %d" % (n + draw(
            st.integers(1, 100))))
        problem = problem or "framing:length-wrong"
    elif framing == "length-negative":
        headers.append(b"Content-Length: -%d" % draw(st.integers(1, 10)))
        delimited = False
        problem = problem or "framing:length-invalid"
    elif framing == "length-garbage":
        headers.append(b"Content-Length: " + draw(st.sampled_from([
            b"abc", b"+%d" % n, b"%d_0" % n if n else b"0_0", b"0x%x" % n,
            b"%d.0" % n, b"", b"%d %d" % (n, n), b"%d, %d" % (n, n + 1)])))
        delimited = False
        problem = problem or "framing:length-invalid"
    elif framing == "length-conflict":
        headers.append(b"Content-Length: %d" % n)
        headers.append(b"Content-Length: %d" % (n + 7))
        problem = problem or "framing:length-conflict"
    elif framing == "length-huge":
        headers.append(b"Content-Length: " + draw(st.sampled_from(
            [b"1" + b"0" * 30, b"9" * 5000, b"%d" % 2 ** 63])))
        problem = problem or "framing:length-wrong"
    elif framing == "te-odd":
        headers.append(b"Transfer-Encoding: " + draw(st.sampled_from(
            [b"gzip, chunked", b"chunked, identity", b"identity",
             b"chunked;q=1"])))
        body_wire, chunk_points, _ = draw(chunked(body, broken=False))
        delimited = False
        problem = problem or "framing:transfer-encoding"
    else:  # chunked, chunked-broken, length+chunked, chunked-http/1.0
        headers.append(pick(draw, [b"Transfer-Encoding: chunked"], 3,
                            [b"transfer-encoding: Chunked"]))
        broken = framing == "chunked-broken"
        body_wire, chunk_points, kind = draw(chunked(body, broken=broken))
        if broken:
            problem = problem or f"framing:chunked-{kind}"
        if framing == "length+chunked":
            headers.insert(draw(st.integers(0, len(headers))),
                           b"Content-Length: %d" % len(body_wire))
            problem = problem or "framing:length-and-chunked"
        if framing == "chunked-http/1.0":
            line = line.replace(b"HTTP/1.1", b"HTTP/1.0", 1)
            version = "HTTP/1.0"
        if version == "HTTP/1.0":
            problem = problem or "framing:chunked-in-http/1.0"
        if kind != "plain":
            clean = False
    if "framing" in odd:
        clean = False
    order = draw(st.permutations(range(len(headers))))
    head = interim + line + b"\r\n" + b"".join(
        headers[i] + b"\r\n" for i in order) + b"\r\n"
    if problem == "status:malformed-line" and draw(st.booleans()):
        head = line  # a status line and nothing else
    points = [0, len(interim) + len(line) // 2, len(head) - 2, len(head)]
    points += [len(head) + p for p in chunk_points]
    if body_wire:
        points.append(len(head) + len(body_wire) // 2)
    label = (f"{line[:40]!r} {framing} "
             f"{'delimited' if delimited else 'until-close'}")
    return Wire(head, body_wire, problem, delimited,
                tuple(sorted(set(points))), clean, label)


_BROKEN_CHUNKS = ["0x-size", "plus-size", "underscore-size", "space-size",
                  "negative-size", "size-too-big", "size-too-small",
                  "missing-crlf", "bad-crlf", "bad-hex", "empty-size",
                  "huge-size", "long-size-line", "no-last-chunk",
                  "no-final-crlf", "bad-trailer", "lf-only"]


@st.composite
def chunked(draw: st.DrawFn, body: bytes, broken: bool
            ) -> tuple[bytes, list[int], str]:
    """``body`` in chunked framing; ``(wire, offsets of size lines,
    kind)``: kind is ``plain``, ``extensions`` (valid, with chunk
    extensions or trailers) or the broken variant."""
    count = draw(st.integers(1, 6)) if body else 0
    # cut points as fractions: the choices do not depend on the length
    fractions = sorted(draw(st.lists(st.integers(1, 999),
                                     min_size=max(0, count - 1),
                                     max_size=max(0, count - 1))))
    cuts = sorted({max(1, len(body) * f // 1000) for f in fractions})
    cuts = [c for c in cuts if c < len(body)]
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)],
                                        strict=True)]
    pieces = [p for p in pieces if p]
    kind = draw(st.sampled_from(_BROKEN_CHUNKS)) if broken else pick(
        draw, ["plain"], 3, ["extensions"])
    target = draw(st.integers(0, 5)) % max(1, len(pieces))
    out: list[bytes] = []
    points: list[int] = []
    size = 0
    for index, piece in enumerate(pieces):
        points.append(size)
        hexsize = draw(st.sampled_from(["%x", "%X", "%04x"])) % len(piece)
        ext = b""
        if kind == "extensions" and draw(st.booleans()):
            ext = draw(st.sampled_from([b";a=b", b';name="quoted;value"',
                                        b" ;x", b";x=1;y"]))
        line_end = b"\r\n"
        data_end = b"\r\n"
        size_bytes = hexsize.encode()
        if index == target:
            n = len(piece)
            if kind == "0x-size":
                size_bytes = b"0x%x" % n
            elif kind == "plus-size":
                size_bytes = b"+%x" % n
            elif kind == "underscore-size":
                digits = b"%02x" % n
                size_bytes = digits[:1] + b"_" + digits[1:]
            elif kind == "space-size":
                size_bytes = b" %x" % n
            elif kind == "negative-size":
                size_bytes = b"-%x" % n
            elif kind == "size-too-big":
                size_bytes = b"%x" % (n + draw(st.integers(1, 4)))
            elif kind == "size-too-small":
                size_bytes = b"%x" % max(0, n - draw(st.integers(1, 4)))
            elif kind == "missing-crlf":
                data_end = b""
            elif kind == "bad-crlf":
                data_end = b"XX"
            elif kind == "bad-hex":
                size_bytes = b"zz"
            elif kind == "empty-size":
                size_bytes = b""
            elif kind == "huge-size":
                size_bytes = b"ffffffffffffffff"
            elif kind == "long-size-line":
                size_bytes = b"0" * 70_000 + b"%x" % n
            elif kind == "lf-only":
                line_end = b"\n"
        chunk = size_bytes + ext + line_end + piece + data_end
        out.append(chunk)
        size += len(chunk)
    points.append(size)
    last = b"0" + (b";end=1" if kind == "extensions" else b"") + b"\r\n"
    trailers = b""
    if kind == "extensions" and draw(st.booleans()):
        trailers = b"X-Trailer: done\r\nX-Checksum: 1234\r\n"
    if kind == "bad-trailer":
        trailers = b"no colon in this trailer\r\n"
    if kind == "no-last-chunk":
        tail = b""
    elif kind == "no-final-crlf":
        tail = last + trailers
    else:
        tail = last + trailers + b"\r\n"
    if broken and not pieces and kind not in ("no-last-chunk",
                                              "no-final-crlf",
                                              "bad-trailer"):
        # an empty body has no data chunk to break: break the last one
        tail = b"0x0\r\n\r\n"
        kind = "0x-size"
    out.append(tail)
    return b"".join(out), points, kind


# -- pacing -------------------------------------------------------------------

PACINGS = ["none", "split", "drip-fast", "gap"]
ODD_PACINGS = ["drip-late", "drip-late", "stall-at", "reset-at",
               "close-at"]
ENDINGS = ["close", "keep", "stall", "reset"]


@dataclasses.dataclass(frozen=True)
class Paced:
    script: Script
    #: every byte is sent before the ending
    complete: bool
    #: pauses before the last byte
    arrival: float
    clean: bool
    label: str


def _cut(data: bytes, cuts: Sequence[int], pauses: Sequence[float]
         ) -> list[tuple[bytes, float]]:
    bounds = [0, *cuts, len(data)]
    writes = []
    for (a, b), pause in zip(zip(bounds, bounds[1:], strict=False),
                             [*pauses, 0.0], strict=False):
        writes.append((data[a:b], pause))
    return [(d, p) for d, p in writes if d or p]


def _at(draw: st.DrawFn, points: Sequence[int]) -> int:
    """One of ``points``, drawn without depending on how many there are."""
    return points[draw(st.integers(0, 7)) % len(points)]


@st.composite
def pacing(draw: st.DrawFn, wire: Wire, odd: bool) -> Paced:
    data = wire.data
    if wire.label == "plain":
        return Paced(Script(((data, 0.0),), "keep"), True, 0.0, True,
                     "none/keep")
    mode = draw(st.sampled_from(ODD_PACINGS)) if odd else pick(
        draw, ["none"], 6, PACINGS[1:])
    if not wire.delimited and not odd:
        ending = "close"  # what delimits the body
    else:
        ending = pick(draw, ["close", "keep"], 3, ["stall", "reset"])
    points = [p for p in wire.points if 0 < p < len(data)] or [
        max(1, len(data) // 2)]
    if len(data) < 2:
        mode = "none"
    writes: list[tuple[bytes, float]] = [(data, 0.0)]
    if mode == "split":
        fractions = draw(st.lists(st.integers(1, 999), min_size=1,
                                  max_size=8))
        cuts = sorted({max(1, len(data) * f // 1000) for f in fractions})
        pauses = [draw(st.sampled_from([0.0, 0.001, 0.01, 0.02]))
                  for _ in cuts]
        writes = _cut(data, cuts, pauses)
    elif mode == "drip-fast":
        start = _at(draw, points)
        n = min(draw(st.integers(2, 25)), len(data) - start)
        writes = _cut(data, list(range(max(1, start), start + n)),
                      [0.005] * n)
    elif mode == "gap":
        writes = _cut(data, [_at(draw, points)],
                      [draw(st.sampled_from([0.05, 0.1, ON_TIME_GAP]))])
    elif mode == "drip-late":
        # one byte at a time, each pause far below read_timeout, the whole
        # far past the deadline: only an absolute deadline cuts it
        pause = draw(st.sampled_from([0.05, 0.1, 0.2, 0.3]))
        n = math.ceil(LATE / pause) + draw(st.integers(0, 2))
        n = min(n, int(MAX_PACE / pause) - 1)
        start = max(1, min(_at(draw, points), len(data) - n - 1))
        if len(data) - start - 1 < n:
            # too short to drip late: stall instead
            mode = "stall-at"
        else:
            writes = _cut(data, list(range(start, start + n)), [pause] * n)
    if mode in ("stall-at", "reset-at", "close-at"):
        writes = [(data[:_at(draw, points)], 0.0)]
        ending = {"stall-at": "stall", "reset-at": "reset",
                  "close-at": "close"}[mode]
    writes = [(d, p) for d, p in writes if d or p]
    complete = mode not in ("stall-at", "reset-at", "close-at")
    # the pause after the last byte delays nothing the client waits for
    if writes and complete:
        writes[-1] = (writes[-1][0], 0.0)
    arrival = sum(p for _, p in writes)
    clean = mode in ("none", "split", "drip-fast") and ending == "keep"
    return Paced(Script(tuple(writes), ending), complete, arrival, clean,
                 f"{mode}/{ending}")


# -- whole examples -----------------------------------------------------------

def _leg(route: str, wire: Wire, paced: Paced, body: bytes, depth: int,
         label: str, body_clean: bool) -> Leg:
    transport = wire.problem
    if transport is None and not paced.complete:
        transport = f"incomplete:{paced.script.ending}"
    if transport is None and not wire.delimited and \
            paced.script.ending != "close":
        transport = f"never-ends:{paced.script.ending}"
    return Leg(route, paced.script, transport, body, depth,
               paced.arrival if paced.complete else None,
               body_clean and wire.clean and paced.clean and
               transport is None,
               f"{label} [{wire.label}; {paced.label}]")


@st.composite
def leg(draw: st.DrawFn, ctx: Context, route: str, node: Any, label: str,
        odd: frozenset[str] = frozenset(), body_clean: bool = True) -> Leg:
    """One request's answer: ``node`` as the body, in an HTTP response
    deviating in the transport layers ``odd``."""
    body = render(node)
    if "encoding" in odd:
        encoding = draw(st.sampled_from(["utf-16-le", "utf-16-be", "utf-16",
                                         "utf-32", "latin-1"]))
        try:
            body = body.decode("utf-8").encode(encoding)
        except UnicodeError:
            body = b"\xff" + body
        body_clean = False
    elif not ctx.plain and draw(st.integers(0, 19)) == 0:
        body = b"\xef\xbb\xbf" + body  # a byte order mark: tolerated
        body_clean = False
    wire = draw(http_response(ctx, body, odd))
    paced = draw(pacing(wire, "pacing" in odd))
    return _leg(route, wire, paced, body, max_depth(node), label,
                body_clean and not ctx.plan)


def _rescale(legs: Sequence[Leg]) -> list[Leg]:
    """Pauses scaled down so that they add up to at most ON_TIME."""
    total = sum(item.arrival or 0.0 for item in legs)
    if total <= ON_TIME:
        return list(legs)
    factor = ON_TIME / total
    out = []
    for item in legs:
        writes = tuple((d, p * factor) for d, p in item.script.writes)
        out.append(dataclasses.replace(
            item, script=Script(writes, item.script.ending),
            arrival=None if item.arrival is None else item.arrival * factor))
    return out


def _critical(legs: Sequence[Leg]) -> float | None:
    """Pauses on the way to the last byte of the exchange (the legs a
    correct client needs, one after the other); None if one never ends."""
    arrivals = [item.arrival for item in legs]
    if any(a is None for a in arrivals):
        return None
    return sum(arrivals)  # type: ignore[arg-type]


def _transport_odd(ctx: Context) -> frozenset[str]:
    return frozenset(layer for layer in TRANSPORT_LAYERS if ctx.odd(layer))


@st.composite
def oat_example(draw: st.DrawFn, asked: tuple[str, ...], blob_kind: str,
                max_age: int, plan: frozenset[str]) -> Example:
    now = time.time()
    ctx = Context(BLOBS.get(blob_kind), now, max_age, plan,
                  plain=draw(st.booleans()))
    node = draw(poll_hosts_body(ctx, asked))
    one = draw(leg(ctx, OAT_ROUTE, node, "PollHosts", _transport_odd(ctx)))
    if one.arrival is not None and ON_TIME < one.arrival < LATE:
        one = _rescale([one])[0]
    why: dict[str, str] = {}
    if blob_kind not in SENDABLE_BLOBS:
        why = dict.fromkeys(asked, "startup:unsendable-blob")
    elif one.transport:
        why = dict.fromkeys(asked, one.transport)
    elif one.arrival is not None and one.arrival >= LATE:
        why = dict.fromkeys(asked, "late")
    else:
        proofs = oat_proofs(one.body, one.depth, asked, now, max_age)
        why = {h: r for h, r in proofs.items() if r}
    proven = frozenset(h for h in asked if h not in why)
    options = [("trusted_computing", "max_report_age", max_age)]
    return Example("oat", asked, blob_kind, tuple(options), (one,), proven,
                   tuple(sorted(why.items())),
                   one.clean and blob_kind in SENDABLE_BLOBS,
                   one.arrival)


@st.composite
def keylime_example(draw: st.DrawFn, asked: tuple[str, ...],
                    blob_kind: str, max_age: int, plan: frozenset[str]
                    ) -> Example:
    now = time.time()
    ages = draw(st.sampled_from([(MAX_AGE, 0), (0, MAX_AGE),
                                 (MAX_AGE, MAX_AGE)]) if max_age else
                st.just((0, 0)))
    keylime_age, report_age = ages
    ctx = Context(BLOBS.get(blob_kind), now, max(ages), plan,
                  plain=draw(st.booleans()))
    fan_out = ctx.odd("fan-out")
    api = "auto" if fan_out else pick(draw, ["auto"], 3, ["2.1"])
    target = draw(st.sampled_from(list(asked)))
    # the transport layers deviate in one request of the exchange
    odd_leg = draw(st.sampled_from(["version", "bulk", "agent"]))
    transport = _transport_odd(ctx)

    def odd_for(which: str) -> frozenset[str]:
        if fan_out:
            return frozenset()
        return transport if which == odd_leg else frozenset()

    legs: list[Leg] = []
    if api == "auto":
        legs.append(draw(leg(ctx, VERSION_ROUTE, draw(version_body(ctx)),
                             "version", odd_for("version"))))
    legs.append(draw(leg(ctx, BULK_ROUTE, draw(bulk_body(ctx, asked,
                                                          target)),
                         "bulk", odd_for("bulk"))))
    agent_legs: dict[str, Leg] = {}
    for name in asked:
        if name != target and draw(st.integers(0, 4)) == 0:
            continue  # 404: the verifier does not know the agent
        agent_legs[name] = draw(leg(
            ctx, agent_route(name), draw(agent_body(ctx, name == target)),
            f"agent-{name}", odd_for("agent") if name == target
            else frozenset()))
    if fan_out:
        legs, agent_legs = _fan_out(legs, agent_legs, draw)
    # what a correct client needs: version (auto), bulk, and the agents'
    # own answers when the bulk answer is the legacy list
    bulk = legs[-1]
    results, bulk_why = None, bulk.transport
    if bulk_why is None:
        results, bulk_why = keylime_envelope(bulk.body, bulk.depth)
    legacy = bulk_why is None and is_legacy_list(results)
    needed = list(legs)
    if legacy:
        needed += [agent_legs[n] for n in asked if n in agent_legs]
    critical = _critical(needed)
    if critical is not None and ON_TIME < critical < LATE:
        scaled = {item.route: item for item in _rescale(needed)}
        legs = [scaled.get(item.route, item) for item in legs]
        agent_legs = {n: scaled.get(item.route, item)
                      for n, item in agent_legs.items()}
        needed = [scaled[item.route] for item in needed]
        critical = _critical(needed)
    # (the keylime backend sends no auth blob, whatever its kind)
    why: dict[str, str] = {}
    for item in legs:
        if item.transport:
            why = dict.fromkeys(asked, f"{item.label.split()[0]}:"
                                f"{item.transport}")
            break
    if not why and api == "auto":
        problem = keylime_version_ok(legs[0].body, legs[0].depth)
        if problem:
            why = dict.fromkeys(asked, f"version:{problem}")
    if not why and bulk_why:
        why = dict.fromkeys(asked, f"bulk:{bulk_why}")
    if not why and critical is not None and critical >= LATE:
        why = dict.fromkeys(asked, "late")
    if not why and not isinstance(results, dict):
        why = dict.fromkeys(asked, "keylime:results-shape")
    if not why and not legacy and not isinstance(results.get("uuids", {}),
                                                 dict):
        why = dict.fromkeys(asked, "keylime:ambiguous-uuids")
    if not why:
        for name in asked:
            if legacy:
                agent = agent_legs.get(name)
                if agent is None:
                    why[name] = "keylime:agent-404"
                    continue
                if agent.transport:
                    why[name] = f"agent:{agent.transport}"
                    continue
                record, problem = keylime_envelope(agent.body, agent.depth)
                if problem:
                    why[name] = f"agent:{problem}"
                    continue
            elif name not in results:
                why[name] = "keylime:not-listed"
                continue
            else:
                record = results[name]
            problem = keylime_record_proof(record, now, ctx.max_age)
            if problem:
                why[name] = problem
    proven = frozenset(h for h in asked if h not in why)
    options = [("keylime", "api_version", api),
               ("keylime", "max_attestation_age", keylime_age),
               ("trusted_computing", "max_report_age", report_age)]
    clean = (blob_kind in SENDABLE_BLOBS and not legacy and
             all(item.clean for item in legs))
    return Example("keylime", asked, blob_kind, tuple(options),
                   tuple(legs) + tuple(agent_legs.values()), proven,
                   tuple(sorted(why.items())), clean, critical)


def _fan_out(legs: list[Leg], agent_legs: dict[str, Leg], draw: st.DrawFn
             ) -> tuple[list[Leg], dict[str, Leg]]:
    """Re-pace every leg to drip for 65-85 % of one deadline: each request
    is on time by itself, the exchange (two or more requests) is not."""
    share = draw(st.sampled_from([0.65, 0.75, 0.85])) * DEADLINE

    def slow(item: Leg) -> Leg:
        data = item.script.data
        if item.arrival is None or len(data) < 8:
            return item
        n = min(len(data) - 1, 30)
        pause = share / n
        writes = _cut(data, list(range(1, n + 1)), [pause] * n)
        writes[-1] = (writes[-1][0], 0.0)
        return dataclasses.replace(
            item, script=Script(tuple(writes), item.script.ending),
            arrival=sum(p for _, p in writes), clean=False,
            label=item.label + " fan-out")

    return ([slow(item) for item in legs],
            {n: slow(item) for n, item in agent_legs.items()})


@st.composite
def examples(draw: st.DrawFn, backend: str) -> Example:
    """One exchange for ``backend`` (``oat`` or ``keylime``), with its
    oracle."""
    plan = draw(plans(OAT_LAYERS if backend == "oat" else KEYLIME_LAYERS))
    asked = tuple(draw(st.lists(st.sampled_from(HOSTS), min_size=1,
                                max_size=3, unique=True)))
    if "blob" in plan:
        blob_kind = draw(st.sampled_from(["multiline", "nonlatin1"]))
    else:
        blob_kind = pick(draw, ["plain"], 8, ["latin1", "none"])
    max_age = draw(st.sampled_from([0, MAX_AGE]))
    if backend == "oat":
        return draw(oat_example(asked, blob_kind, max_age, plan))
    return draw(keylime_example(asked, blob_kind, max_age, plan))
