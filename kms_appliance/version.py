"""Build stamp: version, commit and date, filled in at freeze time.

``_build_stamp.py`` is written by the binary build (build/pyinstaller.spec);
from a source checkout the stamp falls back to git and the package metadata.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

__version__ = "0.1.0"

_LIBS = ("grpcio", "protobuf", "cryptography", "akeyless", "prometheus-client", "python-json-logger",
         "waitress")


def _stamp() -> dict[str, str]:
    try:
        from . import _build_stamp  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        return {"commit": _git_commit(), "build_date": ""}
    return dict(_build_stamp.STAMP)


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=2, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that matter to an auditor, as installed."""
    found = {}
    for name in _LIBS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def info() -> dict[str, str]:
    """Short stamp used in metrics and logs (cheap: no library scan)."""
    stamp = _stamp()
    return {"version": __version__, "commit": stamp["commit"], "build_date": stamp["build_date"]}


def full_info() -> dict[str, object]:
    """Everything `version --json` prints."""
    return {**info(), "python": platform.python_version(), "libraries": library_versions()}
