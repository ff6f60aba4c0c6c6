"""Keep the reliability and fuzz suites in their own CI stage.

Why: ``make test`` runs ``pytest tests`` (stage pytest-core) and later ``test-fuzz`` and
``test-reliability`` (mk/reliability.mk); without this gate the ~8 minutes of fuzzing, fault
matrix and soak would run twice. Their items are kept when a path inside these directories is
on the command line or KMS_APPLIANCE_RELIABILITY=1 (set by the make targets); otherwise they
are deselected, visibly.
"""

from __future__ import annotations

import os

import pytest

from tests.support.procs import REPO
from tests.support.steps import named

OWN = (REPO / "tests" / "reliability", REPO / "tests" / "fuzz")
ENV = "KMS_APPLIANCE_RELIABILITY"


def deselect_unless_asked(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop our items from a whole-suite run; report them as deselected."""
    if os.environ.get(ENV) == "1" or named(config, *OWN):
        return
    ours = [i for i in items if any(i.path.is_relative_to(d) for d in OWN)]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [i for i in items if i not in ours]
