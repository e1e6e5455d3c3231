# SPDX-License-Identifier: Apache-2.0
"""The exceptions trustpool raises.

A leaf module so that every layer can import it without import cycles.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CAUSES", "AttestationError", "Cause", "ConfigurationError",
           "TrustpoolError"]

#: Why an exchange with an attestation service failed, in as few words as
#: a dashboard needs: the deadline passed; TLS failed (handshake,
#: certificate, plain HTTP where TLS was expected); the service answered
#: a status other than success; the answer could not be read or proves
#: nothing (framing, JSON, shape, names not asked about, size cap); the
#: service could not be reached or the connection broke; anything else.
Cause = Literal["timeout", "tls", "http_status", "malformed", "connection",
                "other"]
CAUSES: tuple[Cause, ...] = get_args(Cause)


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
    never contains credentials or key material. ``cause`` says in one of
    :data:`CAUSES` why, set where the failure is detected, so that
    counting failures by cause never depends on the wording of a message.
    """

    def __init__(self, message: str = "", cause: Cause = "other") -> None:
        super().__init__(message)
        self.cause: Cause = cause if cause in CAUSES else "other"

    def __reduce__(self) -> tuple[object, ...]:
        # keeps the cause across pickling (an Exception pickles its args)
        return (type(self), (str(self), self.cause))
