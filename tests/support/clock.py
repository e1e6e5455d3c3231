"""A hand-moved monotonic clock: expiry is tested without sleeping."""

from __future__ import annotations


class Clock:
    """Callable like ``time.monotonic``; moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
