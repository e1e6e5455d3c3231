# SPDX-License-Identifier: Apache-2.0
"""Quarantine with dampening (issue 16): the long-running service disables
the nova-compute service of a host that keeps failing attestation, or at
once on a signed Keylime revocation, and re-enables it after a run of
trusted attestations; only ever services it disabled itself.

Off by default (``[trustpool_quarantine] enabled``). Modules, one job
each: :mod:`.options` (the option group), :mod:`.dampening` (the rule, pure
logic), :mod:`.service` (Nova, the audit events, the worker thread),
:mod:`.observer` (what the metrics are told).
"""

from __future__ import annotations

from trustpool.quarantine.options import list_opts, register_opts
from trustpool.quarantine.service import (
    REASON_PREFIX,
    Quarantine,
    is_ours,
    start,
)

__all__ = ["REASON_PREFIX", "Quarantine", "is_ours", "list_opts",
           "register_opts", "start"]
