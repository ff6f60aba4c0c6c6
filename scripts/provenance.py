#!/usr/bin/env python3
"""Writes the bundle's provenance: an in-toto Statement v1 with a SLSA
provenance v1 predicate (https://slsa.dev/provenance/v1).

Subjects are every file of the staged bundle (signatures and SHA256SUMS
aside: they are made after it) and the image by its manifest digest.
Resolved dependencies are what went into them: the source commit (the one
stamped into the executable; the packaging's own too when HEAD moved on
since), the Python distributions frozen into the binary, the Debian
toolchain packages (by the digest of their .deb in the archive the machine
installs from) and the host files copied into the image.

No clock, host name or path enters the statement, so the same commit built
by the same toolchain gives the same bytes (the bundle stays reproducible).

    scripts/provenance.py --bundle DIR --image-manifest-digest sha256:... --out FILE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_URI = "git+https://github.com/kms-appliance/kms-appliance"
BUILD_TYPE = "https://github.com/kms-appliance/kms-appliance/blob/main/docs/verify.md#provenance"
DEFAULT_BUILDER = "urn:kms-appliance:builder:make-bundle"
# The Debian packages whose programs write bytes into the artefacts.
TOOLCHAIN = ("python3.11", "libpython3.11", "gcc", "libc6-dev", "binutils", "dpkg", "rpm", "buildah",
             "gpg", "apt-utils", "createrepo-c", "gzip", "tar", "ca-certificates")
# Copied from the host into the image's base layer (packaging/image/build.sh).
HOST_FILES = ("/etc/ssl/certs/ca-certificates.crt",)
NOT_SUBJECTS = ("SHA256SUMS",)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def subjects(bundle: Path, out: Path, image_ref: str, image_digest: str) -> list[dict[str, object]]:
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    found: list[dict[str, object]] = [
        {"name": p.relative_to(bundle).as_posix(), "digest": {"sha256": sha256_file(p)}}
        for p in files
        if p.name not in NOT_SUBJECTS and p.suffix != ".asc" and p.resolve() != out.resolve()]
    found.append({"name": image_ref, "digest": {"sha256": image_digest.removeprefix("sha256:")},
                  "annotations": {"kind": "OCI image manifest"}})
    return found


def binary_commit(bundle: Path) -> str:
    """The commit the executable was built from, as its SBOM records it (the stamp, maybe ``-dirty``)."""
    sbom = json.loads((bundle / "kms-appliance.cdx.json").read_text())
    props = sbom["metadata"]["component"].get("properties", [])
    return next((p["value"] for p in props if p["name"] == "git:commit"), "unknown")


def source_dependency(name: str, commit: str) -> dict[str, object]:
    """A commit, and the digest of its tree as `git archive` writes it."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                             capture_output=True, check=True).stdout
    return {"uri": f"{SOURCE_URI}@{commit}", "name": name,
            "digest": {"gitCommit": commit, "sha256": hashlib.sha256(archive).hexdigest()},
            "annotations": {"digest.sha256": f"git archive --format=tar {commit}"}}


def source_dependencies(bundle: Path) -> list[dict[str, object]]:
    """The executable's commit; the packaging's too when the tree moved on in between."""
    head = git("rev-parse", "HEAD")
    stamp = binary_commit(bundle).removesuffix("-dirty")
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
                            f"{stamp}^{{commit}}"], capture_output=True, text=True, check=False)
    built = found.stdout.strip() or head
    deps = [source_dependency("source", built)]
    if built != head:
        deps.append(source_dependency("packaging-source", head))
    return deps


RECORD_DIGEST = ("sha256 of the sorted RECORD lines (path,sha256,size) of the distribution's own files; "
                 "scripts and bytecode left out (they hold the venv's path and the install time)")
INSTALL_BOOKKEEPING = tuple(f".dist-info/{n}" for n in
                            ("INSTALLER", "RECORD", "REQUESTED", "direct_url.json"))


def record_digest(record: Path) -> str:
    """What the wheel installed, independent of where and when it was installed."""
    kept = sorted(line for line in record.read_text().splitlines()
                  if line and not line.startswith("../") and "__pycache__/" not in line
                  and not line.split(",", 1)[0].endswith(INSTALL_BOOKKEEPING))
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


