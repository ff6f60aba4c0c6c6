"""Inspect a built PyInstaller onefile: list what is inside, fail on anything forbidden.

Why on the finished archive and not only in the spec: this reads what really
shipped (the PKG table of contents and the embedded PYZ), so a hook or a
later spec change cannot slip a test-only module past the policy.

Usage: check_bundle.py ONEFILE [--json OUT]   (run with the freeze venv's Python)
Exit 1 and one line per offending module when the policy is violated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from PyInstaller.archive.readers import CArchiveReader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bundle_policy

PYZ_TYPE = "z"
EXTENSION_SUFFIX = ".so"


def contents(onefile: Path) -> dict[str, list[str]]:
    """Modules (PYZ), shared objects and data files in the archive, each sorted."""
    pkg = CArchiveReader(str(onefile))
    modules: list[str] = []
    binaries: list[str] = []
    datas: list[str] = []
    for name, entry in pkg.toc.items():
        typecode = entry[-1]
        if typecode == PYZ_TYPE:
            modules += list(pkg.open_embedded_archive(name).toc)
        elif typecode in ("b", "x", "d"):
            (binaries if EXTENSION_SUFFIX in name and ".dist-info/" not in name else datas).append(name)
    return {"modules": sorted(modules), "binaries": sorted(binaries), "datas": sorted(datas)}


def extension_modules(binaries: list[str]) -> list[str]:
    """``grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so`` -> ``grpc._cython.cygrpc``."""
    mods = []
    for b in binaries:
        if ".cpython-" in b or b.startswith("lib-dynload/"):
            stem = b.removeprefix("lib-dynload/").split(".cpython-")[0].split(".so")[0]
            mods.append(stem.replace("/", "."))
    return sorted(mods)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("onefile", type=Path)
    p.add_argument("--json", type=Path, help="write the listing here")
    args = p.parse_args()
    found = contents(args.onefile)
    names = found["modules"] + extension_modules(found["binaries"])
    data_tops = [d.split("/", 1)[0].split("-")[0] for d in found["datas"] if "/" in d]
    bad = bundle_policy.forbidden(names + data_tops)
    tops = Counter(bundle_policy.toplevel(n) for n in found["modules"]
                   if not n.startswith("_") or n.startswith("_cffi"))
    third_party = sorted(t for t in tops if t not in set(sys.stdlib_module_names))
    print(f"bundle: {len(found['modules'])} modules, {len(found['binaries'])} shared objects, "
          f"{len(found['datas'])} data files")
    print("bundled top-level packages (non-stdlib): " + ", ".join(third_party))
    print("shared objects: " + ", ".join(b for b in found["binaries"] if ".cpython-" not in b))
    if args.json:
        args.json.write_text(json.dumps({**found, "toplevel": sorted(tops)}, indent=1) + "\n")
    if bad:
        for name in bad:
            print(f"FORBIDDEN module bundled: {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
