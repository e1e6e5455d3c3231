# SPDX-License-Identifier: Apache-2.0
"""Every trustpool option, in the ``[trusted_computing]`` group of nova.conf.

The first seven options keep the names, types and defaults of Nova's removed
in-tree TrustedFilter so that an old nova.conf works unchanged; the spellings
used by the old install guides (``server``, ``port``, ...) are accepted as
deprecated names. Options are always registered on a ``ConfigOpts`` object
passed in by the caller: the library never reads a global configuration.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from oslo_config import cfg

from trustpool.attestation import localfiles
from trustpool.attestation.backends import backend_class, load_backend, oat
from trustpool.attestation.backends._http import TRANSPORT_OPTS
from trustpool.attestation.backends.base import COMMON_GROUP
from trustpool.attestation.backends.process import ProcessBackend, offloadable
from trustpool.attestation.client import WAIT_MARGIN, AttestationClient
from trustpool.attestation.identity import HostIdentity
from trustpool.exceptions import ConfigurationError

__all__ = [
    "ALL_OPTS",
    "GROUP",
    "ConfigurationError",
    "file_problems",
    "TRAIT_GROUP",
    "TRAIT_OPTS",
    "header_value_problem",
    "host_identity",
    "make_group",
    "make_client",
    "option_problem",
    "register_opts",
    "refresh_lead",
    "register_trait_opts",
    "secret_values",
    "trait_name",
    "validate",
    "where_set",
]

GROUP = COMMON_GROUP



def make_group() -> cfg.OptGroup:
    # A new OptGroup each time: oslo.config keeps overrides and values on
    # the OptGroup object, so sharing one between ConfigOpts objects would
    # leak settings from one to the other.
    return cfg.OptGroup(
        name=GROUP,
        title="Trusted compute pools",
        help="How the TrustedFilter reaches the attestation service that "
        "says which compute hosts booted into a known-good, measured state.",
    )


_client_opts = [
    cfg.IntOpt(
        "attestation_auth_timeout",
        default=60,
        min=0,
        help="Seconds an attestation answer is trusted for, counted on the "
        "scheduler's monotonic clock from the moment the answer arrived. "
        "The server's own timestamp never extends it. 0 asks the server "
        "on every scheduling request.",
    ),
    cfg.StrOpt(
        "backend",
        default="oat",
        help="Attestation service to ask, by the name of a plugin in the "
        "'trustpool.attestation.backends' entry point group: 'oat' "
        "(OpenAttestation, Mt. Wilson / OpenCIT PollHosts API), 'keylime' "
        "or 'file' where installed.",
    ),
    cfg.StrOpt(
        "host_attribute",
        default="nodename",
        choices=[
            ("nodename", "the hypervisor host name, as the old in-tree "
             "filter used"),
            ("host", "the nova-compute service host name"),
        ],
        help="Which name of a compute host is sent to the attestation "
        "service, by the filter, 'trustpool status', 'trustpool audit' and "
        "'trustpool sync-traits' alike. With 'host', sync-traits needs the "
        "Nova API ([trustpool_nova] credentials) to find the service host "
        "of each compute node provider (Placement names providers by "
        "hypervisor host name); a provider it cannot map loses the trait "
        "and the pass fails.",
    ),
    cfg.IntOpt(
        "max_report_age",
        default=0,
        min=0,
        help="When set, a host whose last attestation, by the server's own "
        "timestamp, is older than this many seconds counts as 'unknown'. So "
        "does a host whose answer has no readable timestamp (none, null, a "
        "number, an unknown format), and one whose timestamp lies further in "
        "the future than the allowed clock skew: the smaller of 60 seconds "
        "and this value. 0 turns the check off.",
    ),
    cfg.FloatOpt(
        "failure_retry_interval",
        default=10.0,
        min=0,
        help="Seconds a failed poll of the attestation service is "
        "remembered. In that window, hosts that need a fresh answer count "
        "as 'unknown' at once instead of every request waiting on a dead "
        "server again.",
    ),
    cfg.BoolOpt(
        "refresh_ahead",
        default=True,
        help="Refresh cached answers in the background shortly before they "
        "expire (in the last quarter of attestation_auth_timeout, and at "
        "most connect_timeout + read_timeout before), so that scheduling "
        "requests find fresh answers instead of one request in every "
        "attestation_auth_timeout waiting on the attestation service. It "
        "never extends trust: an answer counts only until "
        "attestation_auth_timeout after it arrived, and if the refresh "
        "fails or hangs, its hosts are 'unknown' from then on, exactly as "
        "without this option. Only hosts that scheduling requests asked "
        "about in that last quarter are refreshed; hosts nobody asks about "
        "expire. One refresh runs at a time, in a thread that waits for "
        "the next answers due and ends when none has come due for an "
        "attestation_auth_timeout (a thread started per refresh cost the "
        "request that started it two turns of a busy interpreter). "
        "When a recent refresh took longer than two thirds of that lead (a "
        "busy scheduler takes in a large answer slowly), the next ones "
        "start one and a half times that long ahead, up to nine tenths of "
        "attestation_auth_timeout, so that they still land before the "
        "answers they replace expire.",
    ),
    cfg.BoolOpt(
        "refresh_ahead_process",
        default=True,
        help="Make the refreshes ahead (refresh_ahead) in a helper process "
        "that nova-scheduler starts at the first one and that ends with "
        "it. A scheduler whose threads keep the Python interpreter busy "
        "takes in a large answer slowly in the background: each read of "
        "the connection waits for the interpreter again (seconds for "
        "10,000 hosts with eight busy threads), and a late refresh makes "
        "requests wait. The helper asks the attestation service with the "
        "same backend and options and hands over the answer in one read; "
        "the scheduler checks it and keeps it exactly as its own. The "
        "options travel over a pipe, never the command line. If the "
        "helper cannot start, dies or hangs, the refresh is made in the "
        "scheduler's process (logged once a minute; after three failures "
        "in a row the helper is not used again). Backends with their own "
        "reader only (oat); requests that find an answer missing or "
        "expired still ask from their own process, as without it.",
    ),
]

#: The decision record (trustpool.decision_record), read by the filter.
_audit_opts = [
    cfg.BoolOpt(
        "audit_record",
        default=True,
        help="Log one JSON line (the decision record) on the "
        "'trustpool.audit' logger, at INFO, for every scheduling request "
        "whose flavor carries trust:trusted_host. False turns it off and "
        "saves building it; audit_log_file is then not opened.",
    ),
    cfg.StrOpt(
        "audit_log_file",
        help="Absolute path of a file that gets the decision record, and "
        "only it: one JSON line per event, no prefix, appended; reopened "
        "when logrotate moves it. The events then stay out of "
        "nova-scheduler's own log, whose log_file, formats, debug and "
        "default_log_levels are untouched. Unset: the events go to Nova's "
        "log like any other logger's. The directory must exist and the "
        "scheduler's user must be able to write there, or the scheduler "
        "does not start. A level set for trustpool.audit in "
        "default_log_levels still applies.",
    ),
]

#: Every [trusted_computing] option: the old in-tree filter's names first
#: (the server's, declared by the oat backend, and the transport's, shared
#: by the HTTP backends), then trustpool's own.
ALL_OPTS = (oat.SERVER_OPTS + _client_opts[:1] + TRANSPORT_OPTS
            + _client_opts[1:] + _audit_opts)



def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[trusted_computing]`` options on ``conf``.

    Safe to call more than once on the same object.
    """
    if GROUP not in conf:
        conf.register_group(make_group())
    conf.register_opts(ALL_OPTS, group=GROUP)


