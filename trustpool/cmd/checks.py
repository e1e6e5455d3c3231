# SPDX-License-Identifier: Apache-2.0
"""Configuration checks for ``trustpool check-config``.

Each check returns problems that would keep the filter from working (or
make it unsafe) as ``(option, message)`` pairs, so the command can list
all of them at once instead of stopping at the first, as the scheduler
does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import decision_record
from trustpool.attestation.backends import backend_class, load_backend
from trustpool.attestation.backends.oat import OATBackend
from trustpool.exceptions import ConfigurationError
from trustpool.openstack import compute
from trustpool.quarantine import options as quarantine_options
from trustpool.revocation import options as events_options

__all__ = ["Finding", "check"]

Finding = tuple[str, str, str]  # (severity, "[group] option", message)
_URL_LIKE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: backends that reach their service with attestation_scheme
_HTTP_BACKENDS = frozenset({"oat", "keylime"})


def check(conf: cfg.ConfigOpts) -> list[Finding]:
    """Every problem found in ``conf``, errors first."""
    tp_conf.register_opts(conf)
    findings: list[Finding] = []
    group = conf[tp_conf.GROUP]
    for opt in tp_conf.ALL_OPTS:
        problem = tp_conf.option_problem(conf, opt.dest)
        if problem:
            findings.append(("error", _name(opt.dest), problem))
    if findings:
        return findings
    for step in _CHECKS:
        findings.extend(step(conf))
    if not any(sev == "error" for sev, _, _ in findings):
        findings.extend(_backend(conf, group.backend))
    findings.sort(key=lambda f: ("error", "warning", "info").index(f[0]))
    return findings


def _name(option: str, group: str = tp_conf.GROUP) -> str:
    return f"[{group}] {option}"


def _backend(conf: cfg.ConfigOpts, name: str) -> list[Finding]:
    """The backend built as the scheduler builds it, and its own check
    of the data it reads locally (the file backend's trust file, read and
    parsed by the backend's own code)."""
    try:
        backend = load_backend(conf, name)
    except ConfigurationError as exc:
        return [("error", _name(exc.option, exc.group),
                 str(exc).split(": ", 1)[-1])]
    try:
        return [(severity, _name(option, group),
                 message + tp_conf.where_set(conf, option, group))
                for severity, group, option, message in backend.self_check()]
    finally:
        backend.close()


def _files(conf: cfg.ConfigOpts) -> list[Finding]:
    try:
        found = [("error", _name(option, group), problem)
                 for group, option, problem in tp_conf.file_problems(conf)]
    except ConfigurationError:
        return []  # an unknown backend: reported when it is loaded
    return found + _unread_files(conf)


def _unread_files(conf: cfg.ConfigOpts) -> list[Finding]:
    """[trusted_computing] file options set for a backend that does not
    read them: Keylime's TLS files are in [keylime], and a certificate
    set in the wrong group is simply not sent."""
    group = conf[tp_conf.GROUP]
    used = {(g, o) for g, o, _ in backend_class(conf, group.backend).FILE_OPTS}
    found = []
    for _, option, _kind in OATBackend.FILE_OPTS:
        if getattr(group, option) and (tp_conf.GROUP, option) not in used:
            found.append(("warning", _name(option),
                          f"set, but the {group.backend!r} backend does not "
                          "read it" + tp_conf.where_set(conf, option)))
    return found


def _server(conf: cfg.ConfigOpts) -> list[Finding]:
    group = conf[tp_conf.GROUP]
    if group.backend != "oat":
        return []
    server = group.attestation_server
    if not server:
        return [("error", _name("attestation_server"),
                 "not set; the 'oat' backend needs the attestation "
                 "server's host name or address")]
    if _URL_LIKE.match(server):
        return [("error", _name("attestation_server"),
                 f"{server!r} is a URL; give only the host name and set "
                 "attestation_scheme, attestation_port and "
                 "attestation_api_url")]
    return []


def _transport(conf: cfg.ConfigOpts) -> list[Finding]:
    group = conf[tp_conf.GROUP]
    found = []
    if group.backend in _HTTP_BACKENDS and \
            group.attestation_scheme == "http":
        found.append(("warning", _name("attestation_scheme"),
                      f"http with the '{group.backend}' backend: trust "
                      "answers travel in plain text and can be forged by "
                      "anyone on the network path"))
    if group.attestation_insecure_ssl:
        found.append(("warning", _name("attestation_insecure_ssl"),
                      "TLS certificates are not verified: anyone on the "
                      "network path can forge trust answers"))
    if group.connect_timeout + group.read_timeout > 30:
        found.append(("warning", _name("read_timeout"),
                      "a scheduling request may wait "
                      f"{group.connect_timeout + group.read_timeout:g}s on a "
                      "slow attestation server"))
    return found


def _host_naming(conf: cfg.ConfigOpts) -> list[Finding]:
    """``host_attribute = host`` with the trait sync on: the sync can name
    compute node providers by service host only through the Nova API."""
    if not tp_conf.host_identity(conf).needs_service_host:
        return []
    tp_conf.register_trait_opts(conf)
    compute.register_opts(conf)
    if not conf[tp_conf.TRAIT_GROUP].sync_enabled or \
            conf[compute.GROUP].auth_type:
        return []
    return [("warning", _name("host_attribute"),
             "'host' with [trustpool_traits] sync_enabled, but "
             "[trustpool_nova] has no credentials (auth_type): sync-traits "
             "cannot map compute node providers (named by hypervisor host "
             "name) to service hosts, so every provider loses the trait "
             "and each pass fails")]


def _audit_file(conf: cfg.ConfigOpts) -> list[Finding]:
    """The scheduler will not start if it cannot append to the file."""
    group = conf[tp_conf.GROUP]
    if not group.audit_record or not group.audit_log_file:
        return []
    problem = decision_record.file_problem(group.audit_log_file)
    return [("error", _name("audit_log_file"), problem)] if problem else []


def _events(conf: cfg.ConfigOpts) -> list[Finding]:
    """The revocation listener of sync-traits --interval, when set."""
    group_name = events_options.GROUP
    try:
        if events_options.listen_address(conf) is None:
            return []
        events_options.validate(conf)
    except ConfigurationError as exc:
        return [("error", f"[{exc.group}] {exc.option}",
                 str(exc).split(": ", 1)[-1])]
    group = conf[group_name]
    found = []
    if not group.revocation_cert_file:
        found.append(("warning", _name("revocation_cert_file", group_name),
                      "not set: revocation events are accepted unsigned, "
                      "so anyone who can reach the listener can take trust "
                      "away from any host"))
    if group.allow_plain_http:
        found.append(("warning", _name("allow_plain_http", group_name),
                      "revocation events travel in plain text"))
    return found


def _quarantine(conf: cfg.ConfigOpts) -> list[Finding]:
    """Quarantine's settings when it is enabled (an info line), and what
    would keep it from starting. Off (the default): nothing to say."""
    group_name = quarantine_options.GROUP
    if not quarantine_options.enabled(conf):
        return []
    found = [("info", _name("enabled", group_name),
              quarantine_options.summary(conf)
              + " (acts in 'trustpool sync-traits --interval' only)")]
    try:
        quarantine_options.validate(conf)
    except ConfigurationError as exc:
        return [("error", f"[{exc.group}] {exc.option}",
                 str(exc).split(": ", 1)[-1])] + found
    events_options.register_opts(conf)
    events = conf[events_options.GROUP]
    if conf[group_name].on_revocation and events.listen and \
            not events.revocation_cert_file:
        found.append(("warning", _name("on_revocation", group_name),
                      "set, but [trustpool_events] revocation_cert_file is "
                      "not: events arrive unsigned, so none quarantines "
                      "(they only remove the trust trait)"))
    return found


_CHECKS: list[Callable[[cfg.ConfigOpts], list[Finding]]] = [
    _server, _files, _transport, _host_naming, _audit_file, _events,
    _quarantine]
