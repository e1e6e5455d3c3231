# SPDX-License-Identifier: Apache-2.0
"""What an attestation answer means for one host."""

from __future__ import annotations

import datetime
import enum
import functools
from typing import NamedTuple

from trustpool.attestation.timeparse import parse_vtime

__all__ = ["EXTRA_SPEC", "MAX_CLOCK_SKEW", "HostReport", "TrustLevel", "fold"]

#: The flavor extra spec whose value is a :class:`TrustLevel`: the key
#: Nova's old in-tree filter read, kept beside the levels it names so the
#: filter, the API validator and the drift report share one definition.
EXTRA_SPEC = "trust:trusted_host"

#: The most an attestation server's clock may run ahead of ours, capped
#: further by the age limit in force (max_report_age, or Keylime's
#: max_attestation_age). A time ahead by S seconds keeps an answer looking
#: fresh for the limit + S, so S must be small next to the limit; 60 s is
#: far more than NTP-kept clocks disagree by, and small enough that a
#: stopped attestation is not vouched for much past the operator's limit.
MAX_CLOCK_SKEW = 60.0


class TrustLevel(str, enum.Enum):
    """The three answers a flavor's ``trust:trusted_host`` can ask for.

    A ``str`` subclass so that ``TrustLevel.TRUSTED == "trusted"`` and the
    value can be compared with an extra spec or written to JSON as is.
    """

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class HostReport(NamedTuple):
    """One host's attestation result, as the scheduler will act on it.

    A named tuple because a scheduler keeps one per host: 100,000 of them
    are built from one answer and cached, and a tuple is the cheapest
    immutable record Python has to build and to hold.

    ``vtime_text`` is when the server says it verified the host, exactly as
    the server wrote it, or ``None``; :attr:`vtime` parses it on demand. It
    is data for people and for an optional maximum-age check; it never
    extends how long the answer is trusted. ``reason`` is a short human
    sentence that ends up in the scheduler's log when a host is rejected.
    """

    hostname: str
    level: TrustLevel
    backend: str
    reason: str
    vtime_text: str | None = None

    @property
    def vtime(self) -> datetime.datetime | None:
        """The server's time as aware UTC; ``None`` if absent or unusable."""
        if not self.vtime_text:
            return None
        try:
            return _parse_cached(self.vtime_text)
        except Exception:  # noqa: BLE001 - unreadable is all that matters
            return None

    def with_level(self, level: TrustLevel, reason: str) -> HostReport:
        """A copy with another level and reason, e.g. after an age check."""
        return self._replace(level=level, reason=reason)


@functools.lru_cache(maxsize=1 << 17)
def _parse_cached(text: str) -> datetime.datetime:
    return parse_vtime(text)


def fold(word: str) -> str:
    """A level word as a service sent it, in the one form that is compared:
    surrounding spaces and tabs dropped, ASCII letters lower-cased.

    ASCII only on purpose: Unicode case and space rules would read
    ``"\u2003trusted"`` or ``"TRUS\u0054ED"``-style look-alikes as a level
    nobody sent; anything non-ASCII stays itself and matches no level.
    """
    stripped = word.strip(" \t")
    return stripped.lower() if stripped.isascii() else stripped