TRAIT_GROUP = "trustpool_traits"
_TRAIT = re.compile(r"CUSTOM_[A-Z0-9_]{1,248}")

TRAIT_OPTS = [
    cfg.StrOpt(
        "trait", default="CUSTOM_TRUSTPOOL_TRUSTED",
        help="Placement trait that 'trustpool sync-traits' keeps on the "
        "compute node providers attested trusted, and removes from every "
        "other provider. A custom trait name: the prefix ``CUSTOM_`` "
        "followed by A-Z, 0-9 and _."),
    cfg.BoolOpt(
        "sync_enabled", default=False,
        help="Set when 'trustpool sync-traits' runs for this cloud: "
        "TrustedFilter then warns, once per flavor, about trusted flavors "
        "that do not also require the trait (and so miss Placement's "
        "pre-filtering)."),
    cfg.StrOpt(
        "compute_provider_trait", default="COMPUTE_NODE",
        help="Only root resource providers with this trait can carry the "
        "trust trait; Nova puts COMPUTE_NODE on the compute node providers "
        "it creates, which are named by hypervisor host name. Every other "
        "provider carrying the trust trait (sharing providers, nested "
        "children, providers without this trait) loses it."),
    cfg.IntOpt(
        "concurrency", default=8, min=1,
        help="Providers updated in parallel by sync-traits."),
    cfg.StrOpt(
        "metrics_listen",
        help="HOST:PORT on which 'trustpool sync-traits --interval' serves "
        "Prometheus metrics at /metrics (plain HTTP; anything else gets "
        "404), e.g. 127.0.0.1:9464 or [::1]:9464. Unset (the default): no "
        "listener. Needs the prometheus_client package (the 'metrics' "
        "extra). The metrics name hosts and trust levels, never a secret; "
        "bind to a management address, or to 127.0.0.1 behind a proxy, "
        "since anyone who reaches it can read the fleet's trust state."),
]


