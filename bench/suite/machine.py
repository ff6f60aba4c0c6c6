"""Describe the machine a report was measured on, so figures are read in context."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def _proc_field(path: str, name: str) -> str:
    """The value of the first ``name: value`` line of a /proc file ("" if absent)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return ""


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "absent"


def _go_version() -> str:
    try:
        out = subprocess.run(["go", "version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "absent"
    return out.stdout.strip()


def describe() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(_proc_field("/proc/meminfo", "MemTotal:").split()[0]) / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "cryptography": _version("cryptography"),
        "go": _go_version(),
        "loadavg_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }
