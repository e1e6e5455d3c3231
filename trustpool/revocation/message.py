# SPDX-License-Identifier: Apache-2.0
"""Read one Keylime revocation webhook body, and check its signature.

Keylime's verifier (pull mode; 6.x ``cloud_verifier_common.prepare_error``)
POSTs ``{"msg": "<JSON text>", "signature": "<base64, or empty>"}``. The
signature is RSA-PSS with SHA-256 (MGF1 SHA-256, the largest salt the key
allows) over the UTF-8 bytes of ``msg`` exactly as sent, made with the
agent's revocation key; the tenant's revocation certificate
(``RevocationNotifier-cert.crt``) verifies it.

The order is chosen so that an attacker's bytes meet as little code as
possible: the outer body is decoded strictly, the signature is checked on
the raw ``msg`` text, and only a message that passed is decoded further.
Every refusal is a :class:`Refused` with the HTTP status to answer and a
reason of our own words: nothing from the body is ever quoted, since a
message a stranger sent is not something to write to a log.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trustpool.attestation.strictjson import loads_strict
from trustpool.exceptions import ConfigurationError, TrustpoolError

__all__ = ["KINDS", "Notification", "Refused", "SignatureCheck", "read"]

#: Message types the verifier sends, and that each mean "no longer
#: trusted": ``revocation`` (a failed quote or policy check) and
#: ``comm_error`` (an agent that was attested before stopped answering;
#: its state is unknown, and unknown is not trusted either).
KINDS = frozenset({"revocation", "comm_error"})
#: Keylime's agent id grammar (keylime.common.validators.valid_agent_id).
_AGENT_ID = re.compile(r"[\w.-]{1,255}", re.ASCII)
#: Short text fields are cut to this in what we keep and log.
_FIELD = 200
#: How much of ``context`` an audit event carries.
_CONTEXT = 4096
#: What Keylime sends as the signature when the agent has no revocation
#: key: an empty string (6.x), or the word ``none`` (older notifiers).
_UNSIGNED = ("", "none")


class Refused(TrustpoolError):
    """The body is not a revocation to act on; answer ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"HTTP {status}: {reason}")


@dataclasses.dataclass(frozen=True)
class Notification:
    """What trustpool uses of a revocation message.

    ``agent_id`` matches Keylime's agent id grammar; the other text fields
    are cut to a few hundred characters. ``signed`` says whether a
    signature was checked (``False`` only without a certificate).
    """

    kind: str
    agent_id: str
    event_id: str | None
    severity: str | None
    context: Any
    verifier_time: str | None
    signed: bool
    #: SHA-256 of the msg bytes: the same signed message seen twice is a
    #: replay (or a retry of one already done), never a second revocation
    digest: str = dataclasses.field(default="", compare=False)


class SignatureCheck:
    """The public key of the tenant's revocation certificate."""

    def __init__(self, path: str) -> None:
        """:raises ConfigurationError: when ``path`` is not a readable PEM
        X.509 certificate with an RSA key (the kind Keylime makes)."""
        option = "revocation_cert_file"
        try:
            with open(path, "rb") as handle:
                pem = handle.read(1 << 20)
        except OSError as exc:
            raise ConfigurationError(
                option, f"cannot read {path}: {exc.strerror or exc}",
                group="trustpool_events") from None
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise ConfigurationError(
                option, f"{path} is not a PEM X.509 certificate (Keylime's "
                "RevocationNotifier-cert.crt)",
                group="trustpool_events") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigurationError(
                option, f"the certificate in {path} does not hold an RSA "
                "key; Keylime signs revocations with RSA",
                group="trustpool_events")
        self._key = key
        self.path = path

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is Keylime's signature of ``message``."""
        try:
            self._key.verify(
                signature, message,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                            salt_length=padding.PSS.MAX_LENGTH),
                hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def read(body: bytes, check: SignatureCheck | None) -> Notification:
    """The notification in ``body``, verified when ``check`` is given.

    :raises Refused: 400 for a body that is not Keylime's shape (or a
        ``msg`` that is not a revocation message), 401 for no signature
        while a certificate is configured, 403 for a signature that does
        not verify. Never another exception for any ``body``.
    """
    try:
        outer = loads_strict(body)
    except Exception:  # noqa: BLE001 - any decoding failure is the same
        raise Refused(400, "the body is not strict UTF-8 JSON") from None
    if not isinstance(outer, dict):
        raise Refused(400, "the body is not a JSON object")
    text = outer.get("msg")
    if not isinstance(text, str):
        raise Refused(400, "msg is missing or not a JSON string")
    signature = outer.get("signature", "")
    if signature is None:
        signature = ""
    if not isinstance(signature, str):
        raise Refused(400, "signature is not a string")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from "\ud800"
        raise Refused(400, "msg is not valid Unicode text") from None
    signed = False
    if check is not None:
        if signature.strip() in _UNSIGNED:
            raise Refused(401, "the event is not signed, and "
                          "revocation_cert_file is configured")
        try:
            decoded = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(403, "the signature is not base64") from None
        if not check.verify(raw, decoded):
            raise Refused(403, "the signature does not verify against "
                          "revocation_cert_file")
        signed = True
    return _message(raw, signed)


def _message(raw: bytes, signed: bool) -> Notification:
    try:
        msg = loads_strict(raw)
    except Exception:  # noqa: BLE001 - any decoding failure is the same
        raise Refused(400, "msg is not strict JSON") from None
    if not isinstance(msg, dict):
        raise Refused(400, "msg is not a JSON object")
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in KINDS:
        raise Refused(400, "msg.type is not one of "
                      f"{', '.join(sorted(KINDS))}")
    agent_id = msg.get("agent_id")
    if not isinstance(agent_id, str) or not _AGENT_ID.fullmatch(agent_id):
        raise Refused(400, "msg.agent_id is missing or not a Keylime "
                      "agent id")
    fields = {}
    for name in ("event_id", "severity_label", "event_time"):
        value = msg.get(name)
        if value is not None and not isinstance(value, str):
            raise Refused(400, f"msg.{name} is not a string")
        fields[name] = _printable(value) if value is not None else None
    context = msg.get("context")
    if context is not None and not isinstance(context, str):
        raise Refused(400, "msg.context is not a string")
    return Notification(kind=kind, agent_id=agent_id,
                        event_id=fields["event_id"],
                        severity=fields["severity_label"],
                        context=_context(context),
                        verifier_time=fields["event_time"], signed=signed,
                        digest=hashlib.sha256(raw).hexdigest())


def _printable(text: str, limit: int = _FIELD) -> str:
    """One line of printable text, for logs and audit events."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + ("..." if len(text) > limit else "")


def _context(text: str | None) -> Any:
    """Keylime's ``context`` is JSON text (``{"message": ...}``): decoded
    when it is small strict JSON, else kept as (cut) text."""
    if text is None:
        return None
    if len(text) <= _CONTEXT:
        try:
            value = loads_strict(text.encode("utf-8"))
            # re-encoding proves it holds nothing json cannot write back
            json.dumps(value)
            return value
        except Exception:  # noqa: BLE001, S110 - kept as text below
            pass
    return _printable(text, _CONTEXT)