def register_trait_opts(conf: cfg.ConfigOpts) -> None:
    """The ``[trustpool_traits]`` options: read by the filter (for its
    warning) and by the trait sync, so they live here, below both."""
    if TRAIT_GROUP not in conf:
        conf.register_group(cfg.OptGroup(TRAIT_GROUP, title="Trust as a "
                                         "Placement trait"))
    conf.register_opts(TRAIT_OPTS, group=TRAIT_GROUP)


def trait_name(conf: cfg.ConfigOpts) -> str:
    """The configured trait, validated.

    :raises ConfigurationError: when it is not a custom trait name.
    """
    register_trait_opts(conf)
    trait = conf[TRAIT_GROUP].trait
    if not _TRAIT.fullmatch(trait or ""):
        raise ConfigurationError(
            "trait", f"{trait!r} is not a custom trait name "
            "(CUSTOM_ followed by A-Z, 0-9 and _)", group=TRAIT_GROUP)
    return trait


def host_identity(conf: cfg.ConfigOpts) -> HostIdentity:
    """How this configuration names compute hosts to the attestation
    service (``host_attribute``): the one decision every component uses.
    """
    register_opts(conf)
    return HostIdentity(conf[GROUP].host_attribute)


def make_client(conf: cfg.ConfigOpts,
                **kwargs: Any) -> AttestationClient:
    """Build the attestation client and its backend from nova.conf.

    Registers trustpool's options on ``conf`` and checks them all, so a
    bad value fails here, at start-up, naming the option. Lives here, not
    in the library: the library is handed its settings and never reads
    trustpool's options itself.

    :raises trustpool.exceptions.ConfigurationError: on a bad option.
    """
    register_opts(conf)
    validate(conf)
    group = conf[GROUP]
    backend = load_backend(conf, group.backend)
    kwargs.setdefault("max_wait", group.connect_timeout +
                      group.read_timeout + WAIT_MARGIN)
    kwargs.setdefault("secrets", secret_values(conf))
    kwargs.setdefault("refresh_ahead", refresh_lead(
        conf, float(getattr(backend, "timeout", 0) or
                    group.connect_timeout + group.read_timeout)))
    if kwargs["refresh_ahead"] > 0 and group.refresh_ahead_process \
            and offloadable(backend) is None:
        kwargs.setdefault("background", ProcessBackend(backend))
    return AttestationClient(
        backend, ttl=group.attestation_auth_timeout,
        failure_retry_interval=group.failure_retry_interval,
        max_report_age=group.max_report_age, **kwargs)


