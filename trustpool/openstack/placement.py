# SPDX-License-Identifier: Apache-2.0
"""Placement access for ``trustpool sync-traits``.

Credentials come from nova.conf's own ``[placement]`` section (keystoneauth1
session, auth and adapter options), which every nova-scheduler host already
has. Only the operator command imports this module.

Every call raises :class:`PlacementError` and nothing else: the sync pass
decides what a failure means (remove, never keep), and it can only do that
for failures it is told about in one type. A keystoneauth exception of any
kind, a requests error keystoneauth did not wrap, and an answer whose body
is not the shape the API reference documents are all the same thing to the
sync: Placement did not give a usable answer.
"""

from __future__ import annotations

import time
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from oslo_config import cfg

from trustpool.exceptions import TrustpoolError
from trustpool.openstack import session

__all__ = ["GROUP", "PlacementAPI", "PlacementError", "ProviderGone",
           "adapter_from_conf", "register_opts"]

GROUP = "placement"
#: 1.18: ?required= on GET /resource_providers; traits API since 1.6;
#: parent_provider_uuid in provider records since 1.14.
MICROVERSION = "1.18"
_RETRIES = 10
#: How much of an error body a message quotes.
_QUOTE = 200


class PlacementError(TrustpoolError):
    """Placement could not be reached, refused a request, or answered
    something that is not a Placement answer."""


class GenerationConflict(PlacementError):
    """Someone else changed the provider; read again and retry."""


class ProviderGone(PlacementError):
    """The provider was deleted (404) since it was listed."""


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Nova's ``[placement]`` keystoneauth options, when Nova has not."""
    session.register_opts(conf, GROUP, "placement")


def adapter_from_conf(conf: cfg.ConfigOpts) -> ks_adapter.Adapter:
    register_opts(conf)
    return session.adapter_from_conf(
        conf, GROUP, "sync-traits needs credentials for Placement (the "
        "same as nova-scheduler's)")


