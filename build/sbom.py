"""Write a CycloneDX 1.5 JSON SBOM of everything inside dist/kms-appliance.

Why a small script and not a generic SBOM tool: the binary's contents are
known exactly only to this build (PyInstaller's table of contents and the
archive staticx embedded); a tool scanning a virtualenv would list what is
installed, not what shipped. Components:
- Python distributions whose metadata is bundled (name, version, license);
- the Python runtime and every Debian package a bundled shared library comes
  from (PyInstaller's binaries and the libraries staticx packed), with the
  Debian version and the license named in its copyright file;
- the two bootloaders (PyInstaller's and staticx's).
Deterministic: timestamp from SOURCE_DATE_EPOCH, serial number derived from
the binary's hash, every list sorted.

Run with the freeze venv's Python (it needs pyelftools, a staticx dependency).
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile

# Where staticx found the libraries it packed: Debian's multiarch directories of
# the machine the build runs on (x86_64-linux-gnu, or aarch64-linux-gnu for arm64).
_MULTIARCH = f"{platform.machine()}-linux-gnu"
LIBDIRS = (Path("/usr/lib", _MULTIARCH), Path("/lib", _MULTIARCH), Path("/usr/lib64"), Path("/lib"))
SERIAL_NS = uuid.UUID("6f1d3c1e-4a8b-4c55-9a53-0a1f6b0e2c11")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _licenses(meta: email.message.Message) -> list[dict[str, Any]]:
    expr = meta.get("License-Expression")
    if expr:
        return [{"expression": expr.strip()}]
    text = (meta.get("License") or "").strip().splitlines()
    name = text[0].strip() if text and text[0].strip("= ") else ""
    if not name:
        classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                       if c.startswith("License ::")]
        name = "; ".join(classifiers)
    return [{"license": {"name": name}}] if name else []


def python_components(manifest: dict[str, Any], bundled_tops: set[str]) -> list[dict[str, Any]]:
    """One component per bundled .dist-info whose code is in the archive."""
    dist_dirs = sorted({Path(src).parent for dest, src in manifest["datas"]
                        if ".dist-info/" in dest and dest.endswith("/METADATA")})
    out = []
    for d in dist_dirs:
        meta = email.parser.Parser().parsestr((d / "METADATA").read_text(encoding="utf-8"))
        tops = _record_tops(d)
        if not tops & bundled_tops:
            print(f"sbom: {meta['Name']}: metadata bundled but no code; not listed", file=sys.stderr)
            continue
        name, version = meta["Name"], meta["Version"]
        out.append({"type": "library", "bom-ref": f"pypi:{name.lower()}", "name": name,
                    "version": version, "licenses": _licenses(meta),
                    "purl": f"pkg:pypi/{name.lower().replace('_', '-')}@{version}"})
    return out


def _record_tops(dist_info: Path) -> set[str]:
    record = dist_info / "RECORD"
    if not record.exists():
        return set()
    tops = set()
    for line in record.read_text(encoding="utf-8").splitlines():
        path = line.split(",", 1)[0]
        first = path.split("/", 1)[0]
        if first.endswith((".dist-info", ".data")) or first.startswith(".."):
            continue
        tops.add(first.split(".", 1)[0])
    return tops


def _deb_of(path: Path) -> str | None:
    candidates = [str(path), str(path.resolve())]
    candidates += [c.replace("/lib/", "/usr/lib/", 1) for c in candidates if c.startswith("/lib/")]
    candidates += [c.replace("/usr/lib/", "/lib/", 1) for c in candidates if c.startswith("/usr/lib/")]
    for c in candidates:
        r = subprocess.run(["dpkg-query", "-S", c], capture_output=True, text=True, check=False)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def _deb_license(pkg: str) -> list[dict[str, Any]]:
    copyright_file = Path("/usr/share/doc") / pkg.split(":", maxsplit=1)[0] / "copyright"
    if not copyright_file.exists():
        return []
    text = copyright_file.read_text(encoding="utf-8", errors="replace")
    if "Format:" in text.split("\n\n", 1)[0]:
        for para in text.split("\n\n"):
            if re.search(r"^Files:\s*\*\s*$", para, re.M):
                m = re.search(r"^License:\s*(\S.*)$", para, re.M)
                if m:
                    return [{"license": {"name": m.group(1).strip()}}]
    return [{"license": {"name": f"see /usr/share/doc/{pkg.split(':', maxsplit=1)[0]}/copyright"}}]


def debian_components(files: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Group bundled shared-library files by the Debian package that ships them."""
    by_pkg: dict[str, list[str]] = {}
    for how, paths in sorted(files.items()):
        for p in paths:
            pkg = _deb_of(Path(p))
            if pkg is None:
                print(f"sbom: {p} ({how}) belongs to no Debian package", file=sys.stderr)
                continue
            by_pkg.setdefault(pkg, []).append(f"{how}:{Path(p).name}")
    out = []
    for pkg, members in sorted(by_pkg.items()):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version} ${Architecture} ${source:Package}",
                            pkg], capture_output=True, text=True, check=True)
        version, arch, source = r.stdout.split()
        name = pkg.split(":")[0]
        out.append({"type": "library", "bom-ref": f"deb:{name}", "name": name, "version": version,
                    "licenses": _deb_license(name),
                    "purl": f"pkg:deb/debian/{name}@{version}?arch={arch}&distro=debian-12",
                    "properties": [{"name": "kms-appliance:bundled-file", "value": m}
                                   for m in sorted(set(members))] +
                                  [{"name": "debian:source-package", "value": source}]})
    return out