def refresh_lead(conf: cfg.ConfigOpts, deadline: float) -> float:
    """Seconds before an answer's deadline at which a request that uses it
    starts a refresh ahead; 0 when ``refresh_ahead`` is off. ``deadline``
    is the backend's whole deadline for one exchange.

    A quarter of the TTL leaves a slow refresh time to land before the
    answers it replaces expire, at the cost of up to a third more requests to
    the attestation service; capped at one request's whole deadline, since
    a refresh that takes longer has failed anyway, so that a long TTL does
    not pay a long lead.
    """
    group = conf[GROUP]
    if not group.refresh_ahead or group.attestation_auth_timeout <= 0:
        return 0.0
    return min(group.attestation_auth_timeout / 4.0, deadline)


def validate(conf: cfg.ConfigOpts) -> None:
    """Read every option once so bad values fail at start-up, not later.

    oslo.config checks types lazily, at first access; doing all the
    accesses here turns a typo in nova.conf into one clear error when the
    scheduler starts, naming the option and the file it came from, instead
    of a failure in the middle of a scheduling request. The same holds for
    the files the backend reads (see :func:`file_problems`).

    :raises ConfigurationError: on a value that cannot work.
    """
    for opt in ALL_OPTS:
        problem = option_problem(conf, opt.dest)
        if problem:
            raise ConfigurationError(opt.dest, problem)
    for group, option, problem in file_problems(conf):
        raise ConfigurationError(option, problem, group=group)


def file_problems(conf: cfg.ConfigOpts) -> list[tuple[str, str, str]]:
    """``(group, option, problem)`` for each file option of the configured
    backend that cannot work, each problem ending with the path and the
    configuration file that set the option.

    Every file set in the backend's
    :attr:`~trustpool.attestation.backends.AttestationBackend.FILE_OPTS`
    must be a regular file this user can read (a FIFO or a device is
    refused without blocking); PEM files must load in OpenSSL as they
    will at the first request (CA certificates; the client certificate
    with its key, unencrypted and matching). A ``"data"`` file (the trust
    file) is only opened: its content may change while the service runs,
    and a bad one fails closed then, so it is for check-config
    (:meth:`~trustpool.attestation.backends.AttestationBackend.self_check`).

    Shared by start-up validation, which stops at the first, and
    ``trustpool check-config``, which lists them all.

    :raises ConfigurationError: when the backend itself is unknown.
    """
    file_opts = backend_class(conf, conf[GROUP].backend).FILE_OPTS
    paths = {(group, option): getattr(conf[group], option)
             for group, option, _ in file_opts}
    cert = next(((g, o) for g, o, kind in file_opts if kind == "cert"), None)
    key = next(((g, o) for g, o, kind in file_opts if kind == "key"), None)
    problems: dict[tuple[str, str], list[str]] = {}
    for group, option, kind in file_opts:
        path = paths[(group, option)]
        if not path:
            continue
        found = problems.setdefault((group, option), [])
        if kind == "key" and not (cert and paths[cert]):
            found.append(f"set, but {_option_name(cert, group)} is not")
        try:
            if kind == "ca":
                problem = localfiles.ca_problem(path)
            else:
                with localfiles.open_regular(path, sys.maxsize, "file"):
                    problem = None
        except localfiles.LocalFileError as exc:
            problem = exc.problem
        if problem:
            found.append(problem)
    cert_path = paths[cert] if cert else None
    key_path = paths[key] if key else None
    if cert and cert_path and not problems[cert] and not (
            key and key_path and problems[key]):
        try:
            chain = localfiles.cert_chain_problem(cert_path, key_path)
        except localfiles.LocalFileError as exc:  # changed meanwhile
            chain = ("key" if exc.path == key_path else "cert", exc.problem)
        if chain:
            which, problem = chain
            problems[key if which == "key" and key and key_path
                     else cert].append(problem)
    return [(group, option, _with_place(conf, group, option, problem,
                                        paths[(group, option)]))
            for group, option, _ in file_opts
            for problem in problems.get((group, option), [])]