def python_dependencies(venv: Path) -> list[dict[str, object]]:
    """The freeze venv's distributions, by the files their wheels installed."""
    deps = []
    for info in sorted(venv.glob("lib/python3*/site-packages/*.dist-info")):
        meta = dict(line.split(": ", 1) for line in (info / "METADATA").read_text().splitlines()
                    if line.startswith(("Name: ", "Version: ")))
        record = info / "RECORD"
        if not record.is_file():
            continue
        name = meta["Name"].lower().replace("_", "-")
        deps.append({"uri": f"pkg:pypi/{name}@{meta['Version']}", "name": name,
                     "digest": {"sha256": record_digest(record)},
                     "annotations": {"digest.sha256": RECORD_DIGEST}})
    return deps


def debian_dependencies(packages: tuple[str, ...]) -> list[dict[str, object]]:
    """Installed toolchain packages, with the SHA256 of their .deb from the apt lists (one apt-cache call)."""
    installed = {}
    for pkg in packages:
        q = subprocess.run(["dpkg-query", "-W", "-f", "${Version} ${Architecture}", pkg],
                           capture_output=True, text=True, check=False)
        if q.returncode == 0:
            installed[pkg] = q.stdout.split()
    show = subprocess.run(["apt-cache", "show", *(f"{p}={v}" for p, (v, _) in installed.items())],
                          capture_output=True, text=True, check=False).stdout
    sums: dict[tuple[str, str], str] = {}
    for para in show.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in para.splitlines() if ": " in line and line[0] != " ")
        if {"Package", "Version", "SHA256"} <= fields.keys():
            sums.setdefault((fields["Package"], fields["Version"]), fields["SHA256"])
    deps = []
    for pkg, (version, arch) in installed.items():
        dep: dict[str, object] = {"uri": f"pkg:deb/debian/{pkg}@{version}?arch={arch}", "name": pkg}
        if (pkg, version) in sums:
            dep["digest"] = {"sha256": sums[(pkg, version)]}
        else:
            dep["digest"] = {"sha256": installed_files_digest(pkg)}
            dep["annotations"] = {"digest.sha256": INSTALLED_DIGEST}
        deps.append(dep)
    return deps


INSTALLED_DIGEST = ("not in this machine's apt index (superseded): sha256 over the sorted lines "
                    "'<sha256>  <path>' of the regular files dpkg -L lists outside /etc")


def installed_files_digest(pkg: str) -> str:
    """What a package put on this machine, when its .deb's own digest is no longer at hand."""
    listed = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True).stdout
    lines = sorted(f"{sha256_file(Path(p))}  {p}" for p in set(listed.splitlines())
                   if p.startswith("/") and not p.startswith("/etc/") and Path(p).is_file()
                   and not Path(p).is_symlink())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def host_files() -> list[dict[str, object]]:
    return [{"uri": f"file://{p}", "name": p, "digest": {"sha256": sha256_file(Path(p))}}
            for p in HOST_FILES if Path(p).is_file()]


def statement(args: argparse.Namespace) -> dict[str, object]:
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) or \
        binary_commit(args.bundle).endswith("-dirty")
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects(args.bundle, args.out, args.image_ref, args.image_manifest_digest),
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"source": SOURCE_URI, "target": "make bundle",
                                       "version": args.version},
                "internalParameters": {
                    "SOURCE_DATE_EPOCH": int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
                    "worktreeClean": not dirty,
                    "signingKey": os.environ.get("KMS_SIGNING_FPR", ""),
                },
                "resolvedDependencies": [*source_dependencies(args.bundle), *python_dependencies(args.venv),
                                         *debian_dependencies(TOOLCHAIN), *host_files()],
            },
            "runDetails": {
                "builder": {"id": os.environ.get("KMS_BUILDER_ID", DEFAULT_BUILDER),
                            "version": {"debian": Path("/etc/debian_version").read_text().strip()
                                        if Path("/etc/debian_version").exists() else "unknown"}},
                "metadata": {"invocationId": os.environ.get("KMS_BUILD_INVOCATION", "")},
            },
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--image-ref", required=True)
    ap.add_argument("--image-manifest-digest", required=True)
    ap.add_argument("--venv", type=Path,
                    default=Path(os.environ.get("FREEZE_VENV", REPO / "build/.venv-freeze")))
    args = ap.parse_args()
    args.out.write_text(json.dumps(statement(args), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
