# SPDX-License-Identifier: Apache-2.0
"""The ``[trustpool_quarantine]`` options: when the service disables a
host's nova-compute service, and when it gives it back."""

from __future__ import annotations

from oslo_config import cfg

from trustpool.exceptions import ConfigurationError
from trustpool.openstack import compute

__all__ = ["GROUP", "OPTS", "list_opts", "register_opts", "summary",
           "validate"]

GROUP = "trustpool_quarantine"

OPTS = [
    cfg.BoolOpt(
        "enabled", default=False,
        help="Let 'trustpool sync-traits --interval' disable the "
        "nova-compute service of a host that keeps failing attestation "
        "(or, with on_revocation, at once on a signed Keylime revocation), "
        "with a disabled_reason starting 'trustpool: quarantined', and "
        "re-enable it after trusted_passes trusted attestations in a row. "
        "It never re-enables a service it did not disable itself, never "
        "acts on 'unknown' (an attestation outage) and never touches "
        "running instances. Needs [trustpool_nova] credentials with the "
        "admin role."),
    cfg.IntOpt(
        "untrusted_passes", default=3, min=1, max=1000,
        help="Quarantine a host after this many periodic attestations in a "
        "row said 'untrusted'. An 'unknown' pass between them neither "
        "counts nor breaks the run; a 'trusted' one breaks it."),
    cfg.IntOpt(
        "trusted_passes", default=5, min=1, max=1000,
        help="Re-enable a service trustpool quarantined after this many "
        "periodic attestations in a row said 'trusted'. An 'unknown' or "
        "'untrusted' pass, or a revocation event, starts the count again."),
    cfg.BoolOpt(
        "on_revocation", default=True,
        help="Quarantine a host at once on a Keylime revocation event whose "
        "signature was verified against [trustpool_events] "
        "revocation_cert_file. Unsigned events (no certificate configured) "
        "only ever remove the trust trait: anyone who can reach the "
        "listener could send one."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    if GROUP not in conf:
        conf.register_group(cfg.OptGroup(
            GROUP, title="Quarantine with dampening",
            help="Disabling and re-enabling the nova-compute service of "
            "hosts that lose and regain trust, by 'trustpool sync-traits "
            "--interval'. Off by default."))
    conf.register_opts(OPTS, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, list(OPTS))]


def enabled(conf: cfg.ConfigOpts) -> bool:
    register_opts(conf)
    return bool(conf[GROUP].enabled)


def validate(conf: cfg.ConfigOpts) -> None:
    """Refuse quarantine that cannot act: it needs the Nova API.

    :raises ConfigurationError: naming ``[trustpool_nova] auth_type``
        when quarantine is enabled without credentials.
    """
    register_opts(conf)
    compute.register_opts(conf)
    if conf[GROUP].enabled and not conf[compute.GROUP].auth_type:
        raise ConfigurationError(
            "auth_type", f"not set, but [{GROUP}] enabled = True: "
            "quarantine disables and re-enables nova-compute services "
            "through the Nova API, which needs credentials in "
            f"[{compute.GROUP}] (auth_type, auth_url, username, password, "
            "project_name, user_domain_name, project_domain_name)",
            group=compute.GROUP)


def summary(conf: cfg.ConfigOpts) -> str:
    """The settings in one line, for check-config and the start-up log."""
    register_opts(conf)
    group = conf[GROUP]
    if not group.enabled:
        return "off"
    return (f"on: quarantine after {group.untrusted_passes} untrusted "
            f"attestation(s) in a row"
            + (" or one signed revocation event" if group.on_revocation
               else "")
            + f"; release after {group.trusted_passes} trusted in a row")
