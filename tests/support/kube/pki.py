"""Throwaway PKI for one e2e cluster: the emulator's test CA issues the apiserver's serving pair and
an admin client pair (O=system:masters).

Why generated per test: the certificates are worthless outside the test's tmp
dir, so there is nothing to store or rotate, and no test depends on another's
files. The service-account key is RSA because that is what most clusters use for token signing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from akeyless_emulator import TestCA

SERVING_HOSTS = ("127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc")


@dataclass(frozen=True)
class ClusterPki:
    """Paths of every file the apiserver, kubectl and the harness need."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def make_cluster_pki(directory: Path) -> ClusterPki:
    """Write a CA, the apiserver serving pair, an admin client pair and a service-account key
    pair into ``directory``."""
    ca = TestCA(directory)
    serving = ca.write_leaf("apiserver", *ca.issue("kube-apiserver", server=True, hosts=SERVING_HOSTS))
    admin = ca.write_leaf("admin", *ca.issue("e2e-admin", server=False, org="system:masters"))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = ClusterPki(ca_cert=Path(ca.ca_file), serving_cert=Path(serving.cert_file),
                     serving_key=Path(serving.key_file), admin_cert=Path(admin.cert_file),
                     admin_key=Path(admin.key_file), sa_key=directory / "sa.key", sa_pub=directory / "sa.pub")
    pki.sa_key.write_bytes(sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    pki.sa_key.chmod(0o600)
    pki.sa_pub.write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki
