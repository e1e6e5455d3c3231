"""A throwaway PKI made per test session with ``cryptography``.

Real certificates, so that the TLS code paths that operators meet (CA
verification, client certificates, expiry, names) are exercised for real.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import leakcheck

_NOW = datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Issued:
    cert: pathlib.Path
    key: pathlib.Path
    pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    """A certificate authority writing its files under ``directory``."""

    def __init__(self, directory: pathlib.Path, name: str = "trustpool-ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._key = _key()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=1))
            .not_valid_after(_NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))
        self.pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.cert_path = self.dir / f"{name}.pem"
        self.cert_path.write_bytes(self.pem)
        leakcheck.register(self.pem)
        leakcheck.register(self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    def issue(self, cn: str, *, server: bool = True,
              ips: tuple[str, ...] = ("127.0.0.1",),
              dns: tuple[str, ...] = ("localhost",),
              expired: bool = False) -> Issued:
        key = _key()
        if expired:
            start = _NOW - datetime.timedelta(days=10)
            end = _NOW - datetime.timedelta(days=1)
        else:
            start = _NOW - datetime.timedelta(days=1)
            end = _NOW + datetime.timedelta(days=7)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server
                 else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False))
        if server:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(
                x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        cert_path = self.dir / f"{cn}.pem"
        key_path = self.dir / f"{cn}.key"
        cert_path.write_bytes(pem)
        key_path.write_bytes(key_pem)
        key_path.chmod(0o600)
        leakcheck.register(pem)
        leakcheck.register(key_pem)
        return Issued(cert_path, key_path, pem, key_pem)


def make_pki(base: pathlib.Path) -> dict:
    """Every certificate the tests use, under ``base``."""
    ca = CA(base / "ca")
    other = CA(base / "other", name="some-other-ca")
    return {
        "ca": ca,
        "other_ca": other,
        "server": ca.issue("attestation-server"),
        "client": ca.issue("nova-scheduler", server=False),
        "expired_server": ca.issue("expired-server", expired=True),
        "wrong_name_server": ca.issue("wrong-name", ips=("127.0.0.2",),
                                      dns=("elsewhere.example",)),
        "rogue_client": other.issue("rogue-client", server=False),
    }
