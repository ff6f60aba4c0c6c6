"""Explain why two builds differ: which member of which archive, not which byte.

Why: ``cmp`` says "byte 95115 differs", which proves nothing about the cause.
This walks both artefacts layer by layer and names every member whose content
or metadata differs, so a non-reproducible tool can be pinned down:

- the static binary: the tar staticx embedded, then the PyInstaller archive
  inside it, then the PYZ of Python modules;
- .deb: the ar members, then control.tar and data.tar members (and the binary
  inside);
- .rpm: every header tag (from ``rpm -qp --xml``), then the cpio payload;
- OCI archive: index, manifests, config (field by field) and each layer's tar,
  paired by position (a changed layer changes its digest, hence its name);
- gzip/xz wrappers (header mtime, OS byte, compression), tar headers (mtime,
  mode, owners, order), JSON (the differing keys), text (the first lines).

Usage: ``repro_diff.py A B`` with two files, or two directories (every file in
either is compared by name). Exit 0 when identical, 1 otherwise. The binary
layer needs pyelftools and PyInstaller (run with the freeze venv's Python);
everything else needs only the standard library and ``rpm`` for .rpm headers.
"""

from __future__ import annotations

import difflib
import gzip
import io
import json
import lzma
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_LINES = 400  # a report longer than this is cut: the first lines name the cause
_TAR_ATTRS = ("type", "mode", "uid", "gid", "uname", "gname", "mtime", "linkname", "devmajor", "devminor")


def compare_bytes(label: str, da: bytes, db: bytes) -> list[str]:
    """Differences between two blobs, each line prefixed with where it is."""
    if da == db:
        return []
    ka, kb = _sniff(label, da), _sniff(label, db)
    if ka != kb:
        return [f"{label}: different kinds of content ({ka} vs {kb})"]
    return _HANDLERS[ka](label, da, db)


def _sniff(label: str, data: bytes) -> str:
    checks: list[tuple[str, Callable[[bytes], bool]]] = [
        ("gzip", lambda d: d[:2] == b"\x1f\x8b"),
        ("xz", lambda d: d[:6] == b"\xfd7zXZ\x00"),
        ("ar", lambda d: d[:8] == b"!<arch>\n"),
        ("rpm", lambda d: d[:4] == b"\xed\xab\xee\xdb"),
        ("cpio", lambda d: d[:6] in (b"070701", b"070702")),
        ("tar", lambda d: len(d) >= 512 and d[257:262] == b"ustar"),
        ("elf", lambda d: d[:4] == b"\x7fELF"),
        ("json", lambda d: d.lstrip()[:1] in (b"{", b"[") and _json(d) is not None),
    ]
    for kind, check in checks:
        if check(data):
            return kind
    return "text" if _text(data) is not None else "bytes"


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- compression wrappers ----------------------------------------------------


def _gzip(label: str, da: bytes, db: bytes) -> list[str]:
    ua, ub = gzip.decompress(da), gzip.decompress(db)
    if ua != ub:
        return compare_bytes(label, ua, ub)
    out = []
    fields = {"mtime": slice(4, 8), "xfl": slice(8, 9), "os": slice(9, 10), "flags": slice(3, 4)}
    for name, where in fields.items():
        if da[where] != db[where]:
            va, vb = int.from_bytes(da[where], "little"), int.from_bytes(db[where], "little")
            out.append(f"{label}: gzip header {name} {va} != {vb}")
    return out or [f"{label}: same content, compressed differently (gzip level or implementation)"]


def _xz(label: str, da: bytes, db: bytes) -> list[str]:
    ua, ub = lzma.decompress(da), lzma.decompress(db)
    if ua != ub:
        return compare_bytes(label, ua, ub)
    return [f"{label}: same content, compressed differently (xz settings or implementation)"]


# --- archives ------------------------------------------------------------------


Member = tuple[dict[str, Any], bytes]  # (metadata, content)


