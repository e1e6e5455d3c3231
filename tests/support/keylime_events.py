"""Keylime revocation webhook bodies, made the way a 6.6 verifier makes
them (``cloud_verifier_common.prepare_error``): an RSA revocation key and
its X.509 certificate (the tenant's ``RevocationNotifier-*``), a ``msg``
that is JSON text, and an RSA-PSS/SHA-256 signature (MGF1 SHA-256, the
largest salt) over its UTF-8 bytes, base64-encoded."""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support import leakcheck


class RevocationKey:
    """A revocation key pair; :attr:`cert_path` is what trustpool is given."""

    def __init__(self, directory: pathlib.Path,
                 name: str = "RevocationNotifier") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.key = rsa.generate_private_key(public_exponent=65537,
                                            key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(subject).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .sign(self.key, hashes.SHA256()))
        self.cert_path = directory / f"{name}-cert.crt"
        self.cert_path.write_bytes(cert.public_bytes(
            serialization.Encoding.PEM))
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())
        leakcheck.register(key_pem)

    def sign(self, msg: str) -> str:
        signature = self.key.sign(
            msg.encode("utf-8"),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                        salt_length=padding.PSS.MAX_LENGTH),
            hashes.SHA256())
        return base64.b64encode(signature).decode()


def message(agent_id: str, *, kind: str = "revocation",
            **extra: Any) -> str:
    """A ``msg`` as the verifier writes it, for a quote whose PCR 15 is
    not in the policy: ``tpm_policy`` and ``meta_data`` are the JSON text
    the verifier stores, ``context`` the JSON text of the event's context
    (a dict for this event; a plain string would be ``{"message": ...}``),
    as the real 6.6 verifier sent in tests/keylime."""
    fields: dict[str, Any] = {
        "type": kind, "ip": "127.0.0.1", "agent_id": agent_id, "port": 9002,
        "tpm_policy": json.dumps({"15": ["0" * 64], "mask": "0x8000"}),
        "meta_data": json.dumps({"cert_serial": 2}),
        "event_time": time.asctime(),
        "event_id": "pcr_validation.invalid_pcr_15",
        "severity_label": "emergency",
        "context": json.dumps({"context": "PCR value is not in allowlist",
                               "got": "ab" * 32, "expected": ["0" * 64]}),
    }
    fields.update(extra)
    return json.dumps(fields)


def body(msg: str, signature: str | None = "") -> bytes:
    """The POST body; ``signature=None`` leaves the field out."""
    outer: dict[str, Any] = {"msg": msg}
    if signature is not None:
        outer["signature"] = signature
    return json.dumps(outer).encode()


def signed_body(key: RevocationKey, agent_id: str, **extra: Any) -> bytes:
    msg = message(agent_id, **extra)
    return body(msg, key.sign(msg))
