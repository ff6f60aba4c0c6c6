"""The offline bundle: everything for an air-gapped site, checksummed; its signatures and
provenance, checked as docs/verify.md tells an operator to: gpgv trusting only the release
keyring, rpm -K with only the release key imported; and every tampering refused. (The release
key it carries is checked against the configured fingerprint where the operator checks it:
test_signed_apt.py for the .gpg, test_signed_yum.py for the .asc.)"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.packaging import DIST, IMAGE_REF, REPO, assert_shipped, oci_manifest, rpm_path, run

from . import signed
from .signed import DEB, IMAGE, KEY, RPM, SIGN, SIGNED

pytestmark = pytest.mark.packaging

NOT_LISTED = {"SHA256SUMS", "SHA256SUMS.asc"}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_bundle_contents_and_checksums(bundle_dir: Path, tmp_path: Path) -> None:
    root = bundle_dir
    # The key's copy next to the tarball is there for publishing out of band.
    for name in ("kms-appliance", "kms-appliance.cdx.json", DEB, IMAGE, f"{KEY}.asc"):
        assert (root / name).read_bytes() == (DIST / name).read_bytes(), name
    for name in ("INSTALL.md", "deployment.md", "deploy/kubeadm/kms-appliance.yaml",
                 "deploy/kubeadm/encryption-config.yaml", "deploy/prometheus/kms-appliance-rules.yml",
                 "deploy/grafana/kms-appliance-dashboard.json"):
        assert (root / name).is_file(), name
    assert_shipped(root)
    guide = (root / "INSTALL.md").read_text()
    assert "@VERSION@" not in guide and "sha256sum -c SHA256SUMS" in guide
    assert (root / "kms-appliance").stat().st_mode & 0o111
    # A corrupted transfer is caught (in a copy: the unpacked bundle is shared by the suite).
    name = "kms-appliance.cdx.json"
    (entry,) = [line for line in (root / "SHA256SUMS").read_text().splitlines() if line.endswith(f" {name}")]
    (tmp_path / "SHA256SUMS").write_text(entry + "\n")
    (tmp_path / name).write_bytes((root / name).read_bytes())
    run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=tmp_path)
    (tmp_path / name).write_bytes(b"tampered")
    assert run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, check=False).returncode != 0


def test_sha256sums_and_every_artefact_signed(bundle_dir: Path, tmp_path: Path) -> None:
    keyring = bundle_dir / f"{KEY}.gpg"
    assert signed.gpgv(keyring, bundle_dir / "SHA256SUMS.asc", bundle_dir / "SHA256SUMS")
    run(["sha256sum", "--strict", "--quiet", "-c", "SHA256SUMS"], cwd=bundle_dir)
    listed = {line.split(None, 1)[1] for line in (bundle_dir / "SHA256SUMS").read_text().splitlines()}
    assert listed == _files(bundle_dir) - NOT_LISTED
    for name in SIGNED:
        assert signed.gpgv(keyring, bundle_dir / f"{name}.asc", bundle_dir / name), name
    tarball = signed.tarball()
    assert signed.gpgv(keyring, Path(f"{tarball}.asc"), tarball)

    # A changed checksum list, a changed artefact, a signature by another key: all refused.
    sums = tmp_path / "SHA256SUMS"
    text = (bundle_dir / "SHA256SUMS").read_text()
    sums.write_text(re.sub(r"^[0-9a-f]", lambda m: "0" if m.group() != "0" else "1", text, count=1))
    assert not signed.gpgv(keyring, bundle_dir / "SHA256SUMS.asc", sums)
    sbom = tmp_path / "kms-appliance.cdx.json"
    sbom.write_bytes((bundle_dir / "kms-appliance.cdx.json").read_bytes().replace(b'"kms-appliance"', b'"kms-evil"', 1))
    assert not signed.gpgv(keyring, bundle_dir / "kms-appliance.cdx.json.asc", sbom)
    env = signed.other_key(tmp_path / "other")
    forged = tmp_path / "forged" / "SHA256SUMS"
    forged.parent.mkdir()
    forged.write_text(text)
    run([SIGN, "files", forged], env=env)
    signed.stop_agent(tmp_path / "other")
    assert not signed.gpgv(keyring, Path(f"{forged}.asc"), forged)


def test_repository_metadata_signed(bundle_dir: Path) -> None:
    keyring = bundle_dir / f"{KEY}.gpg"
    dists = bundle_dir / "repo/apt/dists/stable"
    assert signed.gpgv(keyring, dists / "Release.gpg", dists / "Release")
    assert signed.gpgv(keyring, dists / "InRelease")
    repomd = bundle_dir / "repo/yum/repodata/repomd.xml"
    assert signed.gpgv(keyring, Path(f"{repomd}.asc"), repomd)
    # The repositories hold the very packages at the top of the bundle.
    assert (bundle_dir / f"repo/apt/pool/main/k/kms-appliance/{DEB}").read_bytes() == (bundle_dir / DEB).read_bytes()
    assert (bundle_dir / f"repo/yum/{RPM}").read_bytes() == (bundle_dir / RPM).read_bytes()
    for src in ("kms-appliance.sources", "kms-appliance.repo"):
        assert "@BUNDLE@" in (bundle_dir / "repo" / src).read_text()
    repo = (bundle_dir / "repo/kms-appliance.repo").read_text()
    assert "gpgcheck=1\n" in repo and "repo_gpgcheck=1\n" in repo


def test_rpm_signed_by_release_key(bundle_dir: Path, tmp_path: Path) -> None:
    rpm = bundle_dir / RPM
    db = ["--dbpath", str(tmp_path / "db")]
    (tmp_path / "db").mkdir()
    # No key imported: the signature cannot be checked, and rpm says so.
    unknown = run(["rpmkeys", *db, "-K", rpm], check=False)
    assert unknown.returncode != 0 and "SIGNATURES NOT OK" in unknown.stdout, unknown.stdout
    run(["rpmkeys", *db, "--import", bundle_dir / f"{KEY}.asc"])
    checked = run(["rpmkeys", *db, "-Kv", rpm]).stdout
    assert re.search(r"Header V4 RSA/SHA256 Signature, key ID [0-9a-f]{8}: OK", checked), checked
    # The same package as `make rpm` built, only signed: header and payload digests unchanged.
    qf = ["rpm", *db, "-qp", "--qf", "%{SHA256HEADER} %{PAYLOADDIGEST}"]
    assert run([*qf, rpm]).stdout == run([*qf, rpm_path()]).stdout
    tampered = tmp_path / RPM
    tampered.write_bytes(rpm.read_bytes())
    signed.flip_byte(tampered)
    assert run(["rpmkeys", *db, "-K", tampered], check=False).returncode != 0


def test_provenance_names_every_output_and_the_inputs(bundle_dir: Path, tmp_path: Path) -> None:
    prov = bundle_dir / "kms-appliance.provenance.json"
    keyring = bundle_dir / f"{KEY}.gpg"
    assert signed.gpgv(keyring, Path(f"{prov}.asc"), prov)
    stmt = json.loads(prov.read_text())
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"

    # Subjects: every file of the bundle but the signatures and the lists made after it, with its digest.
    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    files = {f for f in _files(bundle_dir) - NOT_LISTED - {prov.name} if not f.endswith(".asc")}
    assert set(subjects) == files | {IMAGE_REF}
    for name in files:
        assert subjects[name] == hashlib.sha256((bundle_dir / name).read_bytes()).hexdigest(), name
    with tarfile.open(bundle_dir / IMAGE) as tar:
        assert subjects[IMAGE_REF] == oci_manifest(tar)[0]["digest"].removeprefix("sha256:")

    build = stmt["predicate"]["buildDefinition"]
    deps = build["resolvedDependencies"]
    source = next(d for d in deps if d["name"] == "source")
    commit = source["digest"]["gitCommit"]
    assert run(["git", "-C", REPO, "cat-file", "-t", commit]).stdout.strip() == "commit"
    # The commit is the one stamped into the executable.
    stamp = json.loads(run([bundle_dir / "kms-appliance", "version", "--json"]).stdout)["commit"]
    assert commit.startswith(stamp.removesuffix("-dirty"))
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", commit], capture_output=True,
                             check=True).stdout
    assert source["digest"]["sha256"] == hashlib.sha256(archive).hexdigest()
    # Every runtime library pinned for the freeze, at its pinned version, with a digest.
    pins = dict(line.split("==") for line in (REPO / "build/requirements-freeze.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pypi = {d["name"]: d for d in deps if d["uri"].startswith("pkg:pypi/")}
    for name, version in pins.items():
        assert pypi[name]["uri"] == f"pkg:pypi/{name}@{version}", name
    for dep in deps:  # every input has a sha256, and says what it is a digest of when not of the file
        assert re.fullmatch(r"[0-9a-f]{64}", dep["digest"]["sha256"]), dep
        assert dep["uri"].startswith(("pkg:deb/", "file://")) or "digest.sha256" in dep["annotations"], dep
    assert any(d["uri"].startswith("pkg:deb/debian/rpm@") for d in deps)
    assert stmt["predicate"]["runDetails"]["builder"]["id"]

    tampered = tmp_path / prov.name
    tampered.write_text(prov.read_text().replace(commit, "0" * 40))
    assert not signed.gpgv(keyring, Path(f"{prov}.asc"), tampered)


def test_key_given_as_file_signs_reproducibly(tmp_path: Path) -> None:
    """A release key handed to the build as a file: used, same bytes twice, nothing left behind."""
    home = tmp_path / "release"
    signed.other_key(home)
    secret = tmp_path / "release.key"
    secret.write_bytes(subprocess.run(["gpg", "--homedir", home, "--batch", "--export-secret-keys"],
                                      capture_output=True, check=True).stdout)
    signed.stop_agent(home)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**signed.clean_env(), "KMS_SIGNING_KEY_FILE": str(secret), "TMPDIR": str(temp)}
    env.pop("KMS_SIGNING_GNUPGHOME", None)
    fpr = run([SIGN, "fingerprint"], env=env).stdout.strip()
    assert signed.fingerprints(secret, tmp_path / "show") == [fpr]
    data = tmp_path / "artefact"
    data.write_bytes(b"an artefact\n")
    sigs = []
    for _ in range(2):
        run([SIGN, "files", data], env=env)
        sigs.append(Path(f"{data}.asc").read_bytes())
    assert sigs[0] == sigs[1], "the same key signs the same bytes into the same signature"
    run([SIGN, "pubkey", tmp_path / "pub"], env=env)
    assert signed.gpgv(tmp_path / "pub.gpg", Path(f"{data}.asc"), data)
    assert list(temp.iterdir()) == [], "the imported key's temporary GnuPG home must be removed"


def test_key_in_a_gnupg_home_with_signing_subkey_and_passphrase(tmp_path: Path) -> None:
    """The usual shape of a release key: certify-only primary, a signing subkey, a
    passphrase, and other keys in the same home (chosen by fingerprint)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    gpg = ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase-file", passphrase]
    run([*gpg, "--quick-generate-key", "Release <release@example.invalid>", "rsa3072", "cert", "never"])
    fpr = signed.fingerprints_in_home(home)[0]
    run([*gpg, "--quick-add-key", fpr, "rsa3072", "sign", "never"])
    run(["gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-generate-key",
         "Another <another@example.invalid>", "rsa3072", "sign", "never"])
    signed.stop_agent(home)
    env = {**signed.clean_env(), "KMS_SIGNING_GNUPGHOME": str(home)}
    env.pop("KMS_SIGNING_KEY_FILE", None)
    ambiguous = run([SIGN, "fingerprint"], env=env, check=False)
    assert ambiguous.returncode != 0 and "set KMS_SIGNING_KEY" in ambiguous.stderr
    env |= {"KMS_SIGNING_KEY": fpr, "KMS_SIGNING_PASSPHRASE_FILE": str(passphrase)}
    try:
        data = tmp_path / "artefact"
        data.write_bytes(b"an artefact\n")
        rpm = tmp_path / RPM
        rpm.write_bytes(rpm_path().read_bytes())
        run([SIGN, "files", data], env=env)
        run([SIGN, "rpm", rpm], env=env)
        run([SIGN, "pubkey", tmp_path / "pub"], env=env)
    finally:
        signed.stop_agent(home)
    assert signed.fingerprints(tmp_path / "pub.asc", tmp_path / "show") == [fpr]
    assert signed.gpgv(tmp_path / "pub.gpg", Path(f"{data}.asc"), data)
    db = ["--dbpath", str(tmp_path / "db")]
    (tmp_path / "db").mkdir()
    run(["rpmkeys", *db, "--import", tmp_path / "pub.asc"])
    assert "Signature, key ID" in run(["rpmkeys", *db, "-Kv", rpm]).stdout