def _members_diff(label: str, ma: dict[str, Member], mb: dict[str, Member]) -> list[str]:
    """Order, presence, metadata and content of two name -> member maps."""
    out = []
    common = [n for n in ma if n in mb]
    if common != [n for n in mb if n in ma]:
        out.append(f"{label}: members in a different order")
    for name in ma.keys() - mb.keys():
        out.append(f"{label}: {name} only in the first")
    for name in mb.keys() - ma.keys():
        out.append(f"{label}: {name} only in the second")
    for name in common:
        (meta_a, body_a), (meta_b, body_b) = ma[name], mb[name]
        for key in meta_a:
            if meta_a[key] != meta_b.get(key):
                out.append(f"{label}:{name}: {key} {meta_a[key]!r} != {meta_b.get(key)!r}")
        out += compare_bytes(f"{label}:{name}", body_a, body_b)
    return out


def _tar_members(data: bytes) -> dict[str, Member]:
    out: dict[str, Member] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar.getmembers():
            meta = {a: getattr(m, a) for a in _TAR_ATTRS}
            meta["pax"] = dict(sorted(m.pax_headers.items()))
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = (meta, f.read() if f else b"")
    return out


def _tar(label: str, da: bytes, db: bytes) -> list[str]:
    ma, mb = _tar_members(da), _tar_members(db)
    if "index.json" in ma and "oci-layout" in ma and "index.json" in mb:
        return _oci(label, ma, mb)
    out = _members_diff(label, ma, mb)
    return out or [f"{label}: tar headers or padding differ (format, end-of-archive blocks)"]


def _ar_members(data: bytes) -> dict[str, Member]:
    out: dict[str, Member] = {}
    pos = 8
    while pos + 60 <= len(data):
        h = data[pos:pos + 60]
        size = int(h[48:58])
        name = h[0:16].decode().strip().rstrip("/")
        meta = {"mtime": h[16:28].strip().decode(), "uid": h[28:34].strip().decode(),
                "gid": h[34:40].strip().decode(), "mode": h[40:48].strip().decode()}
        out[name] = (meta, data[pos + 60:pos + 60 + size])
        pos += 60 + size + (size & 1)
    return out


def _ar(label: str, da: bytes, db: bytes) -> list[str]:
    return _members_diff(label, _ar_members(da), _ar_members(db)) or [f"{label}: ar padding differs"]


def _cpio_members(data: bytes) -> dict[str, Member]:
    """newc/crc cpio, as rpm2cpio writes it."""
    out: dict[str, Member] = {}
    pos = 0
    fields = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
              "rdevmajor", "rdevminor", "namesize", "check")
    while pos + 110 <= len(data):
        vals = {f: int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i, f in enumerate(fields)}
        name_end = pos + 110 + vals["namesize"]
        name = data[pos + 110:name_end - 1].decode()
        body_start = (name_end + 3) & ~3
        body = data[body_start:body_start + vals["filesize"]]
        pos = (body_start + vals["filesize"] + 3) & ~3
        if name == "TRAILER!!!":
            break
        meta = {k: oct(v) if k == "mode" else v for k, v in vals.items()
                if k not in ("namesize", "filesize", "check", "devmajor", "devminor")}
        out[name] = (meta, body)
    return out


def _cpio(label: str, da: bytes, db: bytes) -> list[str]:
    return _members_diff(label, _cpio_members(da), _cpio_members(db)) or [f"{label}: cpio padding differs"]


# --- rpm -------------------------------------------------------------------------


def _rpm_tags(path: Path, dbpath: str) -> dict[str, str]:
    xml = subprocess.run(["rpm", "--dbpath", dbpath, "-qp", "--xml", str(path)],
                         capture_output=True, check=True).stdout
    tags = {}
    for tag in ET.fromstring(xml):  # noqa: S314
        tags[tag.get("name", "?")] = "|".join((v.text or "") for v in tag.iter() if v is not tag)
    return tags


