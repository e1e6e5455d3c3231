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
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from trustpool.attestation.backends._http import (
    TRANSPORT_OPTS,
    HttpSettings,
    JsonClient,
)
from trustpool.attestation.backends.base import COMMON_GROUP as TC_GROUP
from trustpool.attestation.backends.base import AttestationBackend
from trustpool.attestation.model import (
    MAX_CLOCK_SKEW,
    HostReport,
    TrustLevel,
)
from trustpool.exceptions import AttestationError, ConfigurationError

__all__ = ["GROUP", "AgentIds", "KeylimeBackend", "decide"]

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
        "seconds is 'unknown' (stale). So is a host whose record has no "
        "readable last_successful_attestation (none, null, not a number, "
        "out of range): verifiers that do not report it (Keylime 6.x) then "
        "make every host 'unknown'. So is a host whose "
        "last_successful_attestation lies in the future by more than the "
        "allowed clock skew, the smaller of 60 seconds and this value: "
        "such a time would keep an old attestation looking fresh, and "
        "verifier clocks kept by NTP agree far better than that. 0 turns "
        "the check off."),
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




class AgentIds:
    """Host names and Keylime agent ids, both ways: ``[keylime]
    agent_ids`` and ``agent_id_rule``. The backend asks for a host's agent;
    the revocation receiver asks which hosts an agent's event is about."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        """Registers the ``[keylime]`` options if needed.

        :raises ConfigurationError: when a mapped agent id is not one.
        """
        conf.register_opts(_opts, group=GROUP)
        group = conf[GROUP]
        self._map: dict[str, str] = dict(group.agent_ids or {})
        for host, agent_id in self._map.items():
            if not _AGENT_ID.fullmatch(agent_id or ""):
                raise ConfigurationError(
                    "agent_ids", f"{agent_id!r} (for host {host!r}) is not a "
                    "Keylime agent id", group=GROUP)
        self.rule: str = group.agent_id_rule
        self._reverse: dict[str, list[str]] = {}
        for host, agent_id in sorted(self._map.items()):
            self._reverse.setdefault(agent_id, []).append(host)

    def agent_id(self, host: str) -> str | None:
        """The agent id ``host`` maps to, or ``None``."""
        mapped = self._map.get(host)
        if mapped is not None:
            return mapped
        if self.rule == "hostname" and _AGENT_ID.fullmatch(host):
            return host
        return None

    def hosts(self, agent_id: str) -> list[str]:
        """Every host whose agent is ``agent_id`` (usually one; none for
        an agent no host maps to). Exactly the inverse of
        :meth:`agent_id`: a host listed in agent_ids under another id is
        not the host of an agent that happens to carry its name."""
        candidates = {*self._reverse.get(agent_id, ()), agent_id}
        return sorted(h for h in candidates if self.agent_id(h) == agent_id)


def decide(agent_id: str, record: Any, now: float,
           max_age: float = 0) -> tuple[TrustLevel, str, str | None]:
    """Trust level, reason and server time for one verifier record.

    ``attestation_status`` (Keylime 7.14+, and the only signal for
    push-mode agents) wins over ``operational_state`` (every pull-mode
    verifier). Total over any decoded JSON: whatever the record holds, the
    answer is a level, never an exception other than the one below.

    :raises AttestationError: when the record is not an object.
    """
    if not isinstance(record, dict):
        raise AttestationError(
            f"Keylime verifier record for agent {agent_id!r} is not an "
            "object", "malformed")
    last = record.get("last_successful_attestation")
    when, vtime = _epoch(last)
    status = record.get("attestation_status")
    state = record.get("operational_state")
    if status is not None and not isinstance(status, str):
        # present but not a word: the verifier's own verdict is garbled,
        # and operational_state beside it cannot outvote it
        return (TrustLevel.UNKNOWN,
                f"Keylime agent {agent_id}: attestation_status is not a "
                "string", vtime)
    if isinstance(status, str):
        # exact, ASCII case aside: Keylime sends PASS, FAIL, PENDING...
        word = status.upper() if status.isascii() else status
        level = _STATUS.get(word, TrustLevel.UNKNOWN)
        reason = (f"Keylime agent {agent_id}: attestation_status "
                  f"{_shown(status)}")
    elif isinstance(state, int) and not isinstance(state, bool):
        level = _STATES.get(state, TrustLevel.UNKNOWN)
        reason = (f"Keylime agent {agent_id}: operational_state "
                  f"{_shown(state)} "
                  f"({_STATE_NAMES.get(state, 'not a known state')})")
    else:
        return (TrustLevel.UNKNOWN,
                f"Keylime agent {agent_id}: record has neither "
                "attestation_status nor operational_state", vtime)
    if level is TrustLevel.TRUSTED and max_age > 0:
        if when is None:
            seen = ("no last_successful_attestation" if last in (None, 0)
                    else "an unreadable time in last_successful_attestation"
                    f" ({_shown(last)})")
            return (TrustLevel.UNKNOWN,
                    f"{reason}, but {seen} to check max_attestation_age "
                    "against", vtime)
        age = now - when
        if age > max_age:
            return (TrustLevel.UNKNOWN,
                    f"stale: {reason}, last successful attestation "
                    f"{age:.0f}s ago (max_attestation_age {max_age:g}s)",
                    vtime)
        skew = min(MAX_CLOCK_SKEW, max_age)
        if -age > skew:
            return (TrustLevel.UNKNOWN,
                    f"{reason}, but its last successful attestation is "
                    f"{-age:.0f}s in the future (more than the {skew:g}s "
                    "of clock skew allowed with max_attestation_age)",
                    vtime)
    return level, reason, vtime


def _epoch(value: Any) -> tuple[float | None, str | None]:
    """``last_successful_attestation`` as seconds and as ISO text, or
    ``(None, None)`` when it is missing, zero (never attested) or cannot
    be a time (not a number, not finite, out of datetime's range)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, None
    try:
        seconds = float(value)  # OverflowError for 10**400
        if not seconds > 0:  # also NaN
            return None, None
        text = datetime.datetime.fromtimestamp(
            seconds, datetime.timezone.utc).isoformat()
    except (OverflowError, ValueError, OSError):
        return None, None
    return seconds, text


def _shown(value: Any) -> str:
    """A value from a verifier record, short and on one line, for a
    reason (never the record: it holds the agent's key half)."""
    if isinstance(value, int) and not isinstance(value, bool) and \
            abs(value) >= 10 ** 18:
        return "a huge number"  # str() of 10**5000 raises ValueError
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    text = str(value) if isinstance(value, (str, int, float)) else \
        f"a JSON {type(value).__name__}"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 40 else text[:37] + "..."


class KeylimeBackend(AttestationBackend):
    """Keylime verifier REST API 2.x, pull and push mode records."""

    name = "keylime"
    CONFIG_OPTS = [(GROUP, _opts), (TC_GROUP, TRANSPORT_OPTS)]
    # [keylime]'s own: the [trusted_computing] TLS files are not read
    FILE_OPTS = [(GROUP, "ca_file", "ca"), (GROUP, "client_cert_file", "cert"),
                 (GROUP, "client_key_file", "key")]

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
        self._ids = AgentIds(conf)
        self._map: dict[str, str] = dict(group.agent_ids or {})
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
        settings = HttpSettings(
            verify=verify, cert_file=group.client_cert_file,
            key_file=group.client_key_file,
            connect_timeout=common.connect_timeout,
            read_timeout=common.read_timeout,
            max_bytes=common.max_response_bytes,
            server_name=group.tls_server_name,
            cert_option=f"[{GROUP}] client_cert_file")
        # One budget for a whole attest call, however many requests it
        # makes (version discovery, bulk, or one per agent).
        self.timeout = settings.budget
        self._http = JsonClient(settings)
        self._bulk: bool | None = None  # unknown until the verifier says
        if scheme == "http":
            LOG.warning("Keylime verifier answers from %s travel in plain "
                        "text (attestation_scheme = http): anyone on the "
                        "network path can forge them.", self.base)
        elif common.attestation_insecure_ssl:
            LOG.warning("TLS verification of the Keylime verifier %s is off "
                        "(attestation_insecure_ssl = True): anyone on the "
                        "network path can forge trust answers.", self.base)

    def describe(self) -> str:
        return f"keylime {self.base}"

    def close(self) -> None:
        self._http.close()

    def agent_id(self, host: str) -> str | None:
        """The agent id ``host`` maps to, or ``None``."""
        return self._ids.agent_id(host)

    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        ids = {host: self.agent_id(host) for host in hostnames}
        wanted = {i for i in ids.values() if i is not None}
        # one absolute deadline for every request this call makes
        deadline = time.monotonic() + self.timeout
        records = self._records(sorted(wanted), deadline) if wanted else {}
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
                reports[host] = self._report(host, agent_id,
                                             records[agent_id], now)
        return reports

    def _report(self, host: str, agent_id: str, record: Any,
                now: float) -> HostReport:
        try:
            level, reason, vtime = decide(agent_id, record, now,
                                          self._max_age)
        except AttestationError:
            raise
        except Exception as exc:  # noqa: BLE001 - decide is meant to be
            # total; should it meet a record it was not written for, that
            # host is in doubt, and doubt is unknown. Never the record in
            # the reason: it holds the agent's key half.
            return HostReport(
                host, TrustLevel.UNKNOWN, self.name,
                f"Keylime agent {agent_id}: record could not be read "
                f"({type(exc).__name__})")
        return HostReport(host, level, self.name, reason, vtime)

    def list_hosts(self) -> list[str]:
        """Hosts of every agent the verifier watches, mapped back."""
        deadline = time.monotonic() + self.timeout
        path = f"/v{self._version(deadline)}/agents/"
        status, results = self._get(path, deadline=deadline)
        ids = [] if status == 404 else self._agent_list(results)
        reverse = {agent: host for host, agent in self._map.items()}
        if self._rule == "map-only":
            return sorted(reverse[i] for i in ids if i in reverse)
        return sorted(reverse.get(i, i) for i in ids)

    # -- internals -------------------------------------------------------

    def _records(self, agent_ids: list[str],
                 deadline: float) -> dict[str, Any]:
        version = self._version(deadline)
        if self._bulk is not False:
            path = f"/v{version}/agents/?bulk=True"
            status, results = self._get(path, deadline=deadline)
            if status == 404:
                raise AttestationError(
                    f"{self.base} answered HTTP 404 to /v{version}/agents/: "
                    "check [keylime] api_version", "http_status")
            if not _is_id_list(results):
                records = self._bulk_records(results)
                self._bulk = True
                return {i: records[i] for i in agent_ids if i in records}
            LOG.info("Keylime verifier %s does not support ?bulk=True; "
                     "asking agent by agent", self.base)
            self._bulk = False
        return self._one_by_one(version, agent_ids, deadline)

    def _bulk_records(self, results: Any) -> dict[str, Any]:
        """The agent records of a bulk answer: an object whose every value
        is an object. Anything else is not an answer to trust."""
        if not isinstance(results, dict) or not all(
                isinstance(record, dict) for record in results.values()):
            raise AttestationError(
                f"Keylime verifier {self.base}: the agent list is not an "
                "object of agent records, nor a list of agent ids",
                "malformed")
        return results

    def _agent_list(self, results: Any) -> list[str]:
        """Agent ids from the answer to ``/agents/``, whichever form."""
        if _is_id_list(results):
            ids: list[str] = []
            for item in next(iter(results.values())):
                ids.extend([item] if isinstance(item, str) else item)
            return ids
        return [agent_id for agent_id in self._bulk_records(results)]

    def _one_by_one(self, version: str, agent_ids: list[str],
                    deadline: float) -> dict[str, Any]:
        """Each agent's record, ``per_agent_concurrency`` at a time, all
        within ``deadline``.

        Without the deadline the time grows with agents / concurrency, and
        a scheduler would wait on it. Requests share the deadline (the HTTP
        client cuts one that is in flight when it passes); requests not yet
        started when it passes never start.
        """
        def fetch(agent_id: str) -> Any:
            if time.monotonic() >= deadline:
                raise _Late
            status, results = self._get(f"/v{version}/agents/{agent_id}",
                                        deadline=deadline)
            return None if status == 404 else results

        records: dict[str, Any] = {}
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self._workers, len(agent_ids)),
            thread_name_prefix="trustpool-keylime")
        try:
            futures = {pool.submit(fetch, agent_id): agent_id
                       for agent_id in agent_ids}
            done, _ = concurrent.futures.wait(
                futures, timeout=max(0.0, deadline - time.monotonic()),
                return_when=concurrent.futures.FIRST_EXCEPTION)
            answered = 0
            failure: BaseException | None = None
            for future in done:
                error = future.exception()
                if error is None:
                    answered += 1
                    if future.result() is not None:
                        records[futures[future]] = future.result()
                elif failure is None and not isinstance(error, _Late):
                    failure = error
            if answered < len(agent_ids) and (
                    time.monotonic() >= deadline or failure is None):
                # past the deadline, whatever the last requests made of
                # the cut, the answer is "too slow"
                raise AttestationError(
                    f"Keylime verifier {self.base} did not answer for "
                    f"{len(agent_ids) - answered} of {len(agent_ids)} "
                    f"agents within {self.timeout:g}s (connect_timeout + "
                    "read_timeout)", "timeout")
            if failure is not None:
                raise failure
        finally:
            # Queued requests are dropped; running ones end at the
            # deadline on their own (the HTTP client cuts them), and the
            # caller does not wait for them.
            pool.shutdown(wait=False, cancel_futures=True)
        return records

    def _version(self, deadline: float) -> str:
        if self._api != "auto":
            return self._api
        status, results = self._get("/version", deadline=deadline)
        versions = results.get("supported_versions") if isinstance(
            results, dict) else None
        if status == 404 or not isinstance(versions, list):
            raise AttestationError(
                f"Keylime verifier {self.base}: /version gave no "
                "supported_versions; set [keylime] api_version",
                "malformed")
        # 7.14 lists 3.0 but its /v3.0/agents answers 500: stay on 2.x.
        two = [v for v in versions if isinstance(v, str)
               and re.fullmatch(r"2\.\d+", v)]
        if not two:
            raise AttestationError(
                f"Keylime verifier {self.base} supports no 2.x API "
                f"({', '.join(_shown(v) for v in versions[:8])}); set "
                "[keylime] api_version", "other")
        self._api = max(two, key=lambda v: int(v.split(".")[1]))
        LOG.info("Keylime verifier %s: using API %s", self.base, self._api)
        return self._api

    def _get(self, path: str, *, deadline: float) -> tuple[int, Any]:
        url = self.base + path
        try:
            status, body = self._http.request(
                "GET", url, headers={"Accept": "application/json"},
                deadline=deadline)
        except AttestationError as exc:
            if "HTTP 410" in str(exc):
                raise AttestationError(
                    f"{exc} (a push-mode verifier: set [keylime] "
                    "api_version)", exc.cause) from None
            raise
        if status == 404:
            return status, None
        if not isinstance(body, dict) or "results" not in body:
            raise AttestationError(
                f"Keylime verifier answered {path} without a 'results' "
                "object", "malformed")
        code = body.get("code")
        if type(code) is not int or code != 200:
            # Keylime's envelope repeats the status; one that disagrees
            # with the HTTP status is not an answer to rest trust on
            raise AttestationError(
                f"Keylime verifier answered {path} with HTTP 200 but "
                f"envelope code {str(code)[:20]!r}", "malformed")
        return status, body["results"]


class _Late(Exception):
    """A per-agent request that was not started: the deadline had passed."""


def _is_id_list(results: Any) -> bool:
    """Whether ``results`` is the verifier's list of agent ids.

    Told by its whole shape: without ``bulk`` the verifier answers
    ``{"uuids": [["id"], ...]}``, one key whose value is a list of ids or
    of lists of ids. A bulk answer maps ids to record objects, and
    ``uuids`` is a valid agent id, so the key name alone would take a bulk
    answer naming an agent ``uuids`` for the old list form (and switch to
    one request per agent for good); the shape alone would take a garbled
    one-agent bulk answer whose record is a list for it. Both must match.
    """
    if not isinstance(results, dict) or len(results) != 1:
        return False
    value = results.get("uuids")
    return isinstance(value, list) and all(
        isinstance(item, str) or (isinstance(item, list) and all(
            isinstance(i, str) for i in item))
        for item in value)
