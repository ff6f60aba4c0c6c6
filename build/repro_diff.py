"""Explain why two kms-appliance binaries differ: which archive member, not which byte.

Why: ``cmp`` says "byte 95115 differs", which proves nothing about the cause.
This walks both layers (the tar staticx embedded, then the PyInstaller
archive inside it, then the PYZ of Python modules) and names every member
whose content or metadata differs, so a non-reproducible tool can be pinned
down. Exit 0 when identical, 1 otherwise. Run with the freeze venv's Python.
"""

from __future__ import annotations

import io
import sys
import tarfile
import tempfile
from pathlib import Path

from elftools.elf.elffile import ELFFile
from PyInstaller.archive.readers import CArchiveReader


def _tar(binary: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    with binary.open("rb") as f:
        data = ELFFile(f).get_section_by_name(".staticx.archive").data()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for m in tar.getmembers():
            body = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            out[m.name] = (m, body)
    return out


def _pkg_entries(path: Path) -> dict[str, bytes]:
    pkg = CArchiveReader(str(path))
    out = {}
    for name, entry in pkg.toc.items():
        if entry[-1] == "z":
            pyz = pkg.open_embedded_archive(name)
            for mod in pyz.toc:
                out[f"PYZ:{mod}"] = pyz.extract(mod, raw=True)
        else:
            out[name] = pkg.extract(name)
    return out


def compare(a: Path, b: Path) -> list[str]:
    """Human-readable differences, empty when the files are identical."""
    if a.read_bytes() == b.read_bytes():
        return []
    problems = []
    ta, tb = _tar(a), _tar(b)
    for name in sorted(set(ta) | set(tb)):
        if name not in ta or name not in tb:
            problems.append(f"staticx member {name} only in one build")
            continue
        (ia, da), (ib, db) = ta[name], tb[name]
        for attr in ("mtime", "mode", "uid", "gid", "uname", "gname", "linkname"):
            if getattr(ia, attr) != getattr(ib, attr):
                problems.append(f"staticx member {name}: {attr} {getattr(ia, attr)!r} != "
                                f"{getattr(ib, attr)!r}")
        if da != db:
            problems.append(f"staticx member {name}: content differs")
            if name.endswith("-onefile"):
                problems += _compare_pkg(da, db)
    if not problems:
        problems.append("archives equal; the difference is in the ELF wrapper (bootloader/headers)")
    return problems


def _compare_pkg(da: bytes, db: bytes) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = Path(tmp, "a"), Path(tmp, "b")
        pa.write_bytes(da)
        pb.write_bytes(db)
        ea, eb = _pkg_entries(pa), _pkg_entries(pb)
    diffs = [f"  onefile entry {n} differs" for n in sorted(set(ea) | set(eb)) if ea.get(n) != eb.get(n)]
    return diffs or ["  onefile entries equal; the difference is in the PyInstaller wrapper"]


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    problems = compare(a, b)
    if not problems:
        print(f"repro: {a} and {b} are byte-identical")
        return 0
    print(f"repro: {a} and {b} differ:")
    for p in problems:
        print(p)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
