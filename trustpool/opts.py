# SPDX-License-Identifier: Apache-2.0
"""Every option trustpool reads, for ``oslo-config-generator --namespace
trustpool`` (the ``oslo.config.opts`` entry point). At the top of the
house on purpose: it imports every layer, and no layer imports it."""

from __future__ import annotations

from oslo_config import cfg

from trustpool import conf as tp_conf
from trustpool import quarantine, revocation
from trustpool.attestation.backends import backend_opts
from trustpool.openstack import compute

__all__ = ["list_opts"]


def list_opts() -> list[tuple[cfg.OptGroup | str, list[cfg.Opt]]]:
    """Options for ``oslo-config-generator --namespace trustpool``."""
    common = list(tp_conf.ALL_OPTS)
    others = []
    for group, opts in backend_opts():
        # options a backend adds to the shared group join it
        if group == tp_conf.GROUP:
            known = {opt.dest for opt in common}
            common += [opt for opt in opts if opt.dest not in known]
        else:
            others.append((group, opts))
    grouped: list[tuple[cfg.OptGroup | str, list[cfg.Opt]]] = [
        (tp_conf.make_group(), common)]
    traits = [(tp_conf.TRAIT_GROUP, list(tp_conf.TRAIT_OPTS))]
    return (grouped + others + traits + compute.list_opts()
            + revocation.list_opts() + quarantine.list_opts())
