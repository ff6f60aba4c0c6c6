"""scripts/provenance.py: a distribution's digest, the part of the signed statement a real bundle cannot
vary (its subjects are checked on the bundle: tests/packaging/test_signed_bundle.py)."""

from __future__ import annotations

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

