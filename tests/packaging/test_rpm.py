"""The .rpm: contents, rpmlint, and install/query/erase with scriptlets in a root."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.support.packaging import DOCS, WANTS, assert_installed, assert_shipped, rpm_path, step
from tests.support.steps import REPO, VERSION, run

pytestmark = pytest.mark.packaging

DB = ["--dbpath", "/var/lib/rpm-kms"]


def test_contents_and_config() -> None:
    rpm = rpm_path()
    listing = run(["rpm", "-qlvp", "--dbpath", "/nonexistent", rpm]).stdout.splitlines()
    files = {line.split()[-1]: (line.split()[0], line.split()[2], line.split()[3]) for line in listing}
    assert files["/usr/bin/kms-appliance"] == ("-rwxr-xr-x", "root", "root")
    assert files["/usr/lib/systemd/system/kms-appliance.service"] == ("-rw-r--r--", "root", "root")
    assert files["/etc/kms-appliance/config.toml"][0] == "-rw-r-----"
    assert files["/etc/kms-appliance/config.toml"][2].startswith("kms-appl")
    assert files["/var/lib/kms-appliance"][0] == "drwx------"
    assert "/usr/share/man/man8/kms-appliance.8.gz" in files
    for rel in DOCS:
        assert files[f"/usr/share/doc/kms-appliance/{rel}"] == ("-rw-r--r--", "root", "root"), rel
    docs = set(run(["rpm", "-qdp", "--dbpath", "/nonexistent", rpm]).stdout.split())
    assert {f"/usr/share/doc/kms-appliance/{rel}" for rel in DOCS} <= docs  # marked %doc
    assert run(["rpm", "-qcp", "--dbpath", "/nonexistent", rpm]).stdout.split() == \
        ["/etc/kms-appliance/config.toml"]
    noreplace = run(["rpm", "-qp", "--dbpath", "/nonexistent", "--qf",
                     "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm]).stdout
    assert re.search(r"^/etc/kms-appliance/config.toml c?n", noreplace, re.M) or \
        "/etc/kms-appliance/config.toml cn" in noreplace, noreplace
    scripts = run(["rpm", "-qp", "--scripts", "--dbpath", "/nonexistent", rpm]).stdout
    assert "preinstall scriptlet" in scripts and "useradd -r" in scripts
    assert "systemctl --no-reload preset kms-appliance.service" in scripts
    assert "try-restart kms-appliance.service" in scripts


def test_rpmlint_clean_with_justified_filters() -> None:
    proc = run(["rpmlint", "-c", REPO / "packaging/rpm/rpmlint.toml", rpm_path()], check=False)
    assert proc.returncode == 0, proc.stdout
    assert "0 errors, 0 warnings" in proc.stdout, proc.stdout
    lines = (REPO / "packaging/rpm/rpmlint.toml").read_text().splitlines()
    start = lines.index("Filters = [")
    for i in range(start + 1, len(lines)):
        if lines[i].strip().startswith("'"):
            assert lines[i - 1].strip().startswith(("#", "'")), f"filter without a reason: {lines[i]}"


def test_install_query_erase(root: Path) -> None:
    shutil.copy(rpm_path(), root / "var/tmp/kms.rpm")
    # --nodeps: the Debian root's packages are not in an rpm database.
    with step("rpm: install with scriptlets"):
        run(["rpm", "--root", root, *DB, "-i", "--nodeps", root / "var/tmp/kms.rpm"])
    assert run(["rpm", "--root", root, *DB, "-q", "kms-appliance"]).stdout.strip() == \
        f"kms-appliance-{VERSION}-1.x86_64"
    assert_installed(root, shell="/sbin/nologin")  # the unit enabled: %post ran `systemctl preset` in the root
    assert_shipped(root / "usr/share/doc/kms-appliance")
    verify = run(["rpm", "--root", root, *DB, "-V", "--nodeps", "kms-appliance"], check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    conf = root / "etc/kms-appliance/config.toml"
    conf.write_text(conf.read_text() + "\n# edited by the test\n")
    with step("rpm: erase"):
        run(["rpm", "--root", root, *DB, "-e", "--nodeps", "kms-appliance"])
    assert run(["rpm", "--root", root, *DB, "-q", "kms-appliance"], check=False).returncode != 0
    assert not (root / "usr/bin/kms-appliance").exists()
    assert not conf.exists()
    assert (conf.parent / "config.toml.rpmsave").read_text().endswith("# edited by the test\n")
    assert not (root / WANTS).exists()
