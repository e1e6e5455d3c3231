# SPDX-License-Identifier: Apache-2.0
"""``trustpool``: see what TrustedFilter sees, and check the configuration.

Reads nova.conf the OpenStack way (``--config-file``, ``--config-dir``;
by default the first ``nova.conf`` and then the first ``trustpool.conf``
found in ``~/.nova/``, ``~/``, ``/etc/nova/``, ``/etc/``, the later file
overriding). Exit codes, for scripts and monitoring: 0 all good, 1 a host
is not trusted (``status``; also when the backend lists no host at all),
drift (``audit``) or the configuration has errors (``check-config``), 2
the command could not do its job (bad configuration, attestation service
unreachable).
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg
from oslo_log import log as oslo_logging

from trustpool import conf as tp_conf
from trustpool import drift, metrics, quarantine, revocation, trait_sync
from trustpool.attestation import (
    AttestationError,
    ConfigurationError,
    HostReport,
    TrustLevel,
)
from trustpool.attestation.redact import Redactor
from trustpool.cmd import checks, compliance
from trustpool.openstack import compute, placement

__all__ = ["EXIT_CODES", "main", "version"]

OK, NOT_TRUSTED, FAILED = 0, 1, 2
#: What each exit code means, per command: the subcommands' ``--help``
#: (and so doc/source/cli.rst) and README's exit code table say exactly
#: this; tests/integration/test_readme.py compares the table with it.
#: Any command also exits 2 on bad arguments or an unexpected error.
EXIT_CODES: dict[str, dict[int, str]] = {
    "status": {OK: "every host listed is trusted",
               NOT_TRUSTED: "some host is not trusted",
               FAILED: "could not ask (configuration, connection)"},
    "check-config": {OK: "no errors (warnings allowed)",
                     NOT_TRUSTED: "errors, each printed with its option",
                     FAILED: "the configuration cannot be read"},
    "sync-traits": {OK: "the pass succeeded",
                    FAILED: "the pass failed (Placement, attestation), or "
                    "bad configuration"},
    "audit": {OK: "no drift", NOT_TRUSTED: "drift",
              FAILED: "could not check (configuration, Nova API, "
              "attestation)"},
    "report": {OK: "the report is written",
               NOT_TRUSTED: "written; hosts lost trust in the window",
               FAILED: "nothing written (log unreadable or corrupt, bad "
               "time, no event in the window)"},
    "explain": {OK: "still on a host at the level asked for",
                NOT_TRUSTED: "drifted, or no logged decision admitted its "
                "host",
                FAILED: "not in the logs, or Nova or the attestation "
                "service could not be asked"},
    "--version": {OK: "the version is printed"},
}
#: Bumped only on incompatible changes to ``status --format json``.
STATUS_SCHEMA_VERSION = 1


def version() -> str:
    """The installed distribution's version, as pbr computed it at build
    time from git tags; what ``trustpool --version`` prints."""
    try:
        return importlib.metadata.version("trustpool")
    except importlib.metadata.PackageNotFoundError:
        # run from a source tree that was never installed
        return "unknown (not installed)"


def _exit_codes(command: str) -> str:
    return "exit codes: " + "; ".join(
        f"{code} {meaning}" for code, meaning in EXIT_CODES[command].items())


def _add_parsers(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", epilog=_exit_codes("status"), help="Ask the attestation "
        "service now (no cache) how far it trusts hosts, as TrustedFilter "
        "would see them.")
    status.add_argument("hosts", nargs="*", metavar="HOST",
                        help="host names as the filter sends them "
                        "([trusted_computing] host_attribute: the "
                        "hypervisor host name by default, the compute "
                        "service host with 'host'); none: every host the "
                        "backend can list")
    status.add_argument("--format", choices=("table", "json", "prometheus"),
                        default="table", help="prometheus: the host "
                        "gauges in the text exposition format, for "
                        "node_exporter's textfile collector")
    subparsers.add_parser(
        "check-config", epilog=_exit_codes("check-config"),
        help="Check the [trusted_computing] configuration and the "
        "backend's (with every file it reads: CA, client certificate and "
        "key, trust file) and report every problem with the option's "
        "name.")
    sync_traits = subparsers.add_parser(
        "sync-traits", epilog=_exit_codes("sync-traits") + "; with "
        "--interval it runs until stopped, logging failed passes",
        help="Put the trait of [trustpool_traits] on the "
        "compute node providers attested trusted and remove it from all "
        "others (Placement credentials from nova.conf's [placement]).")
    sync_traits.add_argument(
        "--interval", type=float, default=None, metavar="SECONDS",
        help="keep running, one sync every SECONDS (default: one sync)")
    audit = subparsers.add_parser(
        "audit", epilog=_exit_codes("audit"), help="Report instances of "
        "trusted flavors running on hosts that are not trusted now (Nova "
        "API credentials in [trustpool_nova]).")
    audit.add_argument("--format", choices=("table", "json"),
                       default="table")
    audit.add_argument("--disable-untrusted-hosts", action="store_true",
                       help="disable the nova-compute service of each host "
                       "attested untrusted, with the reason 'trustpool: "
                       "host not trusted'; running instances are not "
                       "touched")
    compliance.add_parsers(subparsers)


def main(argv: Sequence[str] | None = None, *,
         compute_api: Any = None, placement_api: Any = None) -> int:
    """Run the command; ``compute_api`` and ``placement_api`` replace the
    clients built from ``[trustpool_nova]`` and ``[placement]`` (tests).

    The outermost boundary of every command: whatever goes wrong, of
    whatever type, the command exits 2 ("could not do its job") with one
    line on standard error, with every configured secret masked; never a
    traceback, and never exit 1, which means "not trusted".
    """
    conf = cfg.ConfigOpts()
    try:
        return _main(conf, argv, compute_api, placement_api)
    except Exception as exc:  # noqa: BLE001 - the outermost boundary
        redact = Redactor(tp_conf.secret_values(conf))
        text = " ".join(redact(exc).split())[:500]
        return _fail(f"unexpected {type(exc).__name__}: {text}")


def _main(conf: cfg.ConfigOpts, argv: Sequence[str] | None,
          compute_api: Any, placement_api: Any) -> int:
    oslo_logging.register_options(conf)
    # Standard output carries the command's answer (JSON for scripts);
    # logs go to standard error unless nova.conf sends them elsewhere.
    conf.set_default("use_stderr", True)
    compute.register_opts(conf)
    placement.register_opts(conf)
    tp_conf.register_trait_opts(conf)
    revocation.register_opts(conf)
    quarantine.register_opts(conf)
    conf.register_cli_opt(cfg.SubCommandOpt(
        "command", title="commands", handler=_add_parsers))
    tp_conf.register_opts(conf)
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        # before any configuration file is read: the version of the
        # command must be there even when nova.conf is broken or unreadable
        print(version())
        return OK
    try:
        conf(args, project="nova", prog="trustpool", version=version())
    except cfg.Error as exc:
        return _fail(f"cannot read the configuration: {exc}")
    conf.set_default("default_log_levels",
                     ["stevedore=WARN", "urllib3=WARN"])
    oslo_logging.setup(conf, "trustpool")
    if conf.command.name == "check-config":
        return _check_config(conf)
    if conf.command.name == "sync-traits":
        return _sync_traits(conf, conf.command.interval, placement_api,
                            compute_api)
    if conf.command.name in compliance.COMMANDS:
        return compliance.run(conf, compute_api)
    if conf.command.name == "audit":
        return _audit(conf, conf.command.format,
                      conf.command.disable_untrusted_hosts, compute_api)
    return _status(conf, conf.command.hosts, conf.command.format)


def _fail(message: str) -> int:
    print(f"trustpool: {message}", file=sys.stderr)
    return FAILED


def _check_config(conf: cfg.ConfigOpts) -> int:
    findings = checks.check(conf)
    for severity, option, message in findings:
        print(f"{severity.upper()}: {option}: {message}")
    errors = sum(1 for f in findings if f[0] == "error")
    if not errors:
        group = conf[tp_conf.GROUP]
        warnings = sum(1 for f in findings if f[0] == "warning")
        print(f"OK: backend {group.backend!r}, {warnings} warning(s)")
        return OK
    print(f"{errors} error(s)", file=sys.stderr)
    return NOT_TRUSTED


def _status(conf: cfg.ConfigOpts, hosts: list[str], fmt: str) -> int:
    if fmt == "prometheus" and metrics.missing():
        return _fail(f"--format prometheus: {metrics.missing()}")
    try:
        client = tp_conf.make_client(conf)
    except ConfigurationError as exc:
        return _fail(str(exc))
    listed_none = False
    try:
        if not hosts:
            try:
                hosts = client.backend.list_hosts()
            except NotImplementedError as exc:
                return _fail(f"{exc}; name the hosts to check")
            listed_none = not hosts
        reports = client.attest_uncached(hosts) if hosts else {}
    except AttestationError as exc:
        return _fail(str(exc))
    finally:
        client.close()
    rows = [_row(reports[name]) for name in dict.fromkeys(hosts)]
    if fmt == "json":
        json.dump({"schema_version": STATUS_SCHEMA_VERSION,
                   "backend": client.backend.describe(),
                   "hosts": rows}, sys.stdout, indent=2)
        print()
    elif fmt == "prometheus":
        sys.stdout.write(metrics.status_exposition(
            reports[name] for name in dict.fromkeys(hosts)))
    else:
        _table(rows)
    if listed_none:
        # Exit 1, not 0: "every listed host is trusted" would be true of
        # no host at all, and a monitor reading 0 as "the pool is fine"
        # would miss that no host can take a trusted flavor. The command
        # did its job (the list was read), so not 2 either.
        print("trustpool: warning: no host is listed by "
              f"{client.backend.describe()}; none is trusted",
              file=sys.stderr)
        return NOT_TRUSTED
    trusted = all(r["level"] == TrustLevel.TRUSTED.value for r in rows)
    return OK if trusted else NOT_TRUSTED


def _sync_traits(conf: cfg.ConfigOpts, interval: float | None,
                 api: Any, compute_api: Any) -> int:
    given_compute = compute_api
    try:
        tp_conf.trait_name(conf)
        client = tp_conf.make_client(conf)
        if api is None:
            api = placement.PlacementAPI(placement.adapter_from_conf(conf))
    except ConfigurationError as exc:
        return _fail(str(exc))
    if compute_api is None and \
            tp_conf.host_identity(conf).needs_service_host:
        compute_api = _nova_for_names(conf)
    try:
        if interval is not None:
            return _serve(conf, api, client, interval, compute_api,
                          given_compute)
        # a pass never raises: it reports how it failed in its result
        result = trait_sync.sync(conf, api, client, compute_api)
    finally:
        client.close()
    print(result.summary())
    if not result.ok:
        return _fail(f"sync-traits failed: {result.failed}")
    return OK


def _serve(conf: cfg.ConfigOpts, api: Any, client: Any, interval: float,
           compute_api: Any, events_compute: Any) -> int:
    """``sync-traits --interval``: periodic passes and, when configured,
    Keylime revocation events, quarantine and Prometheus metrics, in one
    service: the events gate the passes (no trait back from an attestation
    older than a revocation), quarantine follows the passes' verdicts and
    the signed events, the metrics measure the gated pass."""
    try:
        guard = quarantine.start(conf, events_compute)
    except ConfigurationError as exc:
        return _fail(str(exc))
    try:
        events = revocation.start(
            conf, api, events_compute,
            guard.after_revocation if guard is not None else None)
    except ConfigurationError as exc:
        if guard is not None:
            guard.stop()
        return _fail(str(exc))
    try:
        gated = events.sync_pass() if events is not None else None
        # quarantine sees each pass's verdicts (in its own thread); the
        # metrics measure the pass with it
        watched = (guard.wrap(gated or trait_sync.sync)
                   if guard is not None else gated)
        try:
            one_pass = metrics.serve(
                conf, client, watched,
                events.observe if events is not None else None,
                functools.partial(setattr, guard, "observer")
                if guard is not None else None) or watched
        except ConfigurationError as exc:
            return _fail(str(exc))
        trait_sync.run_forever(conf, api, client, interval,
                               compute=compute_api, pass_=one_pass)
        return OK
    finally:
        if events is not None:
            events.stop()
        if guard is not None:
            guard.stop()


def _nova_for_names(conf: cfg.ConfigOpts) -> Any:
    """The Nova API that maps compute node providers to service hosts for
    ``host_attribute = host``. When it cannot be set up, the sync still
    runs (so that no provider keeps the trait unproven) and fails, saying
    why."""
    try:
        return compute.ComputeAPI(compute.adapter_from_conf(
            conf, "no credentials for the Nova API"))
    except Exception as exc:  # noqa: BLE001 - the sync reports it
        redact = Redactor(tp_conf.secret_values(conf))
        return compute.UnavailableComputeAPI(
            " ".join(redact(exc).split())[:300])


def _audit(conf: cfg.ConfigOpts, fmt: str, disable: bool,
           api: Any) -> int:
    try:
        client = tp_conf.make_client(conf)
        if api is None:
            api = compute.ComputeAPI(compute.adapter_from_conf(conf))
    except ConfigurationError as exc:
        return _fail(str(exc))
    try:
        report = drift.drift(conf, api, client, disable)
    except (AttestationError, compute.NovaAPIError) as exc:
        return _fail(str(exc))
    finally:
        client.close()
    if fmt == "json":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        rows = report["drift"]
        print(f"{report['checked_instances']} instance(s) of trusted "
              f"flavors on {len(report['checked_hosts'])} host(s); "
              f"{len(rows)} on hosts not trusted now")
        if rows:
            widths = [max(len(str(r[k])) for r in rows + [
                {k: k.upper() for k in ("instance", "host", "level")}])
                for k in ("instance", "host", "level")]
            print(f"{'INSTANCE':<{widths[0]}}  {'HOST':<{widths[1]}}  "
                  f"{'LEVEL':<{widths[2]}}  REASON")
            for r in rows:
                print(f"{r['instance']:<{widths[0]}}  {r['host']:<{widths[1]}}"
                      f"  {r['level']:<{widths[2]}}  {r['reason']}")
        for host in report["disabled_hosts"]:
            print(f"disabled nova-compute on {host}: "
                  f"{drift.DISABLE_REASON}")
    return NOT_TRUSTED if report["drift"] else OK


def _row(report: HostReport) -> dict[str, Any]:
    vtime = report.vtime
    return {
        "host": report.hostname,
        "level": report.level.value,
        "server_time": vtime.isoformat() if vtime else None,
        "age_seconds": (round(time.time() - vtime.timestamp(), 1)
                        if vtime else None),
        "backend": report.backend,
        "reason": report.reason,
    }


def _table(rows: list[dict[str, Any]]) -> None:
    header = ("HOST", "LEVEL", "SERVER TIME", "AGE", "BACKEND", "REASON")
    lines = [header]
    for row in rows:
        stamp = row["server_time"]
        if stamp:
            stamp = datetime.datetime.fromisoformat(stamp).strftime(
                "%Y-%m-%d %H:%M:%SZ")
        age = row["age_seconds"]
        lines.append((row["host"], row["level"], stamp or "-",
                      "-" if age is None else _age(age), row["backend"],
                      row["reason"]))
    widths = [max(len(str(line[i])) for line in lines)
              for i in range(len(header) - 1)]
    for line in lines:
        cells = [str(c).ljust(w) for c, w in zip(line, widths, strict=False)]
        print("  ".join(cells + [str(line[-1])]).rstrip())


def _age(seconds: float) -> str:
    if seconds < 0:
        return f"in {-seconds:.0f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


if __name__ == "__main__":
    sys.exit(main())
