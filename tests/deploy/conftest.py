"""Deployment tests: the artefacts under real node components, as root. Opt-in like the e2e
tests (tests/conftest.py: ``pytest -m deploy``, ``tests/deploy`` named, or ``DEPLOY=1``);
every step's duration is printed at the end of the session.
"""

from __future__ import annotations

import os

import pytest

from tests.support.steps import Steps

# The steps' durations and what a run measured about the deployment (sizes, exit codes).
STEPS = Steps("deploy step durations")
FACTS = STEPS.facts
step = STEPS.step


@pytest.fixture(scope="session", autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the deployment tests run kubelet and containerd: they need root")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    STEPS.report(terminalreporter)
