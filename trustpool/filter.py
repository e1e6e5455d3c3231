# SPDX-License-Identifier: Apache-2.0
"""TrustedFilter: only hosts the attestation service vouches for.

Enable it in nova.conf::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = trustpool.filter.TrustedFilter
    enabled_filters = ...,TrustedFilter

A flavor asks for a trust level with the ``trust:trusted_host`` extra spec
(``trusted``, ``untrusted`` or ``unknown``); a host passes when the
attestation service's current answer for it is exactly that level. Flavors
without the extra spec are not affected and cause no attestation traffic.

This module and :mod:`trustpool.extra_specs` are the only ones that import
Nova.
"""

from __future__ import annotations

import itertools
import logging
import operator
from collections.abc import Iterable
from typing import Any

from nova import conf as nova_conf
from nova.scheduler import filters
from nova.scheduler import utils as scheduler_utils
from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_log import log as oslo_logging

from trustpool import conf as tp_conf
from trustpool import decision_record
from trustpool.attestation import (
    EXTRA_SPEC,
    AttestationClient,
    HostReport,
    TrustLevel,
)

__all__ = ["EXTRA_SPEC", "TrustedFilter"]

LOG = oslo_logging.getLogger(__name__)

_VALID = frozenset(level.value for level in TrustLevel)
_MAX_BAD_VALUES_REMEMBERED = 64