def _rpm(label: str, da: bytes, db: bytes) -> list[str]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = Path(tmp, "a.rpm"), Path(tmp, "b.rpm")
        pa.write_bytes(da)
        pb.write_bytes(db)
        try:
            ta, tb = _rpm_tags(pa, tmp), _rpm_tags(pb, tmp)
            payload_a = subprocess.run(["rpm2cpio", str(pa)], capture_output=True, check=True).stdout
            payload_b = subprocess.run(["rpm2cpio", str(pb)], capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            return [f"{label}: rpm files differ (rpm/rpm2cpio unavailable to say how: {exc})"]
    # Digests and sizes follow from the payload; name them only when nothing else differs.
    derived = {"Sha256header", "Sha1header", "Payloaddigest", "Payloaddigestalt", "Filedigests",
               "Longsize", "Size", "Longarchivesize", "Archivesize"}
    tag_diffs = [f"{label}: rpm tag {name}: {_short(ta.get(name))} != {_short(tb.get(name))}"
                 for name in sorted(ta.keys() | tb.keys()) if ta.get(name) != tb.get(name)]
    out += compare_bytes(f"{label}:payload", payload_a, payload_b)
    primary = [d for d in tag_diffs if d.split("rpm tag ")[1].split(":")[0] not in derived]
    out += primary or tag_diffs
    return out or [f"{label}: header tags and payload equal; the signature header or lead differs"]


def _short(value: str | None) -> str:
    if value is None:
        return "(absent)"
    return repr(value if len(value) <= 120 else value[:117] + "...")


# --- OCI image layout ------------------------------------------------------------


def _oci(label: str, ma: dict[str, Member], mb: dict[str, Member]) -> list[str]:
    """Follow index -> manifest -> config/layers in both and pair blobs by position."""
    out: list[str] = []
    paired: set[str] = set()

    def blob(members: dict[str, Member], digest: str) -> bytes:
        name = "blobs/" + digest.replace(":", "/", 1)
        paired.add(name)
        return members[name][1] if name in members else b""

    def walk(where: str, desc_a: dict[str, Any], desc_b: dict[str, Any]) -> None:
        body_a, body_b = blob(ma, desc_a["digest"]), blob(mb, desc_b["digest"])
        if body_a == body_b:
            return
        media = desc_a.get("mediaType", "")
        if "manifest" in media or "index" in media:
            ja, jb = json.loads(body_a), json.loads(body_b)
            out.extend(_json_diff(where, ja, jb, skip={"digest", "size"}))
            if "config" in ja and "config" in jb:
                walk(f"{where} config", ja["config"], jb["config"])
            for i, (la, lb) in enumerate(zip(ja.get("layers", []), jb.get("layers", []), strict=False)):
                walk(f"{where} layer[{i}]", la, lb)
            for i, (sa, sb) in enumerate(zip(ja.get("manifests", []), jb.get("manifests", []), strict=False)):
                walk(f"{where} manifest[{i}]", sa, sb)
        else:
            out.extend(compare_bytes(where, body_a, body_b))

    ia, ib = json.loads(ma["index.json"][1]), json.loads(mb["index.json"][1])
    out += _json_diff(f"{label}:index.json", ia, ib, skip={"digest", "size"})
    for i, (da, db) in enumerate(zip(ia.get("manifests", []), ib.get("manifests", []), strict=False)):
        walk(f"{label}: manifest[{i}]", da, db)
    paired.add("index.json")
    rest_a = {n: m for n, m in ma.items() if n not in paired}
    rest_b = {n: m for n, m in mb.items() if n not in paired}
    out += _members_diff(label, rest_a, rest_b)
    # Archive headers of the paired blobs (same names only: a renamed blob was reported above).
    for name in sorted(paired & ma.keys() & mb.keys()):
        for key, val in ma[name][0].items():
            if val != mb[name][0].get(key):
                out.append(f"{label}:{name}: {key} {val!r} != {mb[name][0].get(key)!r}")
    if [n for n in ma if n in mb] != [n for n in mb if n in ma]:
        out.append(f"{label}: members in a different order")
    return out or [f"{label}: tar headers or padding differ"]


# --- structured and plain content ------------------------------------------------


def _json_diff(where: str, a: Any, b: Any, skip: frozenset[str] | set[str] = frozenset()) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(a.keys() | b.keys()):
            if key in skip:
                continue
            out += _json_diff(f"{where}.{key}", a.get(key, "(absent)"), b.get(key, "(absent)"), skip)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in _json_diff(f"{where}[{i}]", x, y, skip)]
    return [] if a == b else [f"{where}: {_short(json.dumps(a))} != {_short(json.dumps(b))}"]


def _json_handler(label: str, da: bytes, db: bytes) -> list[str]:
    return _json_diff(label, json.loads(da), json.loads(db)) or [f"{label}: same JSON, different formatting"]


