# SPDX-License-Identifier: Apache-2.0
"""The attestation client library.

No module under this package imports Nova: the library can be used by any
tool that needs to know which hosts an attestation service vouches for.
"""

from trustpool.attestation.answer import Answer
from trustpool.attestation.backends import AttestationBackend, load_backend
from trustpool.attestation.client import AttestationClient, ClientStats
from trustpool.attestation.model import EXTRA_SPEC, HostReport, TrustLevel
from trustpool.exceptions import AttestationError, ConfigurationError

__all__ = [
    "EXTRA_SPEC",
    "Answer",
    "AttestationBackend",
    "AttestationClient",
    "AttestationError",
    "ClientStats",
    "ConfigurationError",
    "HostReport",
    "TrustLevel",
    "load_backend",
]