class TrustedFilter(filters.BaseHostFilter):
    """Pass hosts whose attested trust level is the one the flavor asks for.

    One instance lives as long as the scheduler, so the attestation client
    (and its cache) is built once, in the constructor, from Nova's CONF with
    trustpool's options registered on it. A bad option therefore stops the
    scheduler at start-up with the option's name, rather than failing
    requests later.
    """

    # A rebuild keeps the instance on its host; whether that host is still
    # trusted is a question for the operator's drift report, not for a
    # rebuild (as with Nova's other host-checking filters).
    RUN_ON_REBUILD = False

    def __init__(self, conf: cfg.ConfigOpts | None = None,
                 client: AttestationClient | None = None) -> None:
        super().__init__()
        conf = nova_conf.CONF if conf is None else conf
        tp_conf.register_opts(conf)
        self._client = client or tp_conf.make_client(conf)
        self._identity = tp_conf.host_identity(conf)
        group = conf[tp_conf.GROUP]
        self._audit_on = bool(group.audit_record)
        if self._audit_on and group.audit_log_file:
            _send_audit_to(group.audit_log_file)
        self._bad_values_logged: set[str] = set()
        self._errors_logged: set[str] = set()
        tp_conf.register_trait_opts(conf)
        self._trait = (tp_conf.trait_name(conf)
                       if conf[tp_conf.TRAIT_GROUP].sync_enabled else None)
        self._trait_warned: set[str] = set()

    @property
    def client(self) -> AttestationClient:
        """The attestation client; shared by every request of the filter."""
        return self._client

    def filter_all(self, filter_obj_list: Iterable[Any],
                   spec_obj: Any) -> list[Any]:
        """Filter every candidate host with one attestation call.

        The outermost boundary between trustpool and Nova: nothing raises
        past it. If anything goes wrong, of whatever type, no host passes
        (even for a flavor that may not ask for trust: when the extra spec
        itself cannot be read, there is no telling), and the error is
        logged once with its type.
        """
        try:
            return self._filter_all(filter_obj_list, spec_obj)
        except Exception as exc:  # noqa: BLE001 - the outermost boundary
            self._log_unexpected(exc)
            return []

    def _filter_all(self, filter_obj_list: Iterable[Any],
                    spec_obj: Any) -> list[Any]:
        hosts = list(filter_obj_list)
        wanted = _wanted_level(spec_obj)
        if wanted is None or not hosts:
            return hosts
        if not self.RUN_ON_REBUILD and \
                scheduler_utils.request_is_rebuild(spec_obj):
            return hosts
        names = self._identity.names_of_host_states(hosts)
        if wanted not in _VALID:
            self._log_bad_value(wanted, spec_obj)
            self._audit(spec_obj, wanted, False, hosts, names, {}, [])
            return []
        if self._trait is not None and wanted == TrustLevel.TRUSTED.value:
            self._check_trait(spec_obj)
        level = TrustLevel(wanted)
        debug = LOG.isEnabledFor(logging.DEBUG)
        auditing = self._audit_on and decision_record.enabled()
        if not (auditing or debug):
            # the warm pass: the levels alone, no report made per host
            return _passing(hosts, self._client.trust_in_order(names), level)
        # a reason per rejected host for the log, a report per host for
        # the record: both from one answer, the one the decision used
        found = self._client.levels_in_order(names)
        if debug:
            passed = []
            for host, name, report in zip(hosts, names, found, strict=True):
                if report is not None and report.level is level:
                    passed.append(host)
                else:
                    self._log_rejection(host, name, wanted, report)
        else:
            passed = _passing(hosts, list(map(
                getattr, found, itertools.repeat("level"),
                itertools.repeat(None))), level)
        if auditing:
            # a name has no report only where it is not a name: in C
            pairs: Any = zip(names, found, strict=True)
            reports: dict[str, HostReport] = dict(itertools.compress(
                pairs, map(operator.is_not, found, itertools.repeat(None))))
            self._audit(spec_obj, wanted, True, hosts, names, reports, passed)
        return passed

    def _audit(self, spec_obj: Any, wanted: str, valid: bool,
               hosts: list[Any], names: list[str | None],
               reports: dict[str, HostReport], passed: list[Any]) -> None:
        if not self._audit_on or not decision_record.enabled():
            return
        try:
            decision_record.emit(
                wanted=wanted, valid=valid,
                hosts=list(zip(names, hosts, strict=True)), reports=reports,
                passed=[self._name_of(h) or str(h) for h in passed],
                server=self._client.backend.describe(),
                request=_request_fields(spec_obj))
        except Exception:  # noqa: BLE001 - auditing must not break a boot
            LOG.exception("TrustedFilter could not write its audit event")

    def host_passes(self, host_state: Any, spec_obj: Any) -> bool:
        """One host at a time; Nova calls :meth:`filter_all` instead."""
        return bool(self.filter_all([host_state], spec_obj))

    def _name_of(self, host_state: Any) -> str | None:
        # the one rule for every component (trustpool.attestation.identity)
        return self._identity.name_of_host_state(host_state)

    def _log_rejection(self, host: Any, name: str | None, wanted: str,
                       report: HostReport | None) -> None:
        if name is None:
            LOG.debug("TrustedFilter rejects %(host)s: it has no "
                      "%(attr)s to ask the attestation service about "
                      "(wanted %(wanted)s)",
                      {"host": host, "attr": self._identity.attribute,
                       "wanted": wanted})
            return
        assert report is not None  # the client answers for every name
        LOG.debug("TrustedFilter rejects %(name)s: wanted %(wanted)s, found "
                  "%(found)s (%(reason)s)",
                  {"name": name, "wanted": wanted,
                   "found": report.level.value, "reason": report.reason})

    def _check_trait(self, spec_obj: Any) -> None:
        """Warn, once per flavor, when scale mode is on but the flavor
        does not let Placement pre-filter on the trust trait."""
        name = _flavor_name(spec_obj)
        if name in self._trait_warned:
            return
        if _extra_specs(spec_obj).get(f"trait:{self._trait}") == "required":
            return
        if len(self._trait_warned) < _MAX_BAD_VALUES_REMEMBERED:
            self._trait_warned.add(name)
        LOG.warning("Flavor %(flavor)s asks for trusted hosts but not for "
                    "trait:%(trait)s=required, so Placement cannot "
                    "pre-filter it on trust; TrustedFilter still checks "
                    "every candidate.", {"flavor": name,
                                         "trait": self._trait})

    def _log_unexpected(self, exc: BaseException) -> None:
        try:
            text = self._client.redact(exc)
        except Exception:  # noqa: BLE001 - nothing may escape from here
            text = "(message not shown)"
        key = f"{type(exc).__name__}: {text}"[:300]
        if key in self._errors_logged:
            return
        if len(self._errors_logged) < _MAX_BAD_VALUES_REMEMBERED:
            self._errors_logged.add(key)
        LOG.error("TrustedFilter passes no host for this request: "
                  "unexpected %s", key)

    def _log_bad_value(self, wanted: str, spec_obj: Any) -> None:
        if wanted in self._bad_values_logged:
            return
        if len(self._bad_values_logged) < _MAX_BAD_VALUES_REMEMBERED:
            self._bad_values_logged.add(wanted)
        LOG.error("TrustedFilter rejects every host for flavor %(flavor)s: "
                  "%(spec)s=%(value)r is not one of %(valid)s",
                  {"flavor": _flavor_name(spec_obj), "spec": EXTRA_SPEC,
                   "value": wanted, "valid": ", ".join(sorted(_VALID))})


