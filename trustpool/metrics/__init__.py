# SPDX-License-Identifier: Apache-2.0
"""Prometheus metrics: the service's ``/metrics`` and ``status --format
prometheus``.

This package is the only part of trustpool that imports
``prometheus_client`` (an import-linter contract keeps it so), and only
when asked: the ``trustpool`` command, the filter and the library work
without it. Install it with the ``metrics`` extra
(``pip install 'trustpool[metrics]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from oslo_config import cfg

from trustpool.attestation import AttestationClient, HostReport
from trustpool.conf import TRAIT_GROUP
from trustpool.exceptions import ConfigurationError

if TYPE_CHECKING:
    from trustpool.metrics.service import (
        QuarantineMetrics,
        RevocationMetrics,
    )

__all__ = ["missing", "serve", "status_exposition"]

_HINT = ("needs the prometheus_client package, which is not installed "
         "(pip install 'trustpool[metrics]')")


def missing() -> str | None:
    """Why metrics cannot be made here, or ``None`` when they can."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return f"Prometheus metrics {_HINT}"
    return None


def serve(conf: cfg.ConfigOpts, client: AttestationClient,
          one_pass: Callable[..., Any] | None = None,
          on_events: Callable[[RevocationMetrics], None] | None = None,
          on_quarantine: Callable[[QuarantineMetrics], None] | None = None
          ) -> Callable[..., Any] | None:
    """Start the ``[trustpool_traits] metrics_listen`` listener, if one is
    configured, and measure ``client`` for it.

    ``on_events``, when given (the Keylime event listener's ``observe``),
    is handed the observer that counts revocation events, and those
    metrics are exported too; ``on_quarantine`` likewise (is handed the
    observer that counts quarantine actions).

    :returns: ``one_pass`` (by default :func:`trustpool.trait_sync.sync`)
        measured, a drop-in that records each pass; or ``None`` when no
        listener is configured.
    :raises ConfigurationError: naming the option and its value, when the
        value is malformed, the address cannot be bound, or
        prometheus_client is missing.
    """
    value = conf[TRAIT_GROUP].metrics_listen
    if not value:
        return None
    if missing():
        raise ConfigurationError("metrics_listen", f"set to {value!r}, but "
                                 f"it {_HINT}", group=TRAIT_GROUP)
    from trustpool.metrics import listener, service

    metrics = service.ServiceMetrics()
    listener.start(value, listener.metrics_app(metrics.registry))
    client.observer = metrics.observe_attestation
    if on_events is not None:
        on_events(metrics.revocations())
    if on_quarantine is not None:
        on_quarantine(metrics.quarantine())
    return metrics.timed(one_pass)


def status_exposition(reports: Iterable[HostReport]) -> str:
    """The host gauges of ``reports`` in the text exposition format, for
    node_exporter's textfile collector."""
    from trustpool.metrics import textfile

    return textfile.render(reports)
