"""Keep the reliability and fuzz suites in their own CI stage.

Why: ``make test`` runs ``pytest tests`` (stage pytest-core) and then
``test-reliability`` (mk/reliability.mk). Without this gate the ~10 minutes of
fuzzing, fault matrix and soak would run twice. Items under tests/reliability
and tests/fuzz are kept when they were asked for explicitly (a path inside
these directories on the command line) or when KMS_APPLIANCE_RELIABILITY=1
(set by the make targets); otherwise they are deselected, visibly, with the
command that runs them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWN = (ROOT / "tests" / "reliability", ROOT / "tests" / "fuzz")
ENV = "KMS_APPLIANCE_RELIABILITY"


def _inside(path: Path) -> bool:
    return any(path == d or d in path.parents for d in OWN)


def _asked_for(config: pytest.Config) -> bool:
    if os.environ.get(ENV) == "1":
        return True
    for arg in config.args:
        target = Path(str(arg).split("::", 1)[0]).resolve()
        if _inside(target):
            return True
    return False


def deselect_unless_asked(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop our items from a whole-suite run; report them as deselected."""
    if _asked_for(config):
        return
    ours = [i for i in items if _inside(Path(str(i.path)))]
    if not ours:
        return
    keep = [i for i in items if not _inside(Path(str(i.path)))]
    config.hook.pytest_deselected(items=ours)
    items[:] = keep
