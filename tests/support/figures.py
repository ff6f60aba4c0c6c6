"""Figures the reliability suites measure, printed at the end of the run.

Why: the suite is judged by numbers (faults covered, fuzz inputs, attacks refused,
secrets found, soak calls, RSS growth); tests record them here and the
terminal summary prints them, and writes them as JSON when
KMS_APPLIANCE_FIGURES names a file.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

_lock = threading.Lock()
FIGURES: dict[str, Any] = {}


def put(section: str, key: str, value: Any) -> None:
    with _lock:
        FIGURES.setdefault(section, {})[key] = value


def summary(terminalreporter: Any) -> None:
    with _lock:
        if FIGURES:
            terminalreporter.section("reliability figures")
        for section, values in sorted(FIGURES.items()):
            terminalreporter.write_line(f"[{section}]")
            for key, value in sorted(values.items()):
                terminalreporter.write_line(f"  {key}: {value}")
        if target := os.environ.get("KMS_APPLIANCE_FIGURES"):
            with open(target, "w", encoding="utf-8") as fh:
                json.dump(FIGURES, fh, indent=2, sort_keys=True, default=str)
