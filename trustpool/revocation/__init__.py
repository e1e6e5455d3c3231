# SPDX-License-Identifier: Apache-2.0
"""Keylime revocation events: trust lost within a second, not a poll.

The long-running ``trustpool sync-traits --interval`` also listens for
the Keylime verifier's revocation webhook (``[trustpool_events] listen``).
A verified event for a mapped agent removes the trust trait from that
host's provider at once; it never adds anything. A periodic pass gives
the trait back only from an attestation that started after the event.

Modules, one job each: :mod:`.options` (the ``[trustpool_events]``
group), :mod:`.message` (reading and verifying one webhook body),
:mod:`.ledger` (revocation times shared with the periodic pass),
:mod:`.handler` (what an event does in Placement and the audit log),
:mod:`.server` (the bounded HTTPS listener), :mod:`.observer` (what the
listener tells the service's metrics, in fixed words), :mod:`.service`
(putting it together from the configuration).
"""

from __future__ import annotations

from trustpool.revocation.ledger import Ledger
from trustpool.revocation.options import list_opts, register_opts
from trustpool.revocation.service import EventService, start

__all__ = ["EventService", "Ledger", "list_opts", "register_opts", "start"]
