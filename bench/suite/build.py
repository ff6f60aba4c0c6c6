"""Build the Go load generator and reference plugin into bench/.work/bin.

Nothing built is committed: ``bench/.work/`` is git-ignored, and the Go
modules' go.sum pins what the module proxy hands over.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
WORK = BENCH / ".work"
BIN = WORK / "bin"


def go_build(name: str) -> Path:
    """``go build`` bench/<name> into bench/.work/bin/<name> (cached by Go)."""
    BIN.mkdir(parents=True, exist_ok=True)
    out = BIN / name
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    subprocess.run(["go", "build", "-trimpath", "-o", str(out), "."], cwd=BENCH / name,
                   env=env, check=True, timeout=600)
    return out


def build_all() -> dict[str, Path]:
    return {name: go_build(name) for name in ("loadgen", "goref")}