class PlacementAPI:
    """The Placement calls a trait sync needs."""

    def __init__(self, adapter: ks_adapter.Adapter) -> None:
        self._api = adapter

    def ensure_trait(self, trait: str) -> None:
        """Create the custom trait if it does not exist yet."""
        self._call("PUT", f"/traits/{trait}", ok=(201, 204))

    def providers(self, required: str,
                  name: str | None = None) -> list[dict[str, Any]]:
        """Every provider carrying trait ``required``, nested and sharing
        ones included: the records as Placement gives them, each with at
        least a string ``uuid`` and ``name`` and a ``parent_provider_uuid``
        (``None`` for a root). With ``name``, only the provider of that
        name (Placement names are unique), if it carries the trait.

        :raises PlacementError: also when the body is not a list of such
            records, so that the caller never acts on half an answer.
        """
        params = {"required": required}
        if name is not None:
            params["name"] = name
        response = self._call("GET", "/resource_providers", params=params)
        body = self._json("GET", "/resource_providers", response)
        records = body.get("resource_providers") if isinstance(
            body, dict) else None
        if not isinstance(records, list) or not all(
                isinstance(r, dict) and isinstance(r.get("uuid"), str)
                and isinstance(r.get("name"), str)
                # 1.14+: None for a root, which is what a compute node is
                and "parent_provider_uuid" in r for r in records):
            raise PlacementError(
                "Placement GET /resource_providers: not a list of "
                "providers with a uuid, a name and a parent")
        return records

    def traits(self, uuid: str) -> tuple[set[str], int]:
        """The provider's traits and its generation.

        :raises ProviderGone: when the provider no longer exists.
        """
        url = f"/resource_providers/{uuid}/traits"
        response = self._call("GET", url, ok=(200, 404))
        if response.status_code == 404:
            raise ProviderGone(f"provider {uuid} no longer exists")
        body = self._json("GET", url, response)
        traits = body.get("traits") if isinstance(body, dict) else None
        generation = (body.get("resource_provider_generation")
                      if isinstance(body, dict) else None)
        if (not isinstance(traits, list)
                or not all(isinstance(t, str) for t in traits)
                # bool is an int subclass; a generation never is one
                or type(generation) is not int):
            raise PlacementError(f"Placement GET {url}: not a list of "
                                 "traits with a generation")
        return set(traits), generation

    def put_traits(self, uuid: str, traits: set[str], generation: int) -> None:
        """Replace the provider's traits if nobody changed it meanwhile.

        :raises GenerationConflict: on 409, and on the HTTP 500 "Another
            thread concurrently updated" Placement 16.0.0 returns for the
            same race.
        :raises ProviderGone: when the provider no longer exists.
        :raises PlacementError: on any other failure.
        """
        url = f"/resource_providers/{uuid}/traits"
        response = self._call(
            "PUT", url, ok=(200, 404, 409, 500),
            json={"traits": sorted(traits),
                  "resource_provider_generation": generation})
        status = response.status_code
        if status == 200:
            return
        if status == 404:
            raise ProviderGone(f"provider {uuid} no longer exists")
        text = _text(response)
        if status == 409 or "concurrently updated" in text:
            raise GenerationConflict(f"provider {uuid} changed")
        raise PlacementError(f"Placement PUT {url} answered {status}: "
                             f"{text[:_QUOTE]}")

    def set_trait(self, uuid: str, trait: str, present: bool) -> bool:
        """Add or remove one trait, keeping every other; read-modify-write
        on the provider generation, retried on conflict.

        A provider deleted meanwhile carries no trait, so removing from it
        is done, not failed; adding to it is a failure.

        :returns: whether a write was needed.
        :raises PlacementError: when the write could not be made.
        """
        for attempt in range(_RETRIES):
            try:
                traits, generation = self.traits(uuid)
                if (trait in traits) == present:
                    return False
                wanted = traits | {trait} if present else traits - {trait}
                self.put_traits(uuid, wanted, generation)
                return True
            except ProviderGone:
                if present:
                    raise
                return False
            except GenerationConflict:
                time.sleep(0.01 * (attempt + 1))
        raise PlacementError(f"provider {uuid} kept changing; gave up "
                             f"after {_RETRIES} attempts")

    def _call(self, method: str, url: str, ok: tuple[int, ...] = (200,),
              **kwargs: Any) -> Any:
        """One request; any failure to get a response with an expected
        status becomes :class:`PlacementError`.

        Not only keystoneauth's ClientException: keystoneauth wraps the
        requests errors it knows, but a body cut short while it is read, a
        discovery mismatch (a ValueError) or a plugin's own exception
        would otherwise leave this module under another name.
        """
        try:
            response = self._api.request(
                url, method, microversion=MICROVERSION,
                microversion_service_type="placement", raise_exc=False,
                **kwargs)
            status = response.status_code
        except Exception as exc:  # noqa: BLE001 - one type out, see above
            raise PlacementError(
                f"Placement {method} {url}: {type(exc).__name__}: "
                f"{_describe(exc)}") from None
        if status not in ok:
            raise PlacementError(
                f"Placement {method} {url} answered {status}: "
                f"{_text(response)[:_QUOTE]}")
        return response

    @staticmethod
    def _json(method: str, url: str, response: Any) -> Any:
        try:
            return response.json()
        except Exception as exc:  # noqa: BLE001 - RecursionError included
            raise PlacementError(
                f"Placement {method} {url}: not JSON ({type(exc).__name__})"
            ) from None


def _text(response: Any) -> str:
    """The body as text for a message; never raises."""
    try:
        return str(response.text)
    except Exception:  # noqa: BLE001 - a message must still come out
        return "<unreadable body>"


def _describe(exc: BaseException) -> str:
    try:
        return " ".join(str(exc).split())[:_QUOTE * 2]
    except Exception:  # noqa: BLE001 - a broken __str__ says nothing
        return "<unprintable>"
