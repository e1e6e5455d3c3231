# SPDX-License-Identifier: Apache-2.0
"""The event side of ``trustpool sync-traits --interval``: built from
``[trustpool_events]`` when ``listen`` is set, started beside the periodic
passes, and sharing one :class:`~trustpool.revocation.ledger.Ledger` with
them so that a pass never undoes an event with an older proof."""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import trait_sync
from trustpool.attestation.backends.keylime import AgentIds
from trustpool.exceptions import ConfigurationError
from trustpool.openstack import compute as compute_api
from trustpool.openstack.placement import PlacementAPI
from trustpool.revocation import options
from trustpool.revocation.handler import RevocationHandler
from trustpool.revocation.ledger import Ledger
from trustpool.revocation.message import SignatureCheck
from trustpool.revocation.observer import EventObserver
from trustpool.revocation.server import Limits, Listener

__all__ = ["EventService", "start"]

LOG = logging.getLogger(__name__)


class EventService:
    """A running listener, its handler and the ledger a pass must use."""

    def __init__(self, listener: Listener, handler: RevocationHandler,
                 ledger: Ledger) -> None:
        self.listener = listener
        self.handler = handler
        self.ledger = ledger

    @property
    def url(self) -> str:
        return self.listener.url

    def observe(self, observer: EventObserver | None) -> None:
        """Tell ``observer`` of every request from now on (the service's
        metrics); ``None`` stops."""
        self.listener.observer = observer

    def sync_pass(self) -> Callable[..., trait_sync.SyncResult]:
        """:func:`trustpool.trait_sync.sync` gated by this ledger, for
        ``run_forever(pass_=...)``."""
        return functools.partial(trait_sync.sync, gate=self.ledger)

    def stop(self) -> None:
        self.listener.stop()
        self.handler.close()


def start(conf: cfg.ConfigOpts, placement: PlacementAPI,
          compute: Any = None,
          on_revoked: Callable[[str, str | None, bool, str], None]
          | None = None) -> EventService | None:
    """Start the listener if ``[trustpool_events] listen`` is set.

    ``compute`` replaces the Nova API client built from
    ``[trustpool_nova]`` (tests); without credentials there, instances on
    a host that lost trust are not listed. ``on_revoked`` is told (host,
    event id, whether the signature was checked, the event's ``type``)
    after each host's trait removal (quarantine's
    :meth:`~trustpool.quarantine.Quarantine.after_revocation`).

    :raises ConfigurationError: on an option that cannot work, named.
    """
    address = options.listen_address(conf)
    if address is None:
        return None
    options.validate(conf)
    group = conf[options.GROUP]
    trait = tp_conf.trait_name(conf)
    agents = AgentIds(conf)
    check = None
    if group.revocation_cert_file:
        check = SignatureCheck(group.revocation_cert_file)
    tls = _tls(group)
    if compute is None:
        compute = _compute(conf)
    identity = tp_conf.host_identity(conf)
    if identity.needs_service_host and compute is None:
        raise ConfigurationError(
            "host_attribute", "'host' with [trustpool_events] listen: the "
            "compute node providers of a host named by an event are found "
            "only through the Nova API, and [trustpool_nova] has no "
            "credentials", group=tp_conf.GROUP)
    ledger = Ledger()
    handler = RevocationHandler(conf, placement, ledger, agents, trait,
                                compute, on_revoked)
    handler.prepare()
    limits = Limits(group.max_body_bytes, group.request_timeout,
                    group.max_connections)
    try:
        listener = Listener(address, handler, check, limits, tls)
    except OSError as exc:
        handler.close()
        raise ConfigurationError(
            "listen", f"cannot listen on {group.listen}: "
            f"{exc.strerror or type(exc).__name__}",
            group=options.GROUP) from None
    listener.start()
    if check is None:
        LOG.warning("revocation events on %s are accepted UNSIGNED "
                    "([trustpool_events] revocation_cert_file is not set): "
                    "anyone who can reach the listener can take trust "
                    "away from any host. Set it to the tenant's "
                    "RevocationNotifier-cert.crt.", listener.url)
    if tls is None:
        LOG.warning("revocation events on %s travel in plain text "
                    "([trustpool_events] allow_plain_http = True)",
                    listener.url)
    LOG.info("listening for Keylime revocation events on %s (signatures "
             "%s, client certificates %s)", listener.url,
             "checked" if check else "NOT checked",
             "required" if group.client_ca_file else "not required")
    return EventService(listener, handler, ledger)


def _tls(group: Any) -> ssl.SSLContext | None:
    if group.allow_plain_http:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(group.cert_file, group.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        # the reason only: never the key file's content
        raise ConfigurationError(
            "cert_file", f"cannot load {group.cert_file} (with key_file "
            f"{group.key_file or 'in the same file'}): "
            f"{getattr(exc, 'reason', None) or type(exc).__name__}",
            group=options.GROUP) from None
    if group.client_ca_file:
        try:
            context.load_verify_locations(group.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                "client_ca_file", f"cannot load {group.client_ca_file}: "
                f"{getattr(exc, 'reason', None) or type(exc).__name__}",
                group=options.GROUP) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _compute(conf: cfg.ConfigOpts) -> compute_api.ComputeAPI | None:
    try:
        return compute_api.ComputeAPI(compute_api.adapter_from_conf(conf))
    except ConfigurationError:
        LOG.info("no Nova API credentials in [%s]: a host that loses trust "
                 "by an event is not checked for running instances",
                 compute_api.GROUP)
        return None
