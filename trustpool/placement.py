# SPDX-License-Identifier: Apache-2.0
"""Placement access for ``trustpool sync-traits``.

Credentials come from nova.conf's own ``[placement]`` section (keystoneauth1
session, auth and adapter options), which every nova-scheduler host already
has. Only the operator command imports this module.
"""

from __future__ import annotations

import time
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from oslo_config import cfg

from trustpool import ksa
from trustpool.exceptions import TrustpoolError

__all__ = ["GROUP", "PlacementAPI", "PlacementError", "adapter_from_conf",
           "register_opts"]

GROUP = "placement"
#: 1.18: ?required= on GET /resource_providers; traits API since 1.6.
MICROVERSION = "1.18"
_RETRIES = 10


class PlacementError(TrustpoolError):
    """Placement could not be reached or refused a request."""


class GenerationConflict(PlacementError):
    """Someone else changed the provider; read again and retry."""


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Nova's ``[placement]`` keystoneauth options, when Nova has not."""
    ksa.register_opts(conf, GROUP, "placement")


def adapter_from_conf(conf: cfg.ConfigOpts) -> ks_adapter.Adapter:
    register_opts(conf)
    return ksa.adapter_from_conf(
        conf, GROUP, "sync-traits needs credentials for Placement (the "
        "same as nova-scheduler's)")


class PlacementAPI:
    """The Placement calls a trait sync needs."""

    def __init__(self, adapter: ks_adapter.Adapter) -> None:
        self._api = adapter

    def ensure_trait(self, trait: str) -> None:
        self._call("PUT", f"/traits/{trait}", ok=(201, 204))

    def providers(self, required: str) -> list[dict[str, Any]]:
        """Providers carrying trait ``required`` (name, uuid, generation)."""
        body = self._call("GET", f"/resource_providers?required={required}")
        return body.json()["resource_providers"]

    def traits(self, uuid: str) -> tuple[set[str], int]:
        body = self._call("GET", f"/resource_providers/{uuid}/traits").json()
        return set(body["traits"]), body["resource_provider_generation"]

    def put_traits(self, uuid: str, traits: set[str], generation: int) -> None:
        """Replace the provider's traits if nobody changed it meanwhile.

        :raises GenerationConflict: on 409, and on the HTTP 500 "Another
            thread concurrently updated" Placement 16.0.0 returns for the
            same race.
        """
        response = self._api.request(
            f"/resource_providers/{uuid}/traits", "PUT",
            json={"traits": sorted(traits),
                  "resource_provider_generation": generation},
            microversion=MICROVERSION,
            microversion_service_type="placement", raise_exc=False)
        if response.status_code == 200:
            return
        if response.status_code == 409 or (
                response.status_code == 500
                and "concurrently updated" in response.text):
            raise GenerationConflict(f"provider {uuid} changed")
        raise PlacementError(
            f"Placement PUT /resource_providers/{uuid}/traits answered "
            f"{response.status_code}: {response.text[:200]}")

    def set_trait(self, uuid: str, trait: str, present: bool) -> bool:
        """Add or remove one trait, keeping every other; read-modify-write
        on the provider generation, retried on conflict.

        :returns: whether a write was needed.
        """
        for attempt in range(_RETRIES):
            traits, generation = self.traits(uuid)
            if (trait in traits) == present:
                return False
            wanted = traits | {trait} if present else traits - {trait}
            try:
                self.put_traits(uuid, wanted, generation)
                return True
            except GenerationConflict:
                time.sleep(0.01 * (attempt + 1))
        raise PlacementError(f"provider {uuid} kept changing; gave up "
                             f"after {_RETRIES} attempts")

    def _call(self, method: str, url: str, ok: tuple[int, ...] = (200,),
              **kwargs: Any) -> Any:
        try:
            response = self._api.request(
                url, method, microversion=MICROVERSION,
                microversion_service_type="placement", raise_exc=False,
                **kwargs)
        except ks_exc.ClientException as exc:
            raise PlacementError(f"Placement {method} {url}: {exc}"
                                 ) from None
        if response.status_code not in ok:
            raise PlacementError(
                f"Placement {method} {url.split('?')[0]} answered "
                f"{response.status_code}: {response.text[:200]}")
        return response
