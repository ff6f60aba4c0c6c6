"""The binary is static and says exactly what it is made of."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.binary

LIBS = ("grpcio", "protobuf", "cryptography", "akeyless")


@pytest.fixture(scope="module")
def info(binary: Path) -> dict[str, Any]:
    """What ``version --json`` says."""
    r = subprocess.run([str(binary), "version", "--json"], capture_output=True, text=True, timeout=60, check=True)
    parsed: dict[str, Any] = json.loads(r.stdout)
    return parsed


def test_ldd_says_not_dynamic_and_no_interpreter_segment(binary: Path) -> None:
    """Belt and braces for ldd: a static ELF has no PT_INTERP (readelf -l lists none)."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    assert "not a dynamic executable" in (r.stdout + r.stderr), r.stdout + r.stderr
    assert r.returncode != 0
    r = subprocess.run(["readelf", "-lW", str(binary)], capture_output=True, text=True, check=True)
    assert "INTERP" not in r.stdout
    assert "DYNAMIC" not in r.stdout


def test_version_json_has_every_field(info: dict[str, Any]) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", info["version"])
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", info["commit"]), info["commit"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["build_date"]), info["build_date"]
    assert re.fullmatch(r"3\.11\.\d+", info["python"])
    for lib in LIBS:
        assert re.fullmatch(r"\d+(\.\d+)+\S*", info["libraries"][lib]), (lib, info["libraries"])


def test_version_matches_git_and_sbom(binary: Path, info: dict[str, Any]) -> None:
    """The stamp, the SBOM and the checksums next to the binary all describe this binary."""
    sbom = json.loads(binary.with_name("kms-appliance.cdx.json").read_text())
    comps = {c["name"].lower(): c for c in sbom["components"]}
    for lib in LIBS:
        assert comps[lib]["version"] == info["libraries"][lib]
        assert comps[lib]["licenses"], lib
    assert comps["cpython"]["version"] == info["python"]
    assert any(n in comps for n in ("libc6", "libc6:amd64")), "libc packed by staticx not in SBOM"
    assert "libpython3.11" in comps or "libpython3.11:amd64" in comps
    sums = dict(reversed(line.split()) for line in binary.with_name("SHA256SUMS").read_text().splitlines())
    digest = subprocess.run(["sha256sum", str(binary)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert sums["kms-appliance"] == digest
    assert sbom["metadata"]["component"]["hashes"][0]["content"] == digest
    assert sbom["metadata"]["component"]["properties"][0]["value"] == info["commit"]
