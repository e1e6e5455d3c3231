# SPDX-License-Identifier: Apache-2.0
"""Validation of the ``trust:*`` flavor extra specs by nova-api.

Loaded by Nova from the ``nova.api.extra_spec_validators`` entry point
group; with it, ``openstack flavor set --property
trust:trusted_host=trustd`` is refused (microversion 2.86 and later)
instead of silently making a flavor that fits no host.
"""

from __future__ import annotations

from nova.api.validation.extra_specs import base

from trustpool.attestation.model import EXTRA_SPEC, TrustLevel

__all__ = ["register"]

EXTRA_SPEC_VALIDATORS = [
    base.ExtraSpecValidator(
        name=EXTRA_SPEC,
        description=(
            "The trust level, as reported by the attestation service, that "
            "a host must have for instances of this flavor. Used by "
            "trustpool's TrustedFilter."
        ),
        value={
            "type": str,
            "description": "The attestation level the host must have.",
            "enum": [level.value for level in TrustLevel],
        },
    ),
]


def register() -> list[base.ExtraSpecValidator]:
    """Nova's hook: the validators of the ``trust`` namespace."""
    return EXTRA_SPEC_VALIDATORS
