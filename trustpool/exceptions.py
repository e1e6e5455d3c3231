# SPDX-License-Identifier: Apache-2.0
"""The exceptions trustpool raises.

A leaf module so that every layer can import it without import cycles.
"""

from __future__ import annotations

__all__ = ["AttestationError", "ConfigurationError", "TrustpoolError"]


class TrustpoolError(Exception):
    """Base of every exception trustpool raises on purpose."""


class ConfigurationError(TrustpoolError, ValueError):
    """An option has a value that cannot work.

    The message names the option (``[group] option``) so an operator knows
    which line of nova.conf to fix.
    """

    def __init__(self, option: str, problem: str,
                 group: str = "trusted_computing") -> None:
        self.option = option
        self.group = group
        super().__init__(f"[{group}] {option}: {problem}")


class AttestationError(TrustpoolError):
    """An attestation service could not give a usable answer.

    The one exception type backends raise. Its message is safe to log: it
    never contains credentials or key material.
    """
