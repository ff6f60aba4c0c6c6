"""The .rpm: contents and rpmlint (install, upgrade and erase with scriptlets in a root, from the
signed YUM repository: test_signed_yum.py)."""

from __future__ import annotations

import re

import pytest

from tests.support.packaging import DOCS, rpm_path
from tests.support.steps import REPO, run

pytestmark = pytest.mark.packaging


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

