# SPDX-License-Identifier: Apache-2.0
"""Sphinx configuration for trustpool's documentation (tox -e docs)."""

project = "trustpool"
copyright = "trustpool developers"  # noqa: A001 - Sphinx's name
extensions = [
    "oslo_config.sphinxext",      # .. show-options:: from list_opts()
    "reno.sphinxext",             # .. release-notes::
    "sphinxcontrib.programoutput",  # the CLI reference from --help
]
master_doc = "index"
exclude_patterns = []
html_theme = "alabaster"
html_static_path: list[str] = []
