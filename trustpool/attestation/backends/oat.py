# SPDX-License-Identifier: Apache-2.0
"""OpenAttestation's PollHosts API (also Mt. Wilson / OpenCIT).

One ``POST .../PollHosts`` with every host of the batch; the answer is
``{"hosts": [{"host_name", "trust_lvl", "vtime"}, ...]}``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from oslo_config import cfg

from trustpool.attestation.answer import Answer
from trustpool.attestation.backends._http import (
    TRANSPORT_OPTS,
    HttpSettings,
    JsonClient,
)
from trustpool.attestation.backends.base import (
    COMMON_GROUP as GROUP,
)
from trustpool.attestation.backends.base import AttestationBackend
from trustpool.attestation.model import HostReport, TrustLevel, fold
from trustpool.exceptions import AttestationError, ConfigurationError

__all__ = ["SERVER_OPTS", "OATBackend", "parse_poll_hosts"]

LOG = logging.getLogger(__name__)

_LEVELS = {
    "trusted": TrustLevel.TRUSTED,
    "untrusted": TrustLevel.UNTRUSTED,
    "unknown": TrustLevel.UNKNOWN,
    # OAT reports hosts it could not attest in time as 'timeout' and hosts
    # still being attested as 'pending': neither proves anything.
    "timeout": TrustLevel.UNKNOWN,
    "pending": TrustLevel.UNKNOWN,
}
_REASONS = {level: f"attestation server says {level!r}" for level in _LEVELS}
_MAX_NAMES_SHOWN = 5
_KNOWN_WORDS = frozenset(_LEVELS)
_DICT = (dict,)
_STR = (str,)
_STR_OR_NONE = (str, type(None))


def _old(name: str) -> list[cfg.DeprecatedOpt]:
    return [cfg.DeprecatedOpt(name, group=GROUP)]


#: Where the attestation server is, with the names, types and defaults of
#: Nova's removed in-tree filter; the old install guides' spellings
#: (server, port, ...) are read as deprecated names.
SERVER_OPTS = [
    cfg.HostAddressOpt(
        "attestation_server",
        deprecated_opts=_old("server"),
        help="Host name or IP address of the attestation server. Required "
        "for the 'oat' backend.",
    ),
    cfg.PortOpt(
        "attestation_port",
        default=8443,
        min=1,
        deprecated_opts=_old("port"),
        help="TCP port of the attestation server. OpenAttestation 2.0 and "
        "later listen on 8181.",
    ),
    cfg.StrOpt(
        "attestation_server_ca_file",
        deprecated_opts=_old("server_ca_file"),
        help="PEM file with the CA certificate(s) that signed the "
        "attestation server's certificate. When unset, the system's "
        "trusted CAs are used.",
    ),
    cfg.StrOpt(
        "attestation_api_url",
        default="/OpenAttestationWebServices/V1.0",
        deprecated_opts=_old("api_url"),
        help="URL path of the attestation API, without the trailing "
        "'/PollHosts'. OpenAttestation 1.5 and later use "
        "'/AttestationService/resources'.",
    ),
    cfg.StrOpt(
        "attestation_auth_blob",
        secret=True,
        deprecated_opts=_old("auth_blob"),
        help="Credential sent to the attestation server in the "
        "'x-auth-blob' header. Never logged: it is masked in every message. "
        "A value with a line break (an indented continuation line in "
        "nova.conf), another control character or a character outside "
        "Latin-1 cannot be sent as a header and is refused at start-up.",
    ),
]


def http_settings(conf: cfg.ConfigOpts) -> HttpSettings:
    """TLS and timeout settings from ``[trusted_computing]``."""
    group = conf[GROUP]
    verify: bool | str = True
    if group.attestation_insecure_ssl:
        verify = False
    elif group.attestation_server_ca_file:
        verify = group.attestation_server_ca_file
    return HttpSettings(
        verify=verify,
        cert_file=group.client_cert_file,
        key_file=group.client_key_file,
        connect_timeout=group.connect_timeout,
        read_timeout=group.read_timeout,
        max_bytes=group.max_response_bytes,
    )


class OATBackend(AttestationBackend):
    """OpenAttestation 1.x, 1.5+, 2.x and Mt. Wilson PollHosts."""

    name = "oat"
    #: :meth:`attest_answer` builds the answer's columns directly
    answers_natively = True
    CONFIG_OPTS = [(GROUP, SERVER_OPTS + TRANSPORT_OPTS)]
    FILE_OPTS = [(GROUP, "attestation_server_ca_file", "ca"),
                 (GROUP, "client_cert_file", "cert"),
                 (GROUP, "client_key_file", "key")]

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        group = conf[GROUP]
        server = group.attestation_server
        if not server:
            raise ConfigurationError(
                "attestation_server", "must be set for the 'oat' backend")
        host = f"[{server}]" if ":" in server else server
        path = "/" + (group.attestation_api_url or "").strip("/")
        self.url = (f"{group.attestation_scheme}://{host}:"
                    f"{group.attestation_port}{path.rstrip('/')}/PollHosts")
        self._headers = {"Accept": "application/json",
                         "Content-Type": "application/json"}
        if group.attestation_auth_blob:
            self._headers["x-auth-blob"] = group.attestation_auth_blob
            self.secrets = (group.attestation_auth_blob,)
        settings = http_settings(conf)
        self.timeout = settings.budget
        self._http = JsonClient(settings)
        if group.attestation_scheme == "http":
            LOG.warning("Attestation answers from %s travel in plain text "
                        "(attestation_scheme = http): anyone on the network "
                        "path can forge them.", self.url)
        elif group.attestation_insecure_ssl:
            LOG.warning("TLS verification of %s is off "
                        "(attestation_insecure_ssl = True): anyone on the "
                        "network path can forge trust answers.", self.url)

    def describe(self) -> str:
        return f"oat {self.url}"

    def close(self) -> None:
        self._http.close()

    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        return self.attest_answer(hostnames).reports()

    def attest_answer(self, hostnames: Sequence[str]) -> Answer:
        body = {"count": len(hostnames), "hosts": list(hostnames)}
        status, data = self._http.request("POST", self.url,
                                          headers=self._headers, body=body)
        if status == 404:
            raise AttestationError(
                f"{self.url} answered HTTP 404: check attestation_api_url",
                "http_status")
        return parse_poll_answer(data, hostnames, self.name)


def parse_poll_hosts(data: Any, asked: Sequence[str],
                     backend: str = "oat") -> dict[str, HostReport]:
    """:func:`parse_poll_answer` as a report per host."""
    return parse_poll_answer(data, asked, backend).reports()


def parse_poll_answer(data: Any, asked: Sequence[str],
                      backend: str = "oat") -> Answer:
    """Turn a PollHosts answer into an :class:`Answer`, refusing anything
    doubtful.

    :raises AttestationError: when the answer's shape is wrong, names a host
        that was not asked about, or gives one host two different levels.
        One bad entry spoils the whole answer: a server that gets the
        protocol wrong cannot be trusted on the other hosts either.
    """
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, list):
        raise AttestationError(
            "PollHosts answer is not an object with a 'hosts' list",
            "malformed")
    if type(hosts) is not list:
        # one reading, which both readers below then read: a list of
        # another type can iterate differently each time (JSON makes
        # plain lists; this function is public)
        hosts = list(hosts)
    wanted = set(asked)
    fast = _parse_common(hosts, wanted, backend)
    if fast is not None:
        return fast
    return Answer.of_reports(_parse_entry_by_entry(hosts, wanted, backend))


def _parse_common(entries: list[Any], wanted: set[str], backend: str
                  ) -> Answer | None:
    """The :class:`Answer` of a PollHosts answer in the form servers send
    (an object per host, every name asked about and distinct, every level
    one of the spellings of :data:`_LEVELS`, every time a string or
    absent), built with loops in C and no object per host; ``None`` for
    any other answer, which :func:`_parse_entry_by_entry` reads (or
    refuses, naming the entry).

    The same answer as that loop's for every answer it accepts (a property
    test holds the two to it): a 10,000-host answer is taken in while the
    scheduler's other threads wait for the GIL, and the loop in Python
    cost 3 µs a host.
    """
    if set(map(type, entries)).difference(_DICT):
        return None
    names: list[Any] = list(map(dict.get, entries, repeat("host_name")))
    words: list[Any] = list(map(dict.get, entries, repeat("trust_lvl")))
    vtimes: list[Any] = list(map(dict.get, entries, repeat("vtime")))
    # each test after the type test that makes it safe (a list is not
    # hashable: issuperset would raise)
    if (set(map(type, names)).difference(_STR) or "" in names
            or not wanted.issuperset(names)
            or set(map(type, words)).difference(_STR)
            or not _KNOWN_WORDS.issuperset(words)
            or set(map(type, vtimes)).difference(_STR_OR_NONE)):
        return None
    if "" in vtimes:
        vtimes = [v or None for v in vtimes]
    answer = Answer.columns(names, map(_LEVELS.__getitem__, words),
                            map(_REASONS.__getitem__, words), vtimes,
                            backend)
    if len(answer) != len(names):
        return None  # a name twice: the loop says which
    return answer


def _parse_entry_by_entry(entries: list[Any], wanted: set[str],
                          backend: str) -> dict[str, HostReport]:
    """Every answer :func:`_parse_common` leaves: odd spellings of a level,
    and every entry that is refused, in order, with the first one named.

    :raises AttestationError: as :func:`parse_poll_hosts`.
    """
    reports: dict[str, HostReport] = {}
    strangers: list[str] = []
    made = _made_for(backend)
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AttestationError(
                f"PollHosts answer: hosts[{index}] is not an object",
                "malformed")
        name = entry.get("host_name")
        raw_level = entry.get("trust_lvl")
        # plain strings only, as JSON makes them: a subclass of str can
        # compare equal to a host asked about, or fold to a level, while
        # it spells another
        if type(name) is not str or not name:
            raise AttestationError(
                f"PollHosts answer: hosts[{index}].host_name is not a "
                f"non-empty string: {_short(name)}", "malformed")
        if type(raw_level) is not str:
            raise AttestationError(
                f"PollHosts answer: hosts[{index}] ({name!r}) has no "
                f"string trust_lvl: {_short(raw_level)}", "malformed")
        if name not in wanted:
            strangers.append(name)
            continue
        if name in reports:
            # even with the same level: a server that repeats itself has
            # its protocol wrong, and its other entries prove nothing
            raise AttestationError(
                f"PollHosts answer names host {_short(name)} twice, as "
                f"{_short(reports[name].level.value)} and "
                f"{_short(fold(raw_level))}", "malformed")
        known = made.get(raw_level)
        if known is None:
            reports[name] = _report(name, fold(raw_level),
                                    entry.get("vtime"), backend)
            continue
        vtime = entry.get("vtime")
        if not (type(vtime) is str and vtime):
            vtime = None
        reports[name] = _new_report((name, *known, vtime))
    if strangers:
        shown = ", ".join(_short(n) for n in strangers[:_MAX_NAMES_SHOWN])
        more = len(strangers) - _MAX_NAMES_SHOWN
        raise AttestationError(
            "PollHosts answer names hosts that were not asked about: "
            f"{shown}{f' and {more} more' if more > 0 else ''}", "malformed")
    return reports


#: ``HostReport(*fields)`` without the Python-level ``__new__`` of a named
#: tuple: one C call per host
_new_report = functools.partial(tuple.__new__, HostReport)


@functools.lru_cache(maxsize=8)
def _made_for(backend: str) -> dict[str, tuple[TrustLevel, str, str]]:
    """``trust_lvl`` exactly as servers send it -> (level, backend, reason);
    any other spelling goes through :func:`fold`."""
    return {word: (level, backend, _REASONS[word])
            for word, level in _LEVELS.items()}


def _report(name: str, level: str, raw_vtime: Any,
            backend: str) -> HostReport:
    trust = _LEVELS.get(level)
    if trust is None:
        return HostReport(name, TrustLevel.UNKNOWN, backend,
                          f"unrecognised trust level {_short(level)}")
    # vtime is kept as sent and parsed only when someone looks at it (the
    # optional age check, operators' tools): an answer for 10,000 hosts
    # would otherwise spend most of its handling time parsing dates.
    vtime = raw_vtime if type(raw_vtime) is str and raw_vtime else None
    return HostReport(name, trust, backend, _REASONS[level], vtime)


def _short(value: Any) -> str:
    """A value from the answer for a message. Not cut short here: secrets
    are masked later, by the backend guard and the client, and a secret
    cut in half could no longer be recognised; they bound the length after
    masking. Containers are not ``repr``'d (a deep one overflows)."""
    if value is None or isinstance(value, (str, bool, float)) or (
            isinstance(value, int) and abs(value) < 10 ** 64):
        return repr(value)[:_UNCUT]
    return f"a {type(value).__name__}"


#: longer than any message keeps after masking and bounding
_UNCUT = 4000
