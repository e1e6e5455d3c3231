"""A throwaway PKI made per test session with ``trustme``.

Real certificates, so that the TLS code paths that operators meet (CA
verification, client certificates, expiry, names) are exercised for real.
trustme (a maintained library for exactly this) builds the certificates;
this module only adds what the tests need around it: files on disk with a
private key mode, and every PEM registered with the leak scanner so that
no test can let key material reach a log unseen.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib

import trustme

from tests.support import leakcheck

_NOW = datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Issued:
    cert: pathlib.Path
    key: pathlib.Path
    pem: bytes
    key_pem: bytes


class CA:
    """A certificate authority writing its files under ``directory``."""

    def __init__(self, directory: pathlib.Path, name: str = "trustpool-ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._ca = trustme.CA(organization_name=name)
        self.pem = self._ca.cert_pem.bytes()
        self.cert_path = self.dir / f"{name}.pem"
        self.cert_path.write_bytes(self.pem)
        leakcheck.register(self.pem)
        leakcheck.register(self._ca.private_key_pem.bytes())

    def issue(self, cn: str, *, server: bool = True,
              ips: tuple[str, ...] = ("127.0.0.1",),
              dns: tuple[str, ...] = ("localhost",),
              expired: bool = False) -> Issued:
        """A leaf certificate for ``cn``.

        A server certificate names ``dns`` and ``ips``; a client
        certificate names only ``cn`` (trustme needs one identity). trustme
        marks every leaf for both server and client use, which no test
        relies on either way.
        """
        identities = (*dns, *ips) if server else (cn,)
        if expired:
            window = {"not_before": _NOW - datetime.timedelta(days=10),
                      "not_after": _NOW - datetime.timedelta(days=1)}
        else:
            window = {"not_before": _NOW - datetime.timedelta(days=1),
                      "not_after": _NOW + datetime.timedelta(days=7)}
        leaf = self._ca.issue_cert(*identities, common_name=cn, **window)
        pem = leaf.cert_chain_pems[0].bytes()
        key_pem = leaf.private_key_pem.bytes()
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
