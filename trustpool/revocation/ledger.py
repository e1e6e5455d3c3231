# SPDX-License-Identifier: Apache-2.0
"""When each host last lost trust by an event, so no stale proof undoes it.

The invariant (the periodic pass and the event receiver share one
:class:`Ledger` in one service process):

    The trust trait is never added to a host on the strength of an
    attestation that started before the last revocation event received
    for that host.

A periodic pass takes minutes on a large cloud; an event that arrives
while its attestation is in flight, for a host the attestation still saw
trusted, must win. Both sides take the same per-host lock: the receiver
records the event's time and removes the trait while holding it; the pass
checks the time and adds the trait while holding it. Whichever comes
second sees what the first did: an add before the event is undone by the
event's removal, an add after it is refused.

Times are the service's monotonic clock, never a verifier's or a host's.
Memory stays bounded: a record older than the attestation of the pass
before the current one can no longer refuse anything and is dropped (the
service runs one pass at a time).
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Callable, Iterator

__all__ = ["Ledger"]

_STRIPES = 64


class Ledger:
    """Per-host revocation times and the locks that order them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._revoked: dict[str, float] = {}
        # striped: a bounded set of locks for any number of host names
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._previous_start: float | None = None

    def _stripe(self, host: str) -> threading.Lock:
        return self._stripes[zlib.crc32(host.encode("utf-8", "replace"))
                             % _STRIPES]

    @contextlib.contextmanager
    def revoking(self, host: str) -> Iterator[float]:
        """Hold ``host``'s lock while its trust is taken away; the event's
        time is recorded first, so an add that waits on the lock is
        refused. Yields that time."""
        with self._stripe(host):
            now = self._clock()
            with self._lock:
                self._revoked[host] = max(now, self._revoked.get(host, now))
            yield now

    def attestation_started(self) -> float:
        """A pass is about to attest: the time to pass to :meth:`adding`
        for its hosts. Forgets records no pass can need any more."""
        now = self._clock()
        with self._lock:
            cutoff = self._previous_start
            if cutoff is not None:
                self._revoked = {h: t for h, t in self._revoked.items()
                                 if t >= cutoff}
            self._previous_start = now
        return now

    @contextlib.contextmanager
    def adding(self, host: str, attested_at: float | None
               ) -> Iterator[bool]:
        """Hold ``host``'s lock while the trait is added; yields whether
        an attestation that started at ``attested_at`` may add it (not if
        a revocation for ``host`` was received at or after that time, or
        if the time is unknown)."""
        with self._stripe(host):
            with self._lock:
                revoked = self._revoked.get(host)
            yield attested_at is not None and (
                revoked is None or revoked < attested_at)

    def last_revoked(self, host: str) -> float | None:
        """When ``host`` last lost trust by an event (tests, logs)."""
        with self._lock:
            return self._revoked.get(host)