def _passing(hosts: list[Any], found: list[TrustLevel | None],
             wanted: TrustLevel) -> list[Any]:
    """The hosts whose level is exactly the ``wanted`` one.

    The same test as the logging loop of :meth:`TrustedFilter._filter_all`,
    in C for the warm pass: a host without a level (``None``) never
    passes; the level must be the very member, so a look-alike string
    never passes.
    """
    return list(itertools.compress(hosts, map(
        operator.is_, found, itertools.repeat(wanted))))


def _send_audit_to(path: str) -> None:
    """Open the audit file now, while the scheduler starts: a path that
    cannot work stops it with the option's name, instead of every decision
    event being lost in silence later.

    :raises ConfigurationError: naming ``audit_log_file`` and the path.
    """
    try:
        decision_record.send_to_file(path)
    except ValueError as exc:
        raise tp_conf.ConfigurationError("audit_log_file", str(exc)) from None
    except OSError as exc:
        raise tp_conf.ConfigurationError(
            "audit_log_file", f"cannot append to {path}: "
            f"{exc.strerror or exc} (its directory must exist and be "
            "writable by the scheduler's user)") from None


def _extra_specs(spec_obj: Any) -> dict[str, str]:
    """The request's flavor extra specs; empty when there are none."""
    flavor = getattr(spec_obj, "flavor", None)
    if flavor is None:
        return {}
    try:
        return flavor.extra_specs if "extra_specs" in flavor else {}
    except TypeError:  # not a Nova object: a plain attribute
        return getattr(flavor, "extra_specs", None) or {}


def _wanted_level(spec_obj: Any) -> str | None:
    value = _extra_specs(spec_obj).get(EXTRA_SPEC)
    return None if value is None else str(value)


def _flavor_name(spec_obj: Any) -> str:
    """The flavor's name for a log line; never raises.

    A Nova object lazy-loads unset fields and raises when it cannot, and
    nothing a log line needs may break a scheduling request.
    """
    flavor: Any = getattr(spec_obj, "flavor", None)
    try:
        if "name" in flavor:
            return str(flavor.name)
    except TypeError:  # not a Nova object
        return str(getattr(flavor, "name", "?"))
    return "?"


def _request_fields(spec_obj: Any) -> dict[str, Any]:
    """Ids that tie an audit event to the request and the instance."""
    fields: dict[str, Any] = {"request_id": None, "instance_uuid": None,
                              "project_id": None,
                              "flavor": _flavor_name(spec_obj)}
    context = oslo_context.get_current()
    if context is not None:
        fields["request_id"] = getattr(context, "request_id", None)
    for key in ("instance_uuid", "project_id"):
        try:
            if key in spec_obj:
                fields[key] = getattr(spec_obj, key)
        except TypeError:  # not a Nova object
            fields[key] = getattr(spec_obj, key, None)
    return fields
