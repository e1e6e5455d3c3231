# SPDX-License-Identifier: Apache-2.0
"""The ``[trustpool_events]`` options: where the service listens for
Keylime's revocation webhooks, and how it checks them."""

from __future__ import annotations

import ipaddress
import os

from oslo_config import cfg

from trustpool.exceptions import ConfigurationError

__all__ = ["GROUP", "OPTS", "listen_address", "list_opts", "register_opts",
           "validate"]

GROUP = "trustpool_events"

OPTS = [
    cfg.StrOpt(
        "listen",
        help="Address and port on which 'trustpool sync-traits --interval' "
        "also receives Keylime revocation webhooks, as 'ADDRESS:PORT' "
        "('127.0.0.1:8992', '[::1]:8992', '0.0.0.0:8992'). Unset (the "
        "default): no listener. Point the Keylime verifier's [revocations] "
        "webhook_url at it. Events only ever remove the trust trait; it "
        "comes back from a later periodic pass."),
    cfg.StrOpt(
        "cert_file",
        help="PEM certificate (chain) the listener presents. Required "
        "unless allow_plain_http is set."),
    cfg.StrOpt(
        "key_file",
        help="PEM private key of cert_file, if not in that file. Never "
        "logged."),
    cfg.StrOpt(
        "client_ca_file",
        help="When set, every client must present a certificate signed by "
        "a CA in this PEM file (mutual TLS). Keylime 6.6's verifier "
        "presents no client certificate with its webhook, so set this only "
        "behind a proxy (or a verifier) that does. Unset: any "
        "client may connect, and the signature is what tells a real event "
        "from a forged one."),
    cfg.BoolOpt(
        "allow_plain_http", default=False,
        help="Listen without TLS. Anyone on the network path can then "
        "read events and, without revocation_cert_file, forge them; for "
        "a listener on a loopback address behind a TLS proxy only."),
    cfg.StrOpt(
        "revocation_cert_file",
        help="The tenant's revocation certificate (Keylime's "
        "RevocationNotifier-cert.crt in the tenant's CA directory). When "
        "set, an event whose RSA-PSS signature over its msg does not "
        "verify with this certificate's key is refused (401 unsigned, 403 "
        "bad signature) and changes nothing. Unset: events are accepted "
        "unsigned, and the service warns at start-up that anyone who can "
        "reach the listener can take trust away from any host."),
    cfg.IntOpt(
        "max_body_bytes", default=65536, min=1024, max=16 * 1024 * 1024,
        help="Largest request body accepted; a larger Content-Length is "
        "answered 413 before any of the body is read."),
    cfg.FloatOpt(
        "request_timeout", default=10.0, min=0.1, max=300.0,
        help="Seconds one connection may take in all (TLS handshake, "
        "headers, body, handling and answer); a slower client is cut off, "
        "however it paces its bytes. Keylime's verifier itself gives up "
        "after 5 seconds and retries."),
    cfg.IntOpt(
        "max_connections", default=16, min=1, max=1024,
        help="Connections handled at once; another is closed at once, "
        "unanswered (the verifier retries)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    if GROUP not in conf:
        conf.register_group(cfg.OptGroup(
            GROUP, title="Keylime revocation events",
            help="The revocation webhook listener of 'trustpool "
            "sync-traits --interval'."))
    conf.register_opts(OPTS, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, list(OPTS))]


def listen_address(conf: cfg.ConfigOpts) -> tuple[str, int] | None:
    """``(address, port)`` from ``listen``, or ``None`` when unset.

    :raises ConfigurationError: when it is not ``ADDRESS:PORT`` with an IP
        address and a port from 1 to 65535.
    """
    register_opts(conf)
    value = (conf[GROUP].listen or "").strip()
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    elif ":" in host:
        host = ""  # IPv6 without brackets: which colon ends it?
    try:
        ipaddress.ip_address(host)
        number = int(port, 10) if port.isdigit() else -1
    except ValueError:
        number = -1
    if not sep or not 1 <= number <= 65535:
        raise ConfigurationError(
            "listen", f"{value!r} is not ADDRESS:PORT (an IP address, "
            "IPv6 in brackets, and a port from 1 to 65535)", group=GROUP)
    return host, number


def validate(conf: cfg.ConfigOpts) -> None:
    """Check the options a listener needs, naming the first bad one.

    :raises ConfigurationError: on a value that cannot work.
    """
    register_opts(conf)
    group = conf[GROUP]
    listen_address(conf)
    if not group.allow_plain_http and not group.cert_file:
        raise ConfigurationError(
            "cert_file", "must be set for the event listener (or set "
            "allow_plain_http = True, to listen without TLS)", group=GROUP)
    if group.key_file and not group.cert_file:
        raise ConfigurationError("key_file", "set, but cert_file is not",
                                 group=GROUP)
    for option in ("cert_file", "key_file", "client_ca_file",
                   "revocation_cert_file"):
        path = getattr(group, option)
        if path and not os.path.isfile(path):
            raise ConfigurationError(option, f"no such file: {path}",
                                     group=GROUP)
        if path and not os.access(path, os.R_OK):
            raise ConfigurationError(
                option, f"not readable by this user: {path}", group=GROUP)
