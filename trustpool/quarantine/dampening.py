# SPDX-License-Identifier: Apache-2.0
"""The dampening rule of quarantine, as pure logic: which verdicts in a
row call for disabling or re-enabling a host's nova-compute service.

No I/O, no clock, no Nova: :class:`Dampener` is told what each pass and
each revocation said about a service host, and answers what is due. The
caller acts on Nova, and tells the dampener what Nova now says
(:meth:`Dampener.quarantined`, :meth:`Dampener.released`). An action that
failed is simply due again at the next verdict that calls for it.

What "in a row" means:

- ``untrusted`` adds one to the untrusted run and ends the trusted run;
- ``trusted`` adds one to the trusted run and ends the untrusted run;
- ``unknown`` (the attestation service could not vouch: an outage, a
  pending agent, a failed pass) is no verdict about the host. It never
  counts toward a quarantine, and it ends the trusted run: a release needs
  ``trusted_passes`` trusted answers with no doubt between them (fail
  closed). It does not end an untrusted run either: an outage between two
  untrusted answers does not make the host any better.
- a revocation ends the trusted run and, when revocations quarantine,
  calls for quarantine at once.

A quarantine is due while the host is not quarantined and its untrusted
run has reached ``untrusted_passes``; a release while it is quarantined
(by trustpool: the caller only marks a host quarantined when Nova shows
trustpool's own reason) and its trusted run has reached
``trusted_passes``.
"""

from __future__ import annotations

import dataclasses
import enum

from trustpool.attestation.model import TrustLevel

__all__ = ["Due", "Dampener", "HostRuns", "TRIGGERS", "worst"]

#: why an action is due, the words of the audit events' ``trigger``
UNTRUSTED_RUN = "untrusted_attestations"
TRUSTED_RUN = "trusted_attestations"
REVOCATION = "revocation"
TRIGGERS = (REVOCATION, UNTRUSTED_RUN, TRUSTED_RUN)


class Kind(enum.Enum):
    QUARANTINE = "quarantine"
    RELEASE = "release"


@dataclasses.dataclass(frozen=True)
class Due:
    """An action due for ``host``: ``kind``, ``trigger`` (one of
    :data:`TRIGGERS`) and ``passes``, the length of the run that made it
    due (0 for a revocation)."""

    host: str
    kind: Kind
    trigger: str
    passes: int


@dataclasses.dataclass
class HostRuns:
    """One service host's runs and whether trustpool holds it."""

    untrusted: int = 0
    trusted: int = 0
    quarantined: bool = False
    #: a signed revocation called for quarantine and it is not done yet
    #: (Nova failed): due again at the next untrusted pass; the event id
    revoked: bool = False
    revocation_id: str | None = None


def worst(levels: list[TrustLevel]) -> TrustLevel:
    """The level of a service host from those of its compute nodes: one
    untrusted node makes it untrusted (disabling the service is the only
    way to keep new work off that node); it is trusted only when every
    node is; otherwise unknown. No node at all: unknown."""
    if TrustLevel.UNTRUSTED in levels:
        return TrustLevel.UNTRUSTED
    if levels and all(level is TrustLevel.TRUSTED for level in levels):
        return TrustLevel.TRUSTED
    return TrustLevel.UNKNOWN


class Dampener:
    """Per service host runs of verdicts; not thread-safe (one worker
    owns it)."""

    def __init__(self, untrusted_passes: int, trusted_passes: int,
                 on_revocation: bool = True) -> None:
        if untrusted_passes < 1 or trusted_passes < 1:
            raise ValueError("untrusted_passes and trusted_passes must be "
                             "at least 1")
        self.untrusted_passes = untrusted_passes
        self.trusted_passes = trusted_passes
        self.on_revocation = on_revocation
        self._hosts: dict[str, HostRuns] = {}

    def runs(self, host: str) -> HostRuns:
        """A copy of ``host``'s state (a fresh one if never seen)."""
        return dataclasses.replace(self._hosts.get(host, HostRuns()))

    def _runs(self, host: str) -> HostRuns:
        return self._hosts.setdefault(host, HostRuns())

    def observe(self, host: str, level: TrustLevel) -> Due | None:
        """One periodic attestation's level for ``host``; what is due now.
        Anything but :class:`TrustLevel` ``TRUSTED`` or ``UNTRUSTED`` is
        taken as unknown."""
        runs = self._runs(host)
        if level is TrustLevel.UNTRUSTED:
            runs.untrusted += 1
            runs.trusted = 0
        elif level is TrustLevel.TRUSTED:
            runs.trusted += 1
            runs.untrusted = 0
            runs.revoked = False  # attested good since: no longer due
        else:
            runs.trusted = 0
            return None
        return self._due(host, runs)

    def revoked(self, host: str, event_id: str | None = None
                ) -> Due | None:
        """A verified revocation event for ``host``. The quarantine it
        calls for stays due at each untrusted pass until it is done (or a
        trusted pass comes)."""
        runs = self._runs(host)
        runs.trusted = 0
        if not self.on_revocation:
            return None
        # kept while held too: if the hold turns out to be gone (someone
        # re-enabled the service), the revocation is still due
        runs.revoked, runs.revocation_id = True, event_id
        if not runs.quarantined:
            return Due(host, Kind.QUARANTINE, REVOCATION, 0)
        return None

    def let_go(self, host: str) -> None:
        """``host``'s service is not trustpool's any more though it held
        it (someone else re-enabled or re-labelled it): the runs start
        again, but a signed revocation not yet followed by a trusted
        attestation is still due."""
        runs = self._runs(host)
        self._hosts[host] = HostRuns(revoked=runs.revoked,
                                     revocation_id=runs.revocation_id)

    def _due(self, host: str, runs: HostRuns) -> Due | None:
        if not runs.quarantined and runs.revoked:
            return Due(host, Kind.QUARANTINE, REVOCATION, 0)
        if not runs.quarantined and runs.untrusted >= self.untrusted_passes:
            return Due(host, Kind.QUARANTINE, UNTRUSTED_RUN, runs.untrusted)
        if runs.quarantined and runs.trusted >= self.trusted_passes:
            return Due(host, Kind.RELEASE, TRUSTED_RUN, runs.trusted)
        return None

    def quarantined(self, host: str) -> None:
        """Nova shows ``host``'s service disabled with trustpool's reason
        (trustpool just did it, or found it so at start-up). A trusted run
        starts from nothing: only attestations after this count."""
        runs = self._runs(host)
        runs.quarantined = True
        runs.trusted = 0
        runs.revoked, runs.revocation_id = False, None

    def released(self, host: str) -> None:
        """``host``'s service is no longer trustpool's to hold: trustpool
        re-enabled it, or someone else re-enabled or re-labelled it. The
        runs start again: an untrusted host needs a full run again."""
        self._hosts[host] = HostRuns()

    def forget_idle(self, host: str) -> None:
        """Drop ``host``'s state when there is nothing in it (no run, not
        held, nothing due): a host gone from the passes costs nothing."""
        if self._hosts.get(host) == HostRuns():
            del self._hosts[host]

    def hosts(self) -> list[str]:
        """Every service host with a state, sorted."""
        return sorted(self._hosts)

    def held(self) -> list[str]:
        """The hosts trustpool holds in quarantine, sorted."""
        return sorted(h for h, r in self._hosts.items() if r.quarantined)
