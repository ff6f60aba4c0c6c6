"""Describe the machine a report was measured on, so figures are read in context."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "absent"


def _go_version() -> str:
    try:
        out = subprocess.run(["go", "version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except OSError:
        return "absent"
    return out.stdout.strip()


def describe() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "cryptography": _version("cryptography"),
        "go": _go_version(),
        "loadavg_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }
