# SPDX-License-Identifier: Apache-2.0
"""What an attestation answer means for one host."""

from __future__ import annotations

import dataclasses
import datetime
import enum

__all__ = ["HostReport", "TrustLevel"]


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


@dataclasses.dataclass(frozen=True, slots=True)
class HostReport:
    """One host's attestation result, as the scheduler will act on it.

    ``vtime`` is when the server says it verified the host (timezone-aware,
    UTC), or ``None`` when the server gave no usable time. It is data for
    people and for an optional maximum-age check; it never extends how long
    the answer is trusted. ``reason`` is a short human sentence that ends up
    in the scheduler's log when a host is rejected.
    """

    hostname: str
    level: TrustLevel
    backend: str
    reason: str
    vtime: datetime.datetime | None = None

    def with_level(self, level: TrustLevel, reason: str) -> HostReport:
        """A copy with another level and reason, e.g. after an age check."""
        return dataclasses.replace(self, level=level, reason=reason)
