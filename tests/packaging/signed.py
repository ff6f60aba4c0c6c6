"""Shared pieces of the signature tests: the release key the build was given,
the unpacked bundle, and a second key that must never be accepted.

The key is whatever scripts/signing.sh resolves from the environment
(KMS_SIGNING_KEY_FILE, KMS_SIGNING_GNUPGHOME, else the build's ephemeral
key), so the tests check the bundle against the key the build was configured
with, not against the key the bundle carries."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from tests.support.packaging import REPO, VERSION, artefact, run

NAME = f"kms-appliance-bundle-{VERSION}"
KEY = "kms-appliance-release"
SIGN = REPO / "scripts/sign_release.sh"
DEB = f"kms-appliance_{VERSION}_amd64.deb"
RPM = f"kms-appliance-{VERSION}-1.x86_64.rpm"
IMAGE = f"kms-appliance_{VERSION}_oci.tar"
# The artefacts that carry a detached signature of their own.
SIGNED = ("kms-appliance", "kms-appliance.cdx.json", DEB, RPM, IMAGE, "kms-appliance.provenance.json")


def tarball() -> Path:
    return artefact(f"{NAME}.tar.gz")


def unpack_bundle(dest: Path) -> Path:
    with tarfile.open(tarball()) as tar:
        tar.extractall(dest, filter="data")
    return dest / NAME


def release_fingerprint() -> str:
    return run([SIGN, "fingerprint"]).stdout.strip()


def fingerprints(key: Path, home: Path) -> list[str]:
    """Primary key fingerprints in an exported (public or secret) key file, read, not imported."""
    home.mkdir(mode=0o700, exist_ok=True)
    out = run(["gpg", "--homedir", home, "--batch", "--with-colons", "--show-keys", key]).stdout
    stop_agent(home)  # reading a secret key file starts one
    return _primary_fingerprints(out)


def _primary_fingerprints(colons: str) -> list[str]:
    lines = colons.splitlines()
    return [lines[i + 1].split(":")[9] for i, line in enumerate(lines) if line.startswith(("pub:", "sec:"))]


def gpgv(keyring: Path, signature: Path, *data: Path) -> bool:
    """True when gpgv, trusting only ``keyring``, accepts the signature."""
    return run(["gpgv", "--keyring", keyring.resolve(), signature, *data], check=False).returncode == 0


def other_key(home: Path) -> dict[str, str]:
    """The environment that makes scripts/signing.sh sign with a fresh, unrelated key."""
    home.mkdir(mode=0o700)
    run(["gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-generate-key",
         "someone else <other@example.invalid>", "rsa3072", "sign", "never"])
    return {**clean_env(), "KMS_SIGNING_GNUPGHOME": str(home)}


def clean_env() -> dict[str, str]:
    """The caller's environment minus what a previous signing_init exported."""
    return {k: v for k, v in os.environ.items() if k not in ("KMS_SIGNING_FPR", "KMS_SIGNING_TIME")}


def stop_agent(home: Path) -> None:
    run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)


def repo(kind: str, dest: Path, package: Path, env: dict[str, str] | None = None) -> Path:
    """A bundle-like directory holding only repo/<kind> (apt or yum), built by the release script."""
    run([REPO / f"scripts/repo_{kind}.sh", dest / "repo" / kind, package], env=env or clean_env())
    return dest


def changed_copy(package: Path, directory: Path) -> Path:
    """``package`` copied into ``directory`` with one byte changed: what only an attacker ships."""
    directory.mkdir()
    shutil.copy(package, directory)
    flip_byte(directory / package.name)
    return directory / package.name


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte in place (the middle of the file by default: payload, not header)."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x01
    path.unlink()  # never write through a hard link
    path.write_bytes(bytes(data))


def fingerprints_in_home(home: Path) -> list[str]:
    """Primary key fingerprints of the secret keys in a GnuPG home."""
    return _primary_fingerprints(run(["gpg", "--homedir", home, "--batch", "--with-colons", "--list-secret-keys"]).stdout)
