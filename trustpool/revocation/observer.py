# SPDX-License-Identifier: Apache-2.0
"""The listener's hook for measuring: what it tells an observer, in words
from fixed sets, so that whoever counts (the service's Prometheus metrics)
needs neither this package nor the request.

The listener calls its observer once per request it answers and once per
connection it turns away before any answer; an observer that raises is
ignored, since measuring must not change an answer. No call carries text
from the request: the labels are the words below, chosen from the HTTP
status the listener answered, never from a reason string.
"""

from __future__ import annotations

from typing import Protocol

from trustpool.attestation.timeparse import parse_vtime

__all__ = ["OUTCOMES", "REFUSALS", "EventObserver", "latency",
           "outcome_of", "refusal_of", "verifier_timestamp"]

#: What became of a verified event: the trait was removed now; the host
#: already had none; the agent maps to no host; Placement did not confirm
#: (answered 5xx, Keylime retries).
OUTCOMES = ("removed", "no_trait", "unknown_agent", "failed")
#: Why a request was refused before it could act: no signature while a
#: certificate is configured (401), a signature that does not verify
#: (403), a body that is not Keylime's shape or not framed by a plain
#: Content-Length, or a request cut short (400, 411), a body over
#: ``max_body_bytes`` (413), a method other than POST (405, 501), and
#: anything else: a connection that failed its TLS handshake or client
#: certificate check, was reset, found every slot busy, or met an internal
#: error (500).
REFUSALS = ("unsigned", "bad_signature", "malformed", "too_large",
            "method", "other")

_BY_STATUS = {401: "unsigned", 403: "bad_signature", 400: "malformed",
              411: "malformed", 414: "malformed", 431: "malformed",
              413: "too_large", 405: "method", 501: "method"}
_BY_WORD = {"removed": "removed", "no-trait": "no_trait",
            "unknown-agent": "unknown_agent"}
#: A verifier clock ahead of ours by up to this much still gives a
#: latency (of 0); further ahead, the figure would be fiction.
_SKEW = 1.0


class EventObserver(Protocol):
    """What the listener tells; :class:`trustpool.metrics` implements it
    without importing this package."""

    def revocation_event(self, outcome: str, received_at: float,
                         seconds: float, latency: float | None) -> None:
        """A verified event was answered.

        :param outcome: one of :data:`OUTCOMES`.
        :param received_at: Unix time the request was received.
        :param seconds: from receipt to the answer written.
        :param latency: from the verifier's time for the event to the
            moment the removal was confirmed by Placement; ``None`` when
            nothing was removed now or the verifier's time is unknown.
        """

    def revocation_refused(self, reason: str) -> None:
        """A request or connection was turned away; ``reason`` is one of
        :data:`REFUSALS`."""


def refusal_of(status: int) -> str:
    """The :data:`REFUSALS` word for an answer of HTTP ``status``."""
    return _BY_STATUS.get(status, "other")


def outcome_of(word: str) -> str:
    """The :data:`OUTCOMES` word for the handler's answer word."""
    return _BY_WORD.get(word, "failed")


def verifier_timestamp(text: str | None) -> float | None:
    """Unix time of a notification's ``event_time``, or ``None`` when it
    is absent or in no form known.

    Keylime 6.6 writes ``time.asctime()``: the verifier's local time in
    the C locale's form, with no zone, to the second. That form is read as
    this service's local time (verifier and service keep the same zone, as
    a fleet's servers do); an ISO 8601 time is read with its offset (UTC
    without one).
    """
    if not text:
        return None
    try:
        parsed = parse_vtime(text)
    except ValueError:
        return None
    if text.lstrip()[:1].isalpha():  # the asctime form: local, no zone
        parsed = parsed.replace(tzinfo=None)
        try:
            return parsed.timestamp()  # naive: the local zone
        except (OverflowError, OSError, ValueError):
            return None
    return parsed.timestamp()


def latency(event_time: float | None, done: float) -> float | None:
    """Seconds from ``event_time`` to ``done`` (both Unix times), or
    ``None`` when the verifier's clock is too far ahead to believe."""
    if event_time is None:
        return None
    seconds = done - event_time
    if seconds < -_SKEW:
        return None
    return max(0.0, seconds)
