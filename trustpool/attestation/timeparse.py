# SPDX-License-Identifier: Apache-2.0
"""Parse the verification times attestation servers send.

OpenAttestation sends ISO 8601 with ``+0000`` offsets and milliseconds,
others ``Z`` or ``+hh:mm``, and Mt. Wilson the C locale's ``%c`` form
(``Tue Feb 14 09:02:48 2012``). Written by hand rather than with
``strptime`` because ``%a``/``%b`` follow the process locale;
``datetime.fromisoformat`` is the fast path, but only from Python 3.11 does
it read ``Z`` and ``+0000``.
"""

from __future__ import annotations

import datetime
import re

__all__ = ["parse_vtime"]

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})"
    r"(?:[.,](\d+))?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)
_MONTHS = {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = frozenset("mon tue wed thu fri sat sun".split())
_CTIME = re.compile(
    r"([A-Za-z]{3})\s+([A-Za-z]{3})\s+(\d{1,2})\s+"
    r"(\d{2}):(\d{2}):(\d{2})\s+(\d{4})"
)
_UTC = datetime.timezone.utc


def parse_vtime(text: str) -> datetime.datetime:
    """Return ``text`` as an aware UTC datetime.

    Times without an offset are taken as UTC, as OpenAttestation means them.

    :raises ValueError: when ``text`` is in none of the known forms, or
        names a time that does not exist or cannot be moved to UTC (year
        9999 at UTC-23:59 lies past the last year Python can hold).
    """
    try:
        return _parse(text)
    except (OverflowError, ArithmeticError) as exc:
        raise ValueError(f"time out of range: {str(text)[:64]!r}") from exc


def _parse(text: str) -> datetime.datetime:
    if not isinstance(text, str):
        raise ValueError(f"time is not a string: {text!r}")
    text = text.strip()
    match = _ISO.fullmatch(text)
    if match:
        try:
            # C-fast on Python 3.11+, which reads every form _ISO admits;
            # an answer for 10,000 hosts carries 10,000 of these.
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            return _from_iso(match)
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value.astimezone(_UTC)
    match = _CTIME.fullmatch(text)
    if match:
        return _from_ctime(match)
    raise ValueError(f"unrecognised time format: {text[:64]!r}")


def _from_iso(match: re.Match[str]) -> datetime.datetime:
    year, month, day, hour, minute, second = (
        int(g) for g in match.groups()[:6])
    fraction = match.group(7) or ""
    micro = int((fraction + "000000")[:6])
    offset = match.group(8)
    tz = _UTC
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        delta = datetime.timedelta(hours=int(digits[:2]),
                                   minutes=int(digits[2:]))
        if delta >= datetime.timedelta(hours=24):
            raise ValueError(f"offset out of range: {offset!r}")
        tz = datetime.timezone(sign * delta)
    value = datetime.datetime(year, month, day, hour, minute, second, micro,
                              tzinfo=tz)
    return value.astimezone(_UTC)


def _from_ctime(match: re.Match[str]) -> datetime.datetime:
    day_name, month_name, day, hour, minute, second, year = match.groups()
    if day_name.lower() not in _DAYS:
        raise ValueError(f"unknown day name: {day_name!r}")
    month = _MONTHS.get(month_name.lower())
    if month is None:
        raise ValueError(f"unknown month name: {month_name!r}")
    return datetime.datetime(int(year), month, int(day), int(hour),
                             int(minute), int(second), tzinfo=_UTC)
