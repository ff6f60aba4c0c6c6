"""Throw-away PKI for the emulator: a test CA, server and client certificates.

Why: the plugin must be tested against real HTTPS (CA pinning, mTLS, and the
failure when the server's certificate is expired or names another host), so
the emulator mints its own CA with `cryptography` instead of shipping keys.
Everything here is test material; nothing is ever meant to be trusted outside
the test that created it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from akeyless_emulator.keys import utcnow

PrivateKey = ec.EllipticCurvePrivateKey
CLIENT_CN = "kms-appliance-test-client"
CA_CN = "akeyless-emulator test CA"


@dataclass(frozen=True)
class CertFiles:
    """Paths of one PEM certificate and its PEM private key."""

    cert_file: str
    key_file: str


def _new_key() -> PrivateKey:
    # P-256 keeps generation fast (milliseconds), which matters for test setup.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:  # kube-apiserver reads a client certificate's O as its groups
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_private(path: Path, data: bytes) -> None:
    """Write key material with mode 0600 from the start (never chmod after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def key_pem(key: PrivateKey) -> bytes:
    """PEM (PKCS#8, unencrypted) encoding of a private key."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


class TestCA:
    """A self-signed CA that issues server and client leaf certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = str(self.directory / "ca.pem")
        ca_key_path = self.directory / "ca.key"
        if Path(self.ca_file).exists() and ca_key_path.exists():
            self._cert = x509.load_pem_x509_certificate(Path(self.ca_file).read_bytes())
            loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            self._key = loaded
            return
        self._key = _new_key()
        now = utcnow()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(CA_CN))
            .issuer_name(_name(CA_CN))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        _write_private(ca_key_path, key_pem(self._key))
        Path(self.ca_file).write_bytes(cert_pem(self._cert))

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate as PEM bytes."""
        return cert_pem(self._cert)

    def issue(self, common_name: str, *, server: bool, hosts: tuple[str, ...] = (), org: str | None = None,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
              ) -> tuple[x509.Certificate, PrivateKey]:
        """Issue a leaf certificate (server or client usage) signed by this CA."""
        key = _new_key()
        now = utcnow()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, org))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        return builder.sign(self._key, hashes.SHA256()), key

    def write_leaf(self, stem: str, cert: x509.Certificate, key: PrivateKey) -> CertFiles:
        """Write a leaf certificate and key as `<stem>.pem` / `<stem>.key`."""
        cert_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert_pem(cert))
        _write_private(key_path, key_pem(key))
        return CertFiles(str(cert_path), str(key_path))

    def server_cert(self, kind: str = "valid") -> CertFiles:
        """Server certificate for 127.0.0.1/localhost.

        kind: "valid"; "expired" (validity ended yesterday), to test TLS verification failing.
        """
        now = utcnow()
        hosts = ("127.0.0.1", "localhost", "::1")
        before, after = None, None
        if kind == "expired":
            before, after = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
        elif kind != "valid":
            raise ValueError(f"unknown server certificate kind: {kind}")
        cert, key = self.issue(hosts[0], server=True, hosts=hosts, not_before=before, not_after=after)
        return self.write_leaf(f"server-{kind}", cert, key)

    def client_cert(self, common_name: str = CLIENT_CN) -> CertFiles:
        """Client certificate (clientAuth) for mTLS or `cert` auth tests."""
        cert, key = self.issue(common_name, server=False)
        return self.write_leaf(f"client-{_safe(common_name)}", cert, key)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _san(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names
