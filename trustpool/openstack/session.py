# SPDX-License-Identifier: Apache-2.0
"""keystoneauth1 plumbing shared by the commands that call OpenStack APIs."""

from __future__ import annotations

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from trustpool.exceptions import ConfigurationError

__all__ = ["DEFAULT_TIMEOUT", "adapter_from_conf", "register_opts",
           "session_opts"]

#: Seconds one request to an OpenStack API may take, unless the group's
#: ``timeout`` says otherwise. keystoneauth1's own default is none at all:
#: a Placement that accepts and never answers would hang a pass for ever,
#: and hold a host's lock and a listener slot in the revocation receiver.
DEFAULT_TIMEOUT = 60.0


def register_opts(conf: cfg.ConfigOpts, group: str,
                  service_type: str) -> None:
    """Session, auth and adapter options on ``group``; options another
    project (Nova, for ``[placement]``) registered already are kept."""
    if group not in conf:
        conf.register_group(cfg.OptGroup(group))
    for register in (ks_loading.register_session_conf_options,
                     ks_loading.register_auth_conf_options):
        try:
            register(conf, group)
        except cfg.DuplicateOptError:
            pass
    try:
        ks_loading.register_adapter_conf_options(conf, group,
                                                 include_deprecated=False)
    except cfg.DuplicateOptError:
        pass
    conf.set_default("service_type", service_type, group=group)
    if conf[group].timeout is None:
        conf.set_default("timeout", DEFAULT_TIMEOUT, group=group)
    conf.set_default("valid_interfaces", ["internal", "public"], group=group)


def adapter_from_conf(conf: cfg.ConfigOpts, group: str,
                      why: str) -> ks_adapter.Adapter:
    """An adapter from ``group``'s options.

    :raises ConfigurationError: when the group names no credentials; the
        message says ``why`` they are needed.
    """
    auth = ks_loading.load_auth_from_conf_options(conf, group)
    if auth is None:
        raise ConfigurationError("auth_type", f"not set: {why}", group=group)
    session = ks_loading.load_session_from_conf_options(conf, group,
                                                        auth=auth)
    return ks_loading.load_adapter_from_conf_options(
        conf, group, session=session, auth=auth)


def session_opts() -> list[cfg.Opt]:
    """keystoneauth1's session options with trustpool's default timeout
    (for the sample configuration file)."""
    opts = ks_loading.get_session_conf_options()
    for opt in opts:
        if opt.dest == "timeout":
            opt.default = DEFAULT_TIMEOUT
    return list(opts)