def staticx_members(binary: Path) -> list[str]:
    """Regular files in the archive staticx embedded (.staticx.archive, tar or tar.xz)."""
    with binary.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".staticx.archive")
        if section is None:
            raise SystemExit(f"{binary}: no .staticx.archive section (not a staticx output?)")
        data = section.data()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def _host_lib(name: str) -> str | None:
    for d in LIBDIRS:
        if (d / name).exists():
            return str(d / name)
    return None


def tool_components() -> list[dict[str, Any]]:
    """The bootloaders: PyInstaller's runs the app, staticx's unpacks everything first."""
    from importlib import metadata  # noqa: PLC0415

    pyi, sx = metadata.version("pyinstaller"), metadata.version("staticx")
    return [
        {"type": "application", "bom-ref": "pypi:pyinstaller-bootloader",
         "name": "pyinstaller-bootloader", "version": pyi,
         "licenses": [{"expression": "GPL-2.0-or-later WITH Bootloader-exception"}],
         "purl": f"pkg:pypi/pyinstaller@{pyi}"},
        {"type": "application", "bom-ref": "pypi:staticx-bootloader", "name": "staticx-bootloader",
         "version": sx, "licenses": [{"license": {"name": "GPL-2.0-or-later"}}],
         "purl": f"pkg:pypi/staticx@{sx}",
         "description": "built by build/bootloader.sh from the staticx sdist plus "
                        "build/staticx-bootloader.patch (temp-dir errors), statically linked "
                        f"with glibc from libc6-dev {_deb_version('libc6-dev')}",
         "properties": [{"name": "kms-appliance:bundled-file", "value": "staticx:libnssfix.so"}]},
    ]


def _deb_version(pkg: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True,
                       check=False)
    return r.stdout.strip() or "unknown"


def build_sbom(args: argparse.Namespace) -> dict[str, Any]:
    manifest = json.loads(args.manifest.read_text())
    contents = json.loads(args.contents.read_text())
    bundled_tops = set(contents["toplevel"]) | {
        Path(b).name.split(".", 1)[0] if "/" not in b else b.split("/", 1)[0]
        for b in contents["binaries"]}
    pyi_libs = [src for dest, src in manifest["binaries"]
                if src.startswith(("/lib", "/usr/lib")) or "lib-dynload" in src]
    members = staticx_members(args.binary)
    sx_libs = [p for m in members if m.startswith("lib") and m != "libnssfix.so"
               for p in [_host_lib(m)] if p]
    digest = sha256(args.binary)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    pyver = platform.python_version()
    runtime = {"type": "framework", "bom-ref": "python-runtime", "name": "cpython",
               "version": pyver, "licenses": [{"license": {"id": "PSF-2.0"}}],
               "purl": f"pkg:generic/cpython@{pyver}",
               "description": f"interpreter from {sys.base_prefix} (Debian libpython3.11)"}
    components = [*python_components(manifest, bundled_tops), runtime,
                  *debian_components({"pyinstaller": pyi_libs, "staticx": sx_libs}),
                  *tool_components()]
    components.sort(key=lambda c: c["bom-ref"])
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": f"urn:uuid:{uuid.uuid5(SERIAL_NS, digest)}",
        "metadata": {
            "timestamp": datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "kms-appliance build/sbom.py"}]},
            "component": {"type": "application", "bom-ref": "kms-appliance", "name": "kms-appliance",
                          "version": args.version, "hashes": [{"alg": "SHA-256", "content": digest}],
                          "licenses": [{"license": {"id": "Apache-2.0"}}],
                          "properties": [{"name": "git:commit", "value": args.commit}]},
        },
        "components": components,
        "dependencies": [{"ref": "kms-appliance", "dependsOn": [c["bom-ref"] for c in components]}],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True, help="written by pyinstaller.spec")
    p.add_argument("--contents", type=Path, required=True, help="written by check_bundle.py")
    p.add_argument("--commit", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    sbom = build_sbom(args)
    args.out.write_text(json.dumps(sbom, indent=1, sort_keys=True) + "\n")
    print(f"sbom: {len(sbom['components'])} components -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