def _option_name(option: tuple[str, str] | None, group: str) -> str:
    """``option`` as a message names it: bare in ``group``, else with its
    group."""
    if option is None:
        return "a client certificate option"
    return option[1] if option[0] == group else f"[{option[0]}] {option[1]}"


def _with_place(conf: cfg.ConfigOpts, group: str, option: str,
                problem: str, path: str) -> str:
    if problem.startswith("set, but "):
        return problem + where_set(conf, option, group)
    shown = "".join(c if c.isprintable() else "?" for c in path)
    return f"{problem}: {shown}{where_set(conf, option, group)}"


def where_set(conf: cfg.ConfigOpts, option: str, group: str = GROUP) -> str:
    """`` (set in FILE)``, or how else ``[group] option`` got its value
    (the command line, the environment, its default); empty when it was
    set in code or cannot be told. For messages that name an option's
    value."""
    try:
        location = conf.get_location(option, group)
    except Exception:  # noqa: BLE001 - where is a nicety, never a failure
        return ""
    if location is None:
        return ""
    if location.location is cfg.Locations.user and location.detail:
        return f" (set in {location.detail})"
    if location.location is cfg.Locations.command_line:
        return " (set on the command line)"
    if location.location is cfg.Locations.environment:
        return f" (set by the environment variable {location.detail})"
    if location.location is cfg.Locations.opt_default:
        return " (the default)"
    return ""


def option_problem(conf: cfg.ConfigOpts, name: str,
                   group: str = GROUP) -> str | None:
    """Why option ``name`` cannot be read, with where its value came from.

    ``None`` when the value is fine. oslo.config's own message carries a
    ``LocationInfo(...)`` repr; operators want the file name.
    """
    try:
        value = getattr(conf[group], name)
    except (cfg.Error, ValueError) as exc:
        text = str(exc)
        reason = text.split(" is not valid: ", 1)[-1]
        where = _DETAIL.search(text)
        if where:
            return f"invalid value in {where.group(1)}: {reason}"
        return reason
    if group == GROUP and name in _HEADER_OPTS:
        return header_value_problem(value)
    return None


#: options sent as HTTP header values
_HEADER_OPTS = frozenset({"attestation_auth_blob"})


def header_value_problem(value: str | None) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value, or ``None``.

    Checked at start-up because the alternative is worse: requests refuses
    such a header at the first request and quotes the value in its error,
    so the secret would reach the log, every host's reason and the audit
    record. The message never quotes the value.
    """
    if not value:
        return None
    if "\n" in value or "\r" in value:
        return ("contains a line break (in nova.conf, a continuation line: "
                "an indented line after the option joins it); a header "
                "value cannot hold one. Put the value on one line")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character; a header value cannot"
    if not value.isprintable():
        return ("contains a character that is not printable (a no-break "
                "space, a soft hyphen...); a header value should not")
    if value != value.strip():
        return "starts or ends with white space; a header value cannot"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return ("contains characters outside Latin-1, which an HTTP "
                "header cannot carry")
    return None


_DETAIL = re.compile(r"detail='([^']*)'")


def secret_values(conf: cfg.ConfigOpts) -> list[str]:
    """The values of every option declared ``secret`` on ``conf``, in any
    group (the auth blob, keystoneauth passwords), for redaction.

    Never raises: an option whose value cannot be read has nothing to hide.
    """
    found: list[str] = []
    try:
        # oslo.config has no public walk over registered options; its own
        # log_opt_values walks these same two tables.
        tables = [(None, conf._opts)] + [  # noqa: SLF001
            (name, group._opts)  # noqa: SLF001
            for name, group in conf._groups.items()]  # noqa: SLF001
    except AttributeError:
        return found
    for group, opts in tables:
        for name, info in list(opts.items()):
            if not getattr(info.get("opt"), "secret", False):
                continue
            try:
                value = (conf[name] if group is None
                         else getattr(conf[group], name))
            except Exception:  # noqa: BLE001, S112 - unreadable: nothing
                continue
            if isinstance(value, str) and value:
                found.append(value)
    return found
