# SPDX-License-Identifier: Apache-2.0
"""Talking to the Nova API for ``trustpool audit`` and quarantine, the way
Nova talks to other services: a keystoneauth1 session and adapter built from
the ``[trustpool_nova]`` group (``auth_type``, ``auth_url``, ``username``, ...,
``valid_interfaces``, ``region_name``), so operators reuse credentials they
already have. Only the operator command imports this module.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from trustpool.attestation.identity import ComputeNode
from trustpool.exceptions import TrustpoolError
from trustpool.openstack import session

__all__ = ["GROUP", "ComputeAPI", "NovaAPIError", "UnavailableComputeAPI",
           "adapter_from_conf", "list_opts", "register_opts"]

GROUP = "trustpool_nova"
#: 2.47: servers embed their flavor with extra specs; 2.53: services are
#: addressed by UUID and can be disabled with a reason in one call, and a
#: hypervisor's id is its compute node uuid (= its resource provider's).
MICROVERSION = "2.53"
_PAGE = 500
#: pages of hypervisors at most (a million compute nodes at _PAGE = 500)
_MAX_PAGES = 2000


class NovaAPIError(TrustpoolError):
    """The Nova API could not be reached or refused a request."""


def _group() -> cfg.OptGroup:
    return cfg.OptGroup(
        GROUP, title="Nova API access for trustpool audit",
        help="Credentials and endpoint selection (keystoneauth1) that the "
        "'trustpool audit' command uses to list instances and disable "
        "compute services, and that 'trustpool sync-traits' uses to list "
        "hypervisors when [trusted_computing] host_attribute = host. "
        "Needs an admin role.")


def register_opts(conf: cfg.ConfigOpts) -> None:
    if GROUP not in conf:
        conf.register_group(_group())
    session.register_opts(conf, GROUP, "compute")


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    opts = (session.session_opts()
            + ks_loading.get_auth_common_conf_options()
            + ks_loading.get_auth_plugin_conf_options("password")
            + ks_loading.get_adapter_conf_options(include_deprecated=False))
    return [(_group(), opts)]


def adapter_from_conf(conf: cfg.ConfigOpts,
                      why: str = "trustpool audit needs credentials for "
                      "the Nova API") -> ks_adapter.Adapter:
    """A compute-API adapter from ``[trustpool_nova]``.

    :raises ConfigurationError: when no credentials are configured; the
        message says ``why`` they are needed.
    """
    register_opts(conf)
    return session.adapter_from_conf(conf, GROUP, why)


class ComputeAPI:
    """The few compute API calls the drift report needs."""

    def __init__(self, adapter: ks_adapter.Adapter) -> None:
        self._api = adapter

    def servers(self) -> Iterator[dict[str, Any]]:
        """Every server of every project that has a compute host."""
        marker = None
        markers: set[str] = set()
        while True:
            query = f"/servers/detail?all_tenants=1&limit={_PAGE}"
            if marker:
                query += f"&marker={marker}"
            page = self._get(query).get("servers", [])
            for server in page:
                if server.get("OS-EXT-SRV-ATTR:host"):
                    yield server
            if len(page) < _PAGE:
                return
            marker = _next_marker("/servers/detail", page[-1].get("id"),
                                  markers)

    def compute_nodes(self) -> list[ComputeNode]:
        """Every compute node with its service host, from the hypervisors
        list (admin).

        :raises NovaAPIError: also when a record lacks its uuid, its
            hypervisor host name or its service host: a caller naming
            hosts never acts on half an answer.
        """
        nodes: list[ComputeNode] = []
        marker = None
        markers: set[str] = set()
        while True:
            query = f"/os-hypervisors/detail?limit={_PAGE}"
            if marker:
                query += f"&marker={marker}"
            body = self._get(query)
            page = body.get("hypervisors") if isinstance(body, dict) \
                else None
            if not isinstance(page, list):
                raise NovaAPIError("Nova API GET /os-hypervisors/detail: "
                                   "no list of hypervisors")
            for record in page:
                nodes.append(_compute_node(record))
            if len(page) < _PAGE:
                return nodes
            marker = _next_marker("/os-hypervisors/detail", nodes[-1].uuid,
                                  markers)

    def server(self, server_id: str) -> dict[str, Any] | None:
        """One server by id (``trustpool explain``); ``None`` if Nova does
        not know it (deleted, or never created)."""
        url = f"/servers/{server_id}"
        try:
            response = self._api.request(
                url, "GET", microversion=MICROVERSION,
                microversion_service_type="compute", raise_exc=False)
        except ks_exc.ClientException as exc:
            raise NovaAPIError(f"Nova API GET /servers: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise NovaAPIError(f"Nova API GET /servers/{server_id}: HTTP "
                               f"{response.status_code}")
        return response.json().get("server")

    def compute_service(self, host: str) -> dict[str, Any] | None:
        """The one nova-compute service of ``host``; ``None`` if Nova
        lists none. Records for another host or binary are not taken for
        it (a Nova or proxy that ignores the filter).

        :raises NovaAPIError: when the answer is no list, when it names
            more than one distinct service for the host (which one to act
            on is a guess, and one may be an operator's), or when the
            service has no id or no status.
        """
        query = urllib.parse.urlencode({"binary": "nova-compute",
                                        "host": host})
        body = self._get(f"/os-services?{query}")
        services = body.get("services") if isinstance(body, dict) else None
        if not isinstance(services, list):
            raise NovaAPIError("Nova API GET /os-services: no list of "
                               "services")
        found: list[dict[str, Any]] = []
        for record in services:
            if isinstance(record, dict) and record.get("host") == host \
                    and record.get("binary") == "nova-compute" \
                    and record not in found:
                found.append(record)
        if not found:
            return None
        if len(found) > 1:
            raise NovaAPIError(
                f"Nova API GET /os-services: {len(found)} different "
                "nova-compute services listed for this host")
        record = found[0]
        if not (isinstance(record.get("id"), str) and record["id"]
                and record.get("status") in ("enabled", "disabled")):
            raise NovaAPIError("Nova API GET /os-services: the service has "
                               "no id or no status")
        return record

    def compute_services(self) -> list[dict[str, Any]]:
        """Every nova-compute service (quarantine's start-up scan)."""
        services = self._get("/os-services?binary=nova-compute").get(
            "services")
        if not isinstance(services, list):
            raise NovaAPIError("Nova API GET /os-services: no list of "
                               "services")
        return [s for s in services if isinstance(s, dict)]

    def disable_service(self, service_id: str, reason: str) -> None:
        self._call("PUT", _service_url(service_id),
                   json={"status": "disabled", "disabled_reason": reason})

    def enable_service(self, service_id: str) -> None:
        """Enable a service; Nova clears its disabled_reason."""
        self._call("PUT", _service_url(service_id),
                   json={"status": "enabled"})

    def _get(self, url: str) -> dict[str, Any]:
        return self._call("GET", url).json()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            return self._api.request(
                url, method, microversion=MICROVERSION,
                microversion_service_type="compute",
                raise_exc=True, **kwargs)
        except ks_exc.ClientException as exc:
            raise NovaAPIError(f"Nova API {method} {url.split('?')[0]}: "
                               f"{exc}") from None


class UnavailableComputeAPI:
    """Stands for a Nova API that could not be set up (no credentials, a
    bad option): every call raises :class:`NovaAPIError` saying why, so
    the caller fails the way it fails when the API is down."""

    def __init__(self, why: str) -> None:
        self.why = why

    def compute_nodes(self) -> list[ComputeNode]:
        raise NovaAPIError(self.why)


def _next_marker(path: str, marker: Any, markers: set[str]) -> str:
    """The marker for the page after a full one. A marker given before
    (Nova answered the same page again), one that is not a string, or more
    pages than any cloud has: the paging would never end, so it stops
    with an error."""
    if not isinstance(marker, str) or not marker or marker in markers \
            or len(markers) >= _MAX_PAGES:
        raise NovaAPIError(
            f"Nova API GET {path}: the pages do not end (after "
            f"{len(markers) + 1} page(s), no new marker)")
    markers.add(marker)
    return marker


def _compute_node(record: Any) -> ComputeNode:
    fields: dict[str, Any] = record if isinstance(record, dict) else {}
    service = fields.get("service")
    uuid, name, host = (fields.get("id"), fields.get("hypervisor_hostname"),
                        service.get("host") if isinstance(service, dict)
                        else None)
    if not (isinstance(uuid, str) and uuid and isinstance(name, str)
            and name and isinstance(host, str) and host):
        raise NovaAPIError("Nova API GET /os-hypervisors/detail: a "
                           "hypervisor without a uuid, a hypervisor_hostname "
                           "or a service host")
    return ComputeNode(uuid=uuid, hypervisor_hostname=name,
                       service_host=host)


def _service_url(service_id: str) -> str:
    """``/os-services/{id}`` with the id as one quoted path segment: an
    id as Nova (or whatever answered for it) sent it can name no other
    resource of the API."""
    return f"/os-services/{urllib.parse.quote(str(service_id), safe='')}"
