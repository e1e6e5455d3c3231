# SPDX-License-Identifier: Apache-2.0
"""Trusted compute pools for OpenStack Nova.

The package is split in layers so that each can be used without the one
above it: :mod:`trustpool.attestation` (the client library, no Nova),
:mod:`trustpool.conf` (options), and :mod:`trustpool.filter` (the Nova
scheduler filter, the only module that imports Nova).
"""