def _text_handler(label: str, da: bytes, db: bytes) -> list[str]:
    lines = list(difflib.unified_diff(da.decode().splitlines(), db.decode().splitlines(), lineterm="", n=0))
    shown = [f"{label}: text differs:"] + [f"    {line}" for line in lines[2:12]]
    return shown if lines else [f"{label}: text differs in whitespace or line endings"]


def _bytes_handler(label: str, da: bytes, db: bytes) -> list[str]:
    first = next((i for i, (x, y) in enumerate(zip(da, db, strict=False)) if x != y), min(len(da), len(db)))
    return [f"{label}: content differs ({len(da)} vs {len(db)} bytes, first at byte {first})"]


# --- the static binary -------------------------------------------------------------


def _elf(label: str, da: bytes, db: bytes) -> list[str]:
    try:
        from elftools.elf.elffile import ELFFile  # noqa: PLC0415  (freeze venv only)
    except ImportError:
        return _bytes_handler(label, da, db)
    sections = []
    for data in (da, db):
        sec = ELFFile(io.BytesIO(data)).get_section_by_name(".staticx.archive")
        sections.append(sec.data() if sec is not None else None)
    if sections[0] is None or sections[1] is None:
        return _bytes_handler(label, da, db)
    problems = _staticx(label, sections[0], sections[1])
    return problems or [f"{label}: archives equal; the difference is in the ELF wrapper (bootloader/headers)"]


def _staticx(label: str, sa: bytes, sb: bytes) -> list[str]:
    def members(data: bytes) -> dict[str, Member]:
        out: dict[str, Member] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m) if m.isfile() else None
                out[m.name] = ({a: getattr(m, a) for a in _TAR_ATTRS}, f.read() if f else b"")
        return out

    ma, mb = members(sa), members(sb)
    problems = []
    for name in sorted(ma.keys() | mb.keys()):
        where = f"{label}: staticx member {name}"
        if name not in ma or name not in mb:
            problems.append(f"{where} only in one build")
            continue
        (ia, body_a), (ib, body_b) = ma[name], mb[name]
        problems += [f"{where}: {k} {ia[k]!r} != {ib[k]!r}" for k in ia if ia[k] != ib[k]]
        if body_a != body_b:
            problems.append(f"{where}: content differs")
            if name.endswith("-onefile"):
                problems += _compare_pkg(body_a, body_b)
    return problems


def _pkg_entries(path: Path) -> dict[str, bytes]:
    from PyInstaller.archive.readers import CArchiveReader  # noqa: PLC0415  (freeze venv only)

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


def _compare_pkg(da: bytes, db: bytes) -> list[str]:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pa, pb = Path(tmp, "a"), Path(tmp, "b")
            pa.write_bytes(da)
            pb.write_bytes(db)
            ea, eb = _pkg_entries(pa), _pkg_entries(pb)
    except ImportError:
        return ["  (PyInstaller not importable here: run with the freeze venv's Python to go deeper)"]
    diffs = [f"  onefile entry {n} differs" for n in sorted(ea.keys() | eb.keys()) if ea.get(n) != eb.get(n)]
    return diffs or ["  onefile entries equal; the difference is in the PyInstaller wrapper"]


_HANDLERS: dict[str, Callable[[str, bytes, bytes], list[str]]] = {
    "gzip": _gzip, "xz": _xz, "ar": _ar, "rpm": _rpm, "cpio": _cpio, "tar": _tar, "elf": _elf,
    "json": _json_handler, "text": _text_handler, "bytes": _bytes_handler,
}


# --- files and directories -----------------------------------------------------------


def compare(a: Path, b: Path) -> list[str]:
    """Human-readable differences between two files or two directories; empty when identical."""
    if a.is_dir() and b.is_dir():
        fa = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
        fb = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
        out = [f"{n}: only in {a}" for n in sorted(fa - fb)] + [f"{n}: only in {b}" for n in sorted(fb - fa)]
        for name in sorted(fa & fb):
            out += compare(a / name, b / name)
        return out
    return compare_bytes(a.name, a.read_bytes(), b.read_bytes())


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    problems = compare(a, b)
    if not problems:
        print(f"repro: {a} and {b} are byte-identical")
        return 0
    print(f"repro: {a} and {b} differ:")
    for p in problems[:MAX_LINES]:
        print(p)
    if len(problems) > MAX_LINES:
        print(f"... {len(problems) - MAX_LINES} more lines")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
