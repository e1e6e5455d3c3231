# SPDX-License-Identifier: Apache-2.0
"""What quarantine tells an observer (the service's Prometheus metrics),
in words from one fixed set, so that whoever counts needs neither this
package nor Nova."""

from __future__ import annotations

from typing import Protocol

__all__ = ["ACTIONS", "QuarantineObserver"]

#: a service was disabled; a service trustpool disabled was re-enabled; a
#: due action was left undone because someone else owns the service; a
#: due action failed (the Nova API failed or lists no such service)
ACTIONS = ("quarantine", "release", "skipped", "failed")


class QuarantineObserver(Protocol):
    """Implemented by :class:`trustpool.metrics.service.QuarantineMetrics`
    without importing this package."""

    def quarantine_action(self, action: str) -> None:
        """One action, one of :data:`ACTIONS`."""
