# SPDX-License-Identifier: Apache-2.0
"""Keep a Placement trait on exactly the compute nodes attested trusted.

With the trait on trusted compute node providers, a flavor with
``trait:CUSTOM_TRUSTPOOL_TRUSTED=required`` lets Placement pre-filter in
SQL for every scheduler worker at once; TrustedFilter stays the last,
fresh check. The sync is fail-closed (a host that is untrusted, unknown, or
whose attestation failed loses the trait) and diff-based (only providers
whose state changes are written).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import re
import time
from typing import Any

from oslo_config import cfg

from trustpool.attestation import AttestationClient, HostReport, TrustLevel
from trustpool.exceptions import AttestationError, ConfigurationError
from trustpool.placement import PlacementAPI, PlacementError

__all__ = ["GROUP", "SyncResult", "list_opts", "register_opts", "sync"]

LOG = logging.getLogger(__name__)
GROUP = "trustpool_traits"
_TRAIT = re.compile(r"CUSTOM_[A-Z0-9_]{1,248}")

_opts = [
    cfg.StrOpt(
        "trait", default="CUSTOM_TRUSTPOOL_TRUSTED",
        help="Placement trait that 'trustpool sync-traits' keeps on the "
        "compute node providers attested trusted (a custom trait: "
        "CUSTOM_ followed by A-Z, 0-9 and _)."),
    cfg.BoolOpt(
        "sync_enabled", default=False,
        help="Set when 'trustpool sync-traits' runs for this cloud: "
        "TrustedFilter then warns, once per flavor, about trusted flavors "
        "that do not also require the trait (and so miss Placement's "
        "pre-filtering)."),
    cfg.StrOpt(
        "compute_provider_trait", default="COMPUTE_NODE",
        help="Only resource providers with this trait are synced; Nova puts "
        "COMPUTE_NODE on the compute node providers it creates, which are "
        "named by hypervisor host name."),
    cfg.IntOpt(
        "concurrency", default=8, min=1,
        help="Providers updated in parallel by sync-traits."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    if GROUP not in conf:
        conf.register_group(cfg.OptGroup(GROUP, title="Trust as a "
                                         "Placement trait"))
    conf.register_opts(_opts, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, list(_opts))]


def trait_name(conf: cfg.ConfigOpts) -> str:
    """The configured trait, validated.

    :raises ConfigurationError: when it is not a custom trait name.
    """
    register_opts(conf)
    trait = conf[GROUP].trait
    if not _TRAIT.fullmatch(trait or ""):
        raise ConfigurationError(
            "trait", f"{trait!r} is not a custom trait name "
            "(CUSTOM_ followed by A-Z, 0-9 and _)", group=GROUP)
    return trait


@dataclasses.dataclass
class SyncResult:
    seen: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: int = 0
    attestation_failed: str | None = None

    def summary(self) -> str:
        text = (f"sync-traits: {self.seen} providers seen, {self.added} "
                f"added, {self.removed} removed, {self.unchanged} "
                f"unchanged, {self.errors} errors")
        if self.attestation_failed:
            text += f" (attestation failed: {self.attestation_failed})"
        return text


def sync(conf: cfg.ConfigOpts, placement: PlacementAPI,
         client: AttestationClient) -> SyncResult:
    """One pass: attest every compute node in one batch, then fix traits.

    :raises PlacementError: when the providers cannot be listed.
    """
    register_opts(conf)
    group = conf[GROUP]
    trait = trait_name(conf)
    placement.ensure_trait(trait)
    providers = placement.providers(group.compute_provider_trait)
    carrying = {p["uuid"] for p in placement.providers(trait)}
    result = SyncResult(seen=len(providers))
    names = [p["name"] for p in providers]
    try:
        reports = client.attest_uncached(names) if names else {}
    except AttestationError as exc:
        # fail closed: nobody keeps the trait when nobody can be proven
        result.attestation_failed = str(exc)
        LOG.warning("sync-traits: attestation failed, removing %s from "
                    "every provider: %s", trait, exc)
        reports = {}
    changes = []
    for provider in providers:
        report = reports.get(provider["name"])
        want = report is not None and report.level is TrustLevel.TRUSTED
        has = provider["uuid"] in carrying
        if want == has:
            result.unchanged += 1
        else:
            changes.append((provider, want, report))

    def apply(change: tuple[dict[str, Any], bool, HostReport | None]
              ) -> tuple[bool, bool]:
        provider, want, report = change
        wrote = placement.set_trait(provider["uuid"], trait, want)
        reason = report.reason if report else (
            result.attestation_failed or "no attestation answer")
        LOG.info("sync-traits: %s %s %s (was %s; %s: %s)", provider["name"],
                 "gains" if want else "loses", trait,
                 "present" if not want else "absent",
                 report.level.value if report else "unknown", reason)
        return want, wrote

    with concurrent.futures.ThreadPoolExecutor(
            max_workers=group.concurrency) as pool:
        futures = {pool.submit(apply, c): c for c in changes}
        for future in concurrent.futures.as_completed(futures):
            provider = futures[future][0]
            try:
                want, wrote = future.result()
            except PlacementError as exc:
                result.errors += 1
                LOG.error("sync-traits: %s: %s", provider["name"], exc)
                continue
            if not wrote:
                result.unchanged += 1
            elif want:
                result.added += 1
            else:
                result.removed += 1
    LOG.info("%s", result.summary())
    return result


def run_forever(conf: cfg.ConfigOpts, placement: PlacementAPI,
                client: AttestationClient, interval: float,
                stop: Any = None) -> None:
    """Sync every ``interval`` seconds until ``stop`` (an Event) is set."""
    while True:
        started = time.monotonic()
        try:
            sync(conf, placement, client)
        except PlacementError as exc:
            LOG.error("sync-traits: %s", exc)
        wait = max(0.0, interval - (time.monotonic() - started))
        if stop is not None:
            if stop.wait(wait):
                return
        else:
            time.sleep(wait)
