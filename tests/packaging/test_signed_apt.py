"""The .deb's whole life in a clean bookworm root with no other source (the air-gapped site):
`apt install kms-appliance` from the bundle's signed APT repository, signature checking on
(signed-by= the release keyring, no --allow-unauthenticated); the next release's repository
upgrades it, keeping an edited config; then `dpkg -r` and `dpkg -P`. Refused first: a Release
changed after signing, metadata signed by another key, and a .deb that is not the one the signed
metadata names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.packaging import VERSION, WANTS, assert_installed, assert_shipped, nspawn, step

from . import signed
from .signed import DEB, KEY

pytestmark = pytest.mark.packaging

MOUNT = "/srv/kms-bundle"
APT = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y")


def _forged_release(tmp_path: Path, bundle_dir: Path) -> Path:
    """What an attacker without the key can make: another .deb, Packages and Release
    hashes that match it, and the genuine release's signatures copied over."""
    forged = signed.repo("apt", tmp_path / "bad-release", signed.changed_copy(bundle_dir / DEB, tmp_path / "changed"))
    dists, genuine = forged / "repo/apt/dists/stable", bundle_dir / "repo/apt/dists/stable"
    release = (dists / "Release").read_text()
    assert release != (genuine / "Release").read_text()
    signature = (genuine / "InRelease").read_text().split("-----BEGIN PGP SIGNATURE-----", 1)[1]
    for name in ("InRelease", "Release.gpg"):
        (dists / name).unlink()
    (dists / "InRelease").write_text("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + release
                                     + "-----BEGIN PGP SIGNATURE-----" + signature)
    shutil.copy(genuine / "Release.gpg", dists / "Release.gpg")
    return forged


def _apt(root: Path, bundle: Path, *args: str, check: bool = True) -> str:
    """apt on ``bundle`` as docs/verify.md has the operator point it: the shipped source file, its path filled in."""
    template = (bundle / "repo/kms-appliance.sources").read_text()
    (root / "etc/apt/sources.list.d/kms-appliance.sources").write_text(template.replace("@BUNDLE@", MOUNT))
    proc = nspawn(root, *APT, *args, binds=[f"{bundle}:{MOUNT}"], check=check, timeout=300)
    return proc.stdout + proc.stderr if not check else proc.stdout


def _installed(root: Path) -> str:
    proc = nspawn(root, "dpkg-query", "-W", "-f", "${Status} ${Version}", "kms-appliance", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def test_install_upgrade_remove_purge_from_signed_repo(root: Path, tmp_path: Path, bundle_dir: Path,
                                                       release_fpr: str, upgrade_deb: Path) -> None:
    # The next release, as its bundle would carry it; and three ways the repository can lie.
    with step("apt: build the variant repositories"):
        upgrade = signed.repo("apt", tmp_path / "upgrade", upgrade_deb)
        bad_release = _forged_release(tmp_path, bundle_dir)
        foreign = signed.repo("apt", tmp_path / "foreign", bundle_dir / DEB, signed.other_key(tmp_path / "other"))
        signed.stop_agent(tmp_path / "other")
        bad_deb = signed.repo("apt", tmp_path / "bad-deb", bundle_dir / DEB)
        signed.flip_byte(bad_deb / f"repo/apt/pool/main/k/kms-appliance/{DEB}")
        for d in (upgrade, bad_release, foreign, bad_deb):
            shutil.copytree(bundle_dir / "repo", d / "repo", dirs_exist_ok=True,
                            ignore=lambda _d, names: [n for n in names if n in ("apt", "yum")])

    # The site has no other source: apt sees only the bundle.
    (root / "etc/apt/sources.list").write_text("")
    keyring = root / f"etc/apt/keyrings/{KEY}.gpg"
    keyring.parent.mkdir(parents=True, exist_ok=True)
    assert signed.fingerprints(bundle_dir / f"{KEY}.gpg", tmp_path / "show") == [release_fpr]
    shutil.copy(bundle_dir / f"{KEY}.gpg", keyring)
    keyring.chmod(0o644)

    with step("apt: refused repositories"):
        out = _apt(root, bad_release, "update", check=False)
        assert "BADSIG" in out or "signatures were invalid" in out, out
        out = _apt(root, bad_release, "install", "kms-appliance", check=False)
        assert "Unable to locate package" in out, out
        out = _apt(root, foreign, "update", check=False)
        assert "NO_PUBKEY" in out or "is not signed" in out, out
        assert _apt(root, bad_deb, "update")
        out = _apt(root, bad_deb, "install", "kms-appliance", check=False)
        assert "Hash Sum mismatch" in out or "unexpected size" in out, out
    assert _installed(root) == "", "nothing may be installed from a refused repository"

    with step("apt: install from the bundle"):
        _apt(root, bundle_dir, "update")
        _apt(root, bundle_dir, "install", "kms-appliance")
    assert _installed(root) == f"install ok installed {VERSION}"
    assert_installed(root)
    nspawn(root, "getent", "group", "kms-appliance")
    assert (root / "usr/share/man/man8/kms-appliance.8.gz").exists()
    assert_shipped(root / "usr/share/doc/kms-appliance")
    conf = root / "etc/kms-appliance/config.toml"
    edited = conf.read_text().replace('key_name = ""', 'key_name = "/edited/by/test"')
    assert edited != conf.read_text()
    conf.write_text(edited)
    (root / "var/lib/kms-appliance/keyring.json").write_text("{}")

    with step("apt: upgrade from the next bundle"):
        _apt(root, upgrade, "update")
        _apt(root, upgrade, "upgrade")
    assert _installed(root) == f"install ok installed {VERSION}+up1"
    assert nspawn(root, "kms-appliance", "version").stdout.startswith(f"kms-appliance {VERSION} ")
    assert conf.read_text() == edited, "upgrade lost the edited config"
    assert not list(conf.parent.glob("config.toml.dpkg-*"))
    assert nspawn(root, "stat", "-c", "%U:%G %a", "/etc/kms-appliance/config.toml").stdout == "root:kms-appliance 640\n"

    with step("deb: remove"):
        nspawn(root, "dpkg", "-r", "kms-appliance")
    assert not (root / "usr/bin/kms-appliance").exists()
    assert conf.read_text() == edited, "remove must keep the config"
    assert (root / "var/lib/kms-appliance/keyring.json").exists()
    assert _installed(root) == f"deinstall ok config-files {VERSION}+up1"

    with step("deb: purge"):
        nspawn(root, "dpkg", "-P", "kms-appliance")
    assert not (root / "etc/kms-appliance").exists()
    assert not (root / "var/lib/kms-appliance").exists()
    assert nspawn(root, "getent", "passwd", "kms-appliance", check=False).returncode == 2
    assert nspawn(root, "getent", "group", "kms-appliance", check=False).returncode == 2
    assert not (root / WANTS).exists()
    assert _installed(root) == ""
