"""Helpers to build trustpool configurations in tests."""

from __future__ import annotations

import pathlib

from oslo_config import cfg

from trustpool import conf as tp_conf


def load_conf(tmp_path: pathlib.Path, text: str) -> cfg.ConfigOpts:
    """A ConfigOpts read from a nova.conf-like file holding ``text``."""
    path = tmp_path / "nova.conf"
    path.write_text(text)
    c = cfg.ConfigOpts()
    tp_conf.register_opts(c)
    c(["--config-file", str(path)], project="nova", default_config_files=[])
    return c


def point_at(conf: cfg.ConfigOpts, server, ca_file=None, **overrides) -> None:
    """Set ``conf`` so the oat backend asks ``server``."""
    values = {"attestation_server": "127.0.0.1",
              "attestation_port": server.port,
              "attestation_api_url": server.api_url,
              "attestation_scheme": server.scheme,
              "attestation_server_ca_file": ca_file and str(ca_file),
              "connect_timeout": 2.0,
              "read_timeout": 3.0}
    values.update(overrides)
    for name, value in values.items():
        conf.set_override(name, value, group=tp_conf.GROUP)
