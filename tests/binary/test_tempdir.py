"""Temp directory discipline: the binary unpacks into $TMPDIR (else /tmp) and says what to set.

Run in the distroless sandbox so /tmp really is the only candidate: a
read-only or noexec /tmp must end in one clear line naming TMPDIR and a
non-zero exit, never a loader traceback; a good TMPDIR must be used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.binary import sandbox

pytestmark = pytest.mark.binary

HINT = b"set TMPDIR to a writable directory on a filesystem mounted without noexec"


@pytest.mark.parametrize(("tmp", "env", "why"), [
    ("tmpfs-ro", {}, b"Read-only file system"),
    ("tmpfs-noexec", {}, b"mounted noexec"),
    ("none", {}, b"cannot unpack into /tmp"),
    # TMPDIR pointing at a noexec place is refused with the same line (not silently /tmp)
    ("tmpfs-noexec", {"TMPDIR": "/tmp"}, b"/tmp (mounted noexec)"),
], ids=["tmpfs-ro", "tmpfs-noexec", "none", "noexec-TMPDIR"])
def test_unusable_tmp_gives_one_clear_line(binary: Path, tmp: str, env: dict[str, str], why: bytes) -> None:
    r = sandbox.Sandbox(binary, tmp=tmp, env=env).run(["version"], timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert HINT in lines[0], r.stderr
    assert why in lines[0], r.stderr
    assert b"Traceback" not in r.stderr
    assert r.stdout == b""


def test_tmpdir_is_honoured(binary: Path, tmp_path: Path) -> None:
    """With a bad /tmp but a good TMPDIR the binary runs, unpacking under TMPDIR."""
    good = tmp_path / "exec-tmp"
    good.mkdir()
    good.chmod(0o1777)
    box = sandbox.Sandbox(binary, tmp="tmpfs-noexec", binds={good: "/run/tmp"},
                          env={"TMPDIR": "/run/tmp"})
    r = box.run(["version", "--json"], timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"]
    # Unpacked files are gone after exit: nothing left behind in TMPDIR.
    assert list(good.iterdir()) == []
