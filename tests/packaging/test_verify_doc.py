"""docs/verify.md's command blocks, run as written on the built bundle: the
operator's offline check passes with the key the build was given, and fails
with any other fingerprint. Only the values the operator fills in (version,
fingerprint, keyring path) are replaced."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.packaging import DIST, REPO, VERSION, run, step

from . import signed
from .signed import IMAGE, KEY

pytestmark = pytest.mark.packaging

MARKER = "<!-- tested: tests/packaging/test_verify_doc.py runs this block -->"


def _blocks() -> list[str]:
    text = (REPO / "docs/verify.md").read_text()
    found = re.findall(re.escape(MARKER) + r"\n```sh\n(.*?)```", text, re.S)
    assert len(found) == 2, "docs/verify.md: the two tested blocks moved or lost their marker"
    return found


def _fill(block: str, fpr: str, keyring: Path | None = None) -> str:
    for name, value in (("V", VERSION), ("FPR", fpr), ("KEYRING", str(keyring) if keyring else None)):
        if value is not None:
            block, n = re.subn(rf"^{name}=\S+", f"{name}={value}", block, flags=re.M)
            assert n == 1, f"{name}= not found in the block"
    return block


def _bash(script: str, cwd: Path, home: Path) -> tuple[int, str]:
    home.mkdir(exist_ok=True, mode=0o700)
    temp = home / "tmp"
    temp.mkdir()
    proc = run(["bash", "-c", script], cwd=cwd, check=False, timeout=300,
               env={**signed.clean_env(), "HOME": str(home), "GNUPGHOME": str(home / ".gnupg"),
                    "TMPDIR": str(temp)})
    assert list(temp.iterdir()) == [], "the block must remove its temporary keyring"
    signed.stop_agent(home / ".gnupg")
    return proc.returncode, proc.stdout + proc.stderr


def test_bundle_check_as_documented(tmp_path: Path, release_fpr: str) -> None:
    block = _blocks()[0]
    # The trust anchor comes from the signing configuration, not from the bundle.
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    run([signed.SIGN, "pubkey", trusted / KEY], env=signed.clean_env())
    work = tmp_path / "site"
    work.mkdir()
    for name in (signed.tarball().name, f"{signed.tarball().name}.asc"):
        (work / name).symlink_to(DIST / name)
    with step("verify.md: bundle check block"):
        rc, out = _bash(_fill(block, release_fpr, trusted / f"{KEY}.gpg"), work, tmp_path / "home")
    assert rc == 0, out
    assert "subjects match" in out and "built from git+https://" in out, out
    rc, out = _bash(_fill(block, "F" * 40, trusted / f"{KEY}.gpg"), work, tmp_path / "home2")
    assert rc != 0, "a different fingerprint must stop the check"


def test_image_check_as_documented(tmp_path: Path, bundle_dir: Path, release_fpr: str) -> None:
    block = _blocks()[1]
    for name in (IMAGE, f"{IMAGE}.sig", f"{KEY}.asc"):
        (tmp_path / name).symlink_to(bundle_dir / name)
    rc, out = _bash(_fill(block, release_fpr), tmp_path, tmp_path / "home")
    assert rc == 0 and "Signature verified" in out, out
    rc, out = _bash(_fill(block, "F" * 40), tmp_path, tmp_path / "home2")
    assert rc != 0, out
