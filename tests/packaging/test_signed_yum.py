"""`dnf install kms-appliance` from the bundle's signed YUM repository into an
rpm-managed root, with gpgcheck=1 and repo_gpgcheck=1 (the shipped .repo file),
then `dnf upgrade` from the next release's repository, then `rpm -e` (an edited
config is kept as .rpmsave). Refused first:
repository metadata changed after signing or signed by another key, a package
that is not the one the signed metadata names, and an unsigned package
behind correctly signed metadata.

No RHEL-family userland can be fetched here (only Debian's mirror and PyPI
are reachable), so the root is a clean bookworm root whose rpm database is
started with one package that declares what that userland provides to rpm
(/bin/sh, shadow-utils: the .rpm's only requirements). Everything else is the
real thing: Debian's dnf 4 (as on RHEL 8/9) resolving, verifying and
installing, rpm running the scriptlets in the root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.packaging import REPO, VERSION, WANTS, assert_installed, assert_shipped, rpm_path, step
from tests.support.steps import run

from . import signed
from .signed import KEY, RPM

pytestmark = pytest.mark.packaging

BASE_SPEC = """\
Name: bookworm-userland
Version: 12
Release: 1
Summary: what the Debian userland of this test root provides, declared to rpm
License: Apache-2.0
BuildArch: noarch
AutoReqProv: no
Provides: /bin/sh
Provides: shadow-utils
%description
The test root's /bin/sh, useradd and groupadd come from Debian packages.
%files
"""


def _dnf(root: Path, bundle: Path, bundle_dir: Path, *args: str, check: bool = True) -> str:
    """dnf on the root with the shipped .repo file pointing at ``bundle`` (the key from the real bundle)."""
    template = (bundle_dir / "repo/kms-appliance.repo").read_text()
    repo = template.replace("@BUNDLE@/repo/yum", f"{bundle}/repo/yum").replace("@BUNDLE@", str(bundle_dir))
    (root / "etc/yum.repos.d/kms-appliance.repo").write_text(repo)
    proc = run(["dnf", "-y", "-q", "--refresh", f"--installroot={root}", "--releasever=12",
                f"--config={root}/etc/dnf/dnf.conf", f"--setopt=reposdir={root}/etc/yum.repos.d", *args],
               check=check, timeout=300)
    return proc.stdout + proc.stderr


def _installed(root: Path) -> str:
    proc = run(["rpm", f"--root={root}", "-q", "kms-appliance"], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _forged_metadata(tmp_path: Path, bundle_dir: Path) -> Path:
    """Metadata naming another package, with the genuine repomd.xml.asc copied over."""
    forged = signed.repo("yum", tmp_path / "forged", signed.changed_copy(bundle_dir / RPM, tmp_path / "changed"))
    repodata = forged / "repo/yum/repodata"
    assert (repodata / "repomd.xml").read_bytes() != (bundle_dir / "repo/yum/repodata/repomd.xml").read_bytes()
    (repodata / "repomd.xml.asc").unlink()
    shutil.copy(bundle_dir / "repo/yum/repodata/repomd.xml.asc", repodata / "repomd.xml.asc")
    return forged


def test_install_upgrade_erase_from_signed_repo(root: Path, tmp_path: Path, bundle_dir: Path, release_fpr: str) -> None:
    with step("yum: build the next release and the variant repositories"):
        up_dir = tmp_path / "up-rpm"
        proc = run([REPO / "packaging/rpm/build.sh", bundle_dir / "kms-appliance", up_dir],
                   env={**os.environ, "RPM_VERSION": f"{VERSION}+up1"})
        up_rpm = Path(proc.stdout.strip().splitlines()[-1])
        run([signed.SIGN, "rpm", up_rpm], env=signed.clean_env())
        upgrade = signed.repo("yum", tmp_path / "upgrade", up_rpm)
        forged = _forged_metadata(tmp_path, bundle_dir)
        foreign = signed.repo("yum", tmp_path / "foreign", bundle_dir / RPM, signed.other_key(tmp_path / "other"))
        signed.stop_agent(tmp_path / "other")
        bad_rpm = tmp_path / "bad-rpm"  # a real copy (no hard links into the shared bundle) to tamper with
        shutil.copytree(bundle_dir / "repo/yum", bad_rpm / "repo/yum", symlinks=True)
        signed.flip_byte(bad_rpm / f"repo/yum/{RPM}")
        # `make rpm`'s package, unsigned, behind metadata the release key did sign.
        unsigned = signed.repo("yum", tmp_path / "unsigned", rpm_path())

    try:
        with step("yum: rpm database for the root"):
            base = tmp_path / "base"
            base.mkdir()
            (base / "base.spec").write_text(BASE_SPEC)
            run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {base / 'top'}", "--define",
                 f"_rpmdir {base / 'out'}", "--define", f"_dbpath {base / 'db'}", base / "base.spec"])
            run(["rpm", f"--root={root}", "--initdb"])
            run(["rpm", f"--root={root}", "-i", base / "out/noarch/bookworm-userland-12-1.noarch.rpm"])
            (root / "etc/yum.repos.d").mkdir(parents=True)
            (root / "etc/dnf").mkdir(parents=True)
            (root / "etc/dnf/dnf.conf").write_text("[main]\ngpgcheck=1\nrepo_gpgcheck=1\ninstall_weak_deps=0\n")
            # The operator imports the key after checking its fingerprint (docs/verify.md).
            assert signed.fingerprints(bundle_dir / f"{KEY}.asc", tmp_path / "show") == [release_fpr]
            run(["rpm", f"--root={root}", "--import", bundle_dir / f"{KEY}.asc"])

        with step("yum: refused repositories"):
            for lying in (forged, foreign):
                out = _dnf(root, lying, bundle_dir, "install", "kms-appliance", check=False)
                assert "repomd.xml GPG signature verification error" in out, out
            out = _dnf(root, bad_rpm, bundle_dir, "install", "kms-appliance", check=False)
            assert "incorrect checksum" in out, out
            out = _dnf(root, unsigned, bundle_dir, "install", "kms-appliance", check=False)
            assert "is not signed" in out or "GPG check FAILED" in out, out
        assert _installed(root) == "", "nothing may be installed from a refused repository"

        with step("yum: dnf install from the bundle"):
            _dnf(root, bundle_dir, bundle_dir, "install", "kms-appliance")
        assert _installed(root) == f"kms-appliance-{VERSION}-1.x86_64"
        assert_installed(root, shell="/sbin/nologin")  # the unit enabled: %post ran `systemctl preset` in the root
        assert_shipped(root / "usr/share/doc/kms-appliance")
        verify = run(["rpm", f"--root={root}", "-V", "kms-appliance"], check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr

        with step("yum: dnf upgrade from the next bundle"):
            _dnf(root, upgrade, bundle_dir, "upgrade", "kms-appliance")
        assert _installed(root) == f"kms-appliance-{VERSION}+up1-1.x86_64"

        conf = root / "etc/kms-appliance/config.toml"
        conf.write_text(conf.read_text() + "\n# edited by the test\n")
        with step("rpm: erase"):
            run(["rpm", f"--root={root}", "-e", "kms-appliance"])
        assert _installed(root) == ""
        assert not (root / "usr/bin/kms-appliance").exists()
        assert not conf.exists()
        assert (conf.parent / "config.toml.rpmsave").read_text().endswith("# edited by the test\n")
        assert not (root / WANTS).exists()
    finally:
        # dnf's metadata check (gpgme) starts an agent per repository keyring.
        for pubring in root.glob("var/cache/dnf/*/pubring"):
            run(["gpgconf", "--homedir", pubring, "--kill", "gpg-agent"], check=False)
