"""Where the real component binaries are, and building them when missing.

Why a module: the pinned versions live in ``versions.env`` (shared with
``build_components.sh``), and every fixture needs the same answer to "which
kube-apiserver/etcd/kubectl do we run". ``E2E_BIN_DIR`` points the harness at
binaries an operator already has (e.g. a release candidate's own build).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HERE = REPO / "tests" / "e2e"  # build_components.sh and versions.env live with the e2e suite
BUILD_SCRIPT = HERE / "build_components.sh"
NAMES = ("kube-apiserver", "kubectl", "etcd", "etcdctl")
BUILD_TIMEOUT_S = 3600


class ComponentsMissingError(RuntimeError):
    """A component binary is absent and building it was not allowed or failed."""


def pinned_versions() -> dict[str, str]:
    """KEY=VALUE pairs of ``versions.env`` (comments and blanks ignored)."""
    out: dict[str, str] = {}
    for raw in (HERE / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Components:
    """Absolute paths of the four binaries, plus how long providing them took."""

    bin_dir: Path
    kubernetes_version: str
    etcd_version: str
    build_seconds: float

    def path(self, name: str) -> Path:
        return self.bin_dir / name


def default_bin_dir() -> Path:
    if os.environ.get("E2E_BIN_DIR"):
        return Path(os.environ["E2E_BIN_DIR"]).resolve()
    cache = Path(os.environ.get("E2E_CACHE_DIR") or REPO / ".cache" / "e2e")
    return cache / pinned_versions()["KUBERNETES_VERSION"] / "bin"


def missing(bin_dir: Path, names: Sequence[str] = NAMES) -> list[str]:
    """Those of ``names`` that are not an executable in ``bin_dir``."""
    return [n for n in names if not os.access(bin_dir / n, os.X_OK)]


def ensure_components(allow_build: bool, names: Sequence[str] = NAMES) -> Components:
    """The binaries ``names`` (default: the cluster's; the deploy suite asks for the node's too),
    running the (idempotent) ``build_components.sh`` if any is missing; with ``E2E_BIN_DIR`` set
    nothing is built: those binaries are the operator's, not ours."""
    versions = pinned_versions()
    bin_dir = default_bin_dir()
    started = time.monotonic()
    absent = missing(bin_dir, names)
    if absent and (os.environ.get("E2E_BIN_DIR") or not allow_build):
        raise ComponentsMissingError(f"missing {', '.join(absent)} in {bin_dir}; run {BUILD_SCRIPT} "
                                     "(or `make e2e-components`, `make deploy-components`)")
    if absent:
        result = subprocess.run([str(BUILD_SCRIPT)], timeout=BUILD_TIMEOUT_S, check=False, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "E2E_COMPONENTS": " ".join(names)})
        if result.returncode != 0 or missing(bin_dir, names):
            raise ComponentsMissingError(f"{BUILD_SCRIPT} failed ({result.returncode}):\n{result.stdout[-4000:]}")
    if os.environ.get("E2E_BIN_DIR"):  # the operator's binaries: report what they say
        k8s = _reported_version(bin_dir / "kube-apiserver").removeprefix("Kubernetes ")
        etcd = _reported_version(bin_dir / "etcd").removeprefix("etcd Version: ")
    else:
        k8s, etcd = versions["KUBERNETES_VERSION"], versions["ETCD_VERSION"]
    return Components(bin_dir, k8s, etcd, time.monotonic() - started)


def _reported_version(binary: Path) -> str:
    """First line of ``<binary> --version``."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    return (out.stdout.strip().splitlines() or ["unknown"])[0]
