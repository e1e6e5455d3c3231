# SPDX-License-Identifier: Apache-2.0
"""The Keylime verifier.

One ``GET /v{api}/agents/?bulk=True`` answers for every agent the verifier
watches; verifiers too old for ``bulk`` (before 5.8.2) are asked agent by
agent. Keylime knows agents, not host names: ``[keylime] agent_ids`` maps
hosts to agent ids explicitly, and ``agent_id_rule`` says what to do with
the others (by default, the agent id is the host name).

The verifier's record of an agent holds the agent's bootstrap key half
(``v``); nothing here logs a record or puts one in an exception.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from trustpool.attestation.backends._http import HttpSettings, JsonClient
from trustpool.attestation.backends.base import AttestationBackend
from trustpool.attestation.model import HostReport, TrustLevel
from trustpool.conf import GROUP as TC_GROUP
from trustpool.exceptions import AttestationError, ConfigurationError

__all__ = ["GROUP", "KeylimeBackend", "decide"]

LOG = logging.getLogger(__name__)
GROUP = "keylime"

_opts = [
    cfg.HostAddressOpt(
        "verifier_host",
        help="Host name or IP address of the Keylime verifier."),
    cfg.PortOpt(
        "verifier_port", default=8881, min=1,
        help="TCP port of the Keylime verifier."),
    cfg.StrOpt(
        "api_version", default="auto",
        help="Verifier REST API version, like '2.1'. 'auto' asks the "
        "verifier (GET /version) and uses the highest 2.x it supports."),
    cfg.StrOpt(
        "ca_file",
        help="PEM CA certificate(s) that signed the verifier's certificate "
        "(Keylime's own CA, usually cacert.crt of the verifier's TLS "
        "directory). When unset, the system's trusted CAs are used."),
    cfg.StrOpt(
        "client_cert_file",
        help="PEM client certificate for mutual TLS; the verifier refuses "
        "to list agents without one (403). Keylime's tenant certificate "
        "works."),
    cfg.StrOpt(
        "client_key_file",
        help="PEM private key of client_cert_file, if not in that file. "
        "Never logged."),
    cfg.StrOpt(
        "tls_server_name",
        help="Name the verifier's certificate must carry, when it differs "
        "from verifier_host. Keylime 6.x makes certificates that name no "
        "IP address, so connecting to an address needs this."),
    cfg.DictOpt(
        "agent_ids", default={},
        help="Host name to Keylime agent id, as 'host1:agent-id-1,"
        "host2:agent-id-2'. Hosts not listed follow agent_id_rule."),
    cfg.StrOpt(
        "agent_id_rule", default="hostname",
        choices=[("hostname", "the agent id is the host name"),
                 ("map-only", "only hosts listed in agent_ids have an "
                  "agent; the others are 'unknown'")],
        help="How hosts not listed in agent_ids map to agent ids."),
    cfg.IntOpt(
        "max_attestation_age", default=0, min=0,
        help="When set, a host whose last successful attestation "
        "(last_successful_attestation, Keylime 7.x) is older than this many "
        "seconds is 'unknown' (stale). Verifiers that do not report it "
        "(Keylime 6.x) then make every host 'unknown'. 0 turns it off."),
    cfg.IntOpt(
        "per_agent_concurrency", default=8, min=1,
        help="Requests in flight at once when the verifier is too old for "
        "?bulk=True and agents are asked one by one."),
]

#: Keylime's agent id grammar (keylime.common.validators.valid_agent_id)
_AGENT_ID = re.compile(r"[\w.-]+")
_STATUS = {
    "PASS": TrustLevel.TRUSTED,
    "FAIL": TrustLevel.UNTRUSTED,
    "PENDING": TrustLevel.UNKNOWN,
    "TIMEOUT": TrustLevel.UNKNOWN,
}
# keylime.common.states: 3 GET_QUOTE, 4 GET_QUOTE_RETRY, 5 PROVIDE_V,
# 6 PROVIDE_V_RETRY; 7 FAILED, 9 INVALID_QUOTE, 10 TENANT_FAILED;
# 0 REGISTERED, 1 START, 2 SAVED, 8 TERMINATED.
_STATE_NAMES = {0: "REGISTERED", 1: "START", 2: "SAVED", 3: "GET_QUOTE",
                4: "GET_QUOTE_RETRY", 5: "PROVIDE_V", 6: "PROVIDE_V_RETRY",
                7: "FAILED", 8: "TERMINATED", 9: "INVALID_QUOTE",
                10: "TENANT_FAILED"}
_STATES = {**dict.fromkeys((3, 4, 5, 6), TrustLevel.TRUSTED),
           **dict.fromkeys((7, 9, 10), TrustLevel.UNTRUSTED),
           **dict.fromkeys((0, 1, 2, 8), TrustLevel.UNKNOWN)}


def decide(agent_id: str, record: Any, now: float,
           max_age: float = 0) -> tuple[TrustLevel, str, str | None]:
    """Trust level, reason and server time for one verifier record.

    ``attestation_status`` (Keylime 7.14+, and the only signal for
    push-mode agents) wins over ``operational_state`` (every pull-mode
    verifier).

    :raises AttestationError: when the record is not an object.
    """
    if not isinstance(record, dict):
        raise AttestationError(
            f"Keylime verifier record for agent {agent_id!r} is not an "
            "object")
    last = record.get("last_successful_attestation")
    vtime = None
    if isinstance(last, (int, float)) and not isinstance(last, bool) \
            and last > 0:
        vtime = datetime.datetime.fromtimestamp(
            last, datetime.timezone.utc).isoformat()
    status = record.get("attestation_status")
    state = record.get("operational_state")
    if isinstance(status, str):
        level = _STATUS.get(status.upper(), TrustLevel.UNKNOWN)
        reason = f"Keylime agent {agent_id}: attestation_status {status}"
    elif isinstance(state, int) and not isinstance(state, bool):
        level = _STATES.get(state, TrustLevel.UNKNOWN)
        reason = (f"Keylime agent {agent_id}: operational_state {state} "
                  f"({_STATE_NAMES.get(state, 'not a known state')})")
    else:
        return (TrustLevel.UNKNOWN,
                f"Keylime agent {agent_id}: record has neither "
                "attestation_status nor operational_state", vtime)
    if level is TrustLevel.TRUSTED and max_age > 0:
        if vtime is None:
            return (TrustLevel.UNKNOWN,
                    f"{reason}, but no last_successful_attestation to check "
                    f"max_attestation_age against", vtime)
        age = now - float(last)
        if age > max_age:
            return (TrustLevel.UNKNOWN,
                    f"stale: {reason}, last successful attestation "
                    f"{age:.0f}s ago (max_attestation_age {max_age:g}s)",
                    vtime)
    return level, reason, vtime


class KeylimeBackend(AttestationBackend):
    """Keylime verifier REST API 2.x, pull and push mode records."""

    name = "keylime"
    CONFIG_OPTS = [(GROUP, _opts)]

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        group = conf[GROUP]
        common = conf[TC_GROUP]
        if not group.verifier_host:
            raise ConfigurationError("verifier_host", "must be set for the "
                                     "'keylime' backend", group=GROUP)
        if group.client_key_file and not group.client_cert_file:
            raise ConfigurationError("client_key_file", "is set but "
                                     "client_cert_file is not", group=GROUP)
        self._api = group.api_version
        if self._api != "auto" and not re.fullmatch(r"\d+\.\d+", self._api):
            raise ConfigurationError("api_version", f"{self._api!r} is not "
                                     "'auto' or a version like '2.1'",
                                     group=GROUP)
        self._map: dict[str, str] = dict(group.agent_ids or {})
        for host, agent_id in self._map.items():
            if not _AGENT_ID.fullmatch(agent_id or ""):
                raise ConfigurationError(
                    "agent_ids", f"{agent_id!r} (for host {host!r}) is not a "
                    "Keylime agent id", group=GROUP)
        self._rule = group.agent_id_rule
        self._max_age = group.max_attestation_age
        self._workers = group.per_agent_concurrency
        host = group.verifier_host
        host = f"[{host}]" if ":" in host else host
        scheme = common.attestation_scheme
        self.base = f"{scheme}://{host}:{group.verifier_port}"
        verify: bool | str = True
        if common.attestation_insecure_ssl:
            verify = False
        elif group.ca_file:
            verify = group.ca_file
        self._http = JsonClient(HttpSettings(
            verify=verify, cert_file=group.client_cert_file,
            key_file=group.client_key_file,
            connect_timeout=common.connect_timeout,
            read_timeout=common.read_timeout,
            max_bytes=common.max_response_bytes,
            server_name=group.tls_server_name))
        self._bulk: bool | None = None  # unknown until the verifier says

    def describe(self) -> str:
        return f"keylime {self.base}"

    def close(self) -> None:
        self._http.close()

    def agent_id(self, host: str) -> str | None:
        """The agent id ``host`` maps to, or ``None``."""
        mapped = self._map.get(host)
        if mapped is not None:
            return mapped
        if self._rule == "hostname" and _AGENT_ID.fullmatch(host):
            return host
        return None

    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        ids = {host: self.agent_id(host) for host in hostnames}
        wanted = {i for i in ids.values() if i is not None}
        records = self._records(sorted(wanted)) if wanted else {}
        now = time.time()
        reports = {}
        for host, agent_id in ids.items():
            if agent_id is None:
                reports[host] = HostReport(
                    host, TrustLevel.UNKNOWN, self.name,
                    "no Keylime agent id for this host ([keylime] "
                    "agent_ids, agent_id_rule)")
            elif agent_id not in records:
                reports[host] = HostReport(
                    host, TrustLevel.UNKNOWN, self.name,
                    f"the Keylime verifier does not know agent {agent_id}")
            else:
                level, reason, vtime = decide(agent_id, records[agent_id],
                                              now, self._max_age)
                reports[host] = HostReport(host, level, self.name, reason,
                                           vtime)
        return reports

    def list_hosts(self) -> list[str]:
        """Hosts of every agent the verifier watches, mapped back."""
        status, results = self._get(f"/v{self._version()}/agents/")
        ids = _uuid_list(results) if status != 404 else []
        reverse = {agent: host for host, agent in self._map.items()}
        if self._rule == "map-only":
            return sorted(reverse[i] for i in ids if i in reverse)
        return sorted(reverse.get(i, i) for i in ids)

    # -- internals -------------------------------------------------------

    def _records(self, agent_ids: list[str]) -> dict[str, Any]:
        version = self._version()
        if self._bulk is not False:
            status, results = self._get(f"/v{version}/agents/?bulk=True")
            if status == 404:
                raise AttestationError(
                    f"{self.base} answered HTTP 404 to /v{version}/agents/: "
                    "check [keylime] api_version")
            if isinstance(results, dict) and "uuids" not in results:
                self._bulk = True
                return {i: results[i] for i in agent_ids if i in results}
            if not isinstance(results, dict):
                raise AttestationError(
                    f"Keylime verifier {self.base}: agent list is not an "
                    "object")
            LOG.info("Keylime verifier %s does not support ?bulk=True; "
                     "asking agent by agent", self.base)
            self._bulk = False
        return self._one_by_one(version, agent_ids)

    def _one_by_one(self, version: str,
                    agent_ids: list[str]) -> dict[str, Any]:
        def fetch(agent_id: str) -> tuple[str, Any]:
            status, results = self._get(f"/v{version}/agents/{agent_id}")
            return agent_id, (None if status == 404 else results)

        records: dict[str, Any] = {}
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(self._workers, len(agent_ids))) as pool:
            for agent_id, record in pool.map(fetch, agent_ids):
                if record is not None:
                    records[agent_id] = record
        return records

    def _version(self) -> str:
        if self._api != "auto":
            return self._api
        status, results = self._get("/version", envelope=True)
        versions = results.get("supported_versions") if isinstance(
            results, dict) else None
        if status == 404 or not isinstance(versions, list):
            raise AttestationError(
                f"Keylime verifier {self.base}: /version gave no "
                "supported_versions; set [keylime] api_version")
        # 7.14 lists 3.0 but its /v3.0/agents answers 500: stay on 2.x.
        two = [v for v in versions if isinstance(v, str)
               and re.fullmatch(r"2\.\d+", v)]
        if not two:
            raise AttestationError(
                f"Keylime verifier {self.base} supports no 2.x API "
                f"({', '.join(map(str, versions))}); set [keylime] "
                "api_version")
        self._api = max(two, key=lambda v: int(v.split(".")[1]))
        LOG.info("Keylime verifier %s: using API %s", self.base, self._api)
        return self._api

    def _get(self, path: str, envelope: bool = True) -> tuple[int, Any]:
        url = self.base + path
        try:
            status, body = self._http.request(
                "GET", url, headers={"Accept": "application/json"})
        except AttestationError as exc:
            if "HTTP 410" in str(exc):
                raise AttestationError(
                    f"{exc} (a push-mode verifier: set [keylime] "
                    "api_version)") from None
            raise
        if status == 404:
            return status, None
        if not isinstance(body, dict) or "results" not in body:
            raise AttestationError(
                f"Keylime verifier answered {path} without a 'results' "
                "object")
        return status, body["results"]


def _uuid_list(results: Any) -> list[str]:
    if isinstance(results, dict) and isinstance(results.get("uuids"), list):
        ids = []
        for item in results["uuids"]:
            ids.extend(item if isinstance(item, list) else [item])
        return [i for i in ids if isinstance(i, str)]
    if isinstance(results, dict):
        return [k for k in results if isinstance(k, str)]
    return []
