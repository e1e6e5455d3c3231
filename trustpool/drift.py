# SPDX-License-Identifier: Apache-2.0
"""``trustpool audit``: running trusted workloads on hosts not trusted now.

Lists, through the Nova API, every instance whose flavor asks for
``trust:trusted_host=trusted`` and asks the attestation service (no cache)
about the hosts they run on. With ``--disable-untrusted-hosts`` it disables
the nova-compute service of each host attested ``untrusted`` so nothing
new lands there; it never touches running instances. Hosts that are only
``unknown`` are reported but not disabled: an attestation outage must not
empty a cloud.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool.attestation import EXTRA_SPEC, AttestationClient, TrustLevel
from trustpool.openstack.compute import ComputeAPI

__all__ = ["DISABLE_REASON", "drift", "instances_on"]

LOG = logging.getLogger(__name__)
DISABLE_REASON = "trustpool: host not trusted"


def drift(conf: cfg.ConfigOpts, compute: ComputeAPI,
          client: AttestationClient, disable: bool) -> dict[str, Any]:
    """The drift report; disables services when asked.

    :raises trustpool.exceptions.AttestationError: attestation failed.
    :raises trustpool.openstack.compute.NovaAPIError: the Nova API failed.
    """
    identity = tp_conf.host_identity(conf)
    trusted = [s for s in compute.servers()
               if ((s.get("flavor") or {}).get("extra_specs") or {}).get(
                   EXTRA_SPEC) == "trusted"]
    names = sorted({n for n in map(identity.name_of_server, trusted) if n})
    reports = client.attest_uncached(names) if names else {}
    rows = []
    for server in trusted:
        # the filter's name for the host (trustpool.attestation.identity);
        # without it there is nothing the filter could have asked about
        name = identity.name_of_server(server)
        report = reports.get(name) if name else None
        if report is not None and report.level is TrustLevel.TRUSTED:
            continue
        rows.append({"instance": server["id"], "name": server.get("name"),
                     "project_id": server.get("tenant_id"),
                     "host": server["OS-EXT-SRV-ATTR:host"],
                     "attested_name": name,
                     "level": (report.level.value if report is not None
                               else TrustLevel.UNKNOWN.value),
                     "reason": (report.reason if report is not None else
                                "the Nova API does not give its "
                                f"{identity.describe()}")})
    disabled = []
    if disable:
        hosts = sorted({r["host"] for r in rows if r["level"] ==
                        TrustLevel.UNTRUSTED.value})
        for host in hosts:
            service = compute.compute_service(host)
            if service is None:
                LOG.warning("No nova-compute service found for host %s",
                            host)
                continue
            if service.get("status") == "disabled":
                LOG.info("nova-compute on %s is already disabled (%s)",
                         host, service.get("disabled_reason"))
                continue
            compute.disable_service(service["id"], DISABLE_REASON)
            LOG.warning("Disabled nova-compute on %s: %s", host,
                        DISABLE_REASON)
            disabled.append(host)
    return {"schema_version": 1,
            "checked_instances": len(trusted),
            "checked_hosts": names,
            "drift": rows, "disabled_hosts": disabled}


def instances_on(conf: cfg.ConfigOpts, compute: ComputeAPI,
                 host: str) -> list[dict[str, Any]]:
    """The instances of trusted flavors running on the host whose
    attestation name is ``host``: the drift report for one host already
    known not to be trusted (a revocation event), so nothing is attested.

    :raises trustpool.openstack.compute.NovaAPIError: the Nova API failed.
    """
    identity = tp_conf.host_identity(conf)
    return [{"instance": s["id"], "name": s.get("name"),
             "project_id": s.get("tenant_id"),
             "host": s["OS-EXT-SRV-ATTR:host"]}
            for s in compute.servers()
            if ((s.get("flavor") or {}).get("extra_specs") or {}).get(
                EXTRA_SPEC) == "trusted"
            and identity.name_of_server(s) == host]
