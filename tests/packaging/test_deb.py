"""The .deb: contents and lintian (its whole life in a clean bookworm root, installed from the signed
APT repository: test_signed_apt.py)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.support.packaging import DOCS, artefact, assert_shipped, deb_path, step
from tests.support.steps import REPO, VERSION, run

pytestmark = pytest.mark.packaging

EXPECTED = {
    # path: (mode, owner)
    "./usr/bin/kms-appliance": ("-rwxr-xr-x", "root/root"),
    "./lib/systemd/system/kms-appliance.service": ("-rw-r--r--", "root/root"),
    "./etc/kms-appliance/config.toml": ("-rw-r-----", "root/root"),
    "./usr/share/man/man8/kms-appliance.8.gz": ("-rw-r--r--", "root/root"),
    "./usr/share/doc/kms-appliance/copyright": ("-rw-r--r--", "root/root"),
    "./usr/share/doc/kms-appliance/changelog.gz": ("-rw-r--r--", "root/root"),
    "./usr/share/lintian/overrides/kms-appliance": ("-rw-r--r--", "root/root"),
    **{f"./usr/share/doc/kms-appliance/{rel}": ("-rw-r--r--", "root/root") for rel in DOCS},
}


def test_contents_modes_owners(tmp_path: Path) -> None:
    deb = deb_path()
    listing = run(["dpkg-deb", "-c", deb]).stdout.splitlines()
    files = {}
    for line in listing:
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        files[path] = (mode, owner)
        assert owner == "root/root", line
        assert mode[5] != "w" and mode[8] != "w", f"group/other writable: {line}"
    for path, want in EXPECTED.items():
        assert files.get(path) == want, f"{path}: {files.get(path)} != {want}"
    regular = {p for p, (m, _) in files.items() if m.startswith("-")}
    assert regular == set(EXPECTED), f"unexpected files: {regular ^ set(EXPECTED)}"

    info = run(["dpkg-deb", "-f", deb]).stdout
    assert f"Version: {VERSION}\n" in info and "Architecture: amd64" in info
    assert re.search(r"^Depends: .*adduser", info, re.M)
    run(["dpkg-deb", "-R", deb, tmp_path / "x"])
    control = tmp_path / "x" / "DEBIAN"
    assert (control / "conffiles").read_text().split() == ["/etc/kms-appliance/config.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert (control / script).stat().st_mode & 0o777 == 0o755
        run(["sh", "-n", control / script])
    # md5sums covers every shipped file except the conffile, and is right.
    sums = dict(reversed(line.split(None, 1)) for line in (control / "md5sums").read_text().splitlines())
    shipped = {p[2:] for p in regular} - {"etc/kms-appliance/config.toml"}
    assert set(sums) == shipped
    for rel, digest in sums.items():
        assert hashlib.md5((tmp_path / "x" / rel).read_bytes()).hexdigest() == digest, rel
    # The shipped files are the repository's own.
    assert (tmp_path / "x/usr/bin/kms-appliance").read_bytes() == artefact("kms-appliance").read_bytes()
    assert (tmp_path / "x/lib/systemd/system/kms-appliance.service").read_bytes() == \
        (REPO / "packaging/systemd/kms-appliance.service").read_bytes()
    assert (tmp_path / "x/etc/kms-appliance/config.toml").read_bytes() == \
        (REPO / "packaging/config.toml").read_bytes()
    assert_shipped(tmp_path / "x/usr/share/doc/kms-appliance")


def test_lintian_clean_and_every_override_has_a_reason() -> None:
    with step("lintian"):
        proc = run(["lintian", "--pedantic", "--display-info", "--fail-on", "error,warning,info",
                    deb_path()], check=False, timeout=300)
    findings = [line for line in proc.stdout.splitlines() if re.match(r"^[EWIP]: ", line)]
    assert proc.returncode == 0 and not findings, proc.stdout + proc.stderr
    lines = (REPO / "packaging/deb/lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("kms-appliance:"):
            j = i - 1
            while j >= 0 and lines[j].startswith("kms-appliance:"):
                j -= 1
            assert j >= 0 and lines[j].startswith("#"), f"override without a reason: {line}"

