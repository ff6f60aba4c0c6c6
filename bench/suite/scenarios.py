"""Scenarios beyond the load matrix (filled in below)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_all(p: Any, bins: dict[str, Path]) -> dict[str, Any]:
    return {}
