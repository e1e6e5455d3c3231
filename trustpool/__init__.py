# SPDX-License-Identifier: Apache-2.0
"""Trusted compute pools for OpenStack Nova.

The package is split in layers, each usable without the ones above it
and enforced by import-linter (contracts in pyproject.toml):
:mod:`trustpool.attestation` (the client library: no Nova, no options
module), :mod:`trustpool.conf` (options, ``make_client``),
:mod:`trustpool.openstack` (service clients), :mod:`trustpool.trait_sync`
and :mod:`trustpool.drift` (operator tools), :mod:`trustpool.cmd`. Beside
them, inside Nova: :mod:`trustpool.filter`, :mod:`trustpool.extra_specs`
and :mod:`trustpool.decision_record`, the only modules that import Nova.
See doc/source/contributor.rst for the one-screen map.
"""
