"""scripts/provenance.py: the parts that decide what the signed statement says."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.unit.helpers import script

provenance = script("scripts/provenance.py")

LIB = ["six.py,sha256=xRyR9wPT1LNpbJI8tf7CE-BeddkhU5O--sfy-mo5BN8,34703",
       "six-1.17.0.dist-info/METADATA,sha256=ViBCB4wnUlSfbYp8htvF3XCAiKe-bYBnLsewcQC3JGg,1658"]


def _record(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


class TestRecordDigest:
    """A distribution's digest names what its wheel installed, not where or when."""

    def test_install_path_and_time_do_not_change_it(self, tmp_path: Path) -> None:
        here = _record(tmp_path, "a", [*LIB, "../../../bin/tool,sha256=AAAA,120", "__pycache__/six.cpython-311.pyc,,",
                                       "six-1.17.0.dist-info/RECORD,,", "six-1.17.0.dist-info/INSTALLER,sha256=x,4"])
        there = _record(tmp_path, "b", ["../../../bin/tool,sha256=BBBB,131", *reversed(LIB),
                                        "six-1.17.0.dist-info/REQUESTED,sha256=y,0"])
        assert provenance.record_digest(here) == provenance.record_digest(there)

    def test_a_changed_library_file_changes_it(self, tmp_path: Path) -> None:
        genuine = _record(tmp_path, "a", LIB)
        changed = _record(tmp_path, "b", [LIB[0].replace("xRyR", "xRyS"), LIB[1]])
        assert provenance.record_digest(genuine) != provenance.record_digest(changed)


def test_subjects_are_every_file_but_signatures_and_the_statement(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    (bundle / "repo/apt").mkdir(parents=True)
    for name in ("kms-appliance", "kms-appliance.asc", "SHA256SUMS", "SHA256SUMS.asc", "repo/apt/Packages",
                 "kms-appliance.provenance.json"):
        (bundle / name).write_text(name)
    subjects = provenance.subjects(bundle, bundle / "kms-appliance.provenance.json", "localhost/x:1",
                                   "sha256:" + "ab" * 32)
    names = {s["name"]: s["digest"]["sha256"] for s in subjects}
    assert names == {"kms-appliance": hashlib.sha256(b"kms-appliance").hexdigest(),
                     "repo/apt/Packages": hashlib.sha256(b"repo/apt/Packages").hexdigest(),
                     "localhost/x:1": "ab" * 32}
