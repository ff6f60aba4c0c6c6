"""Deployment tests: the artefacts under real node components, as root. Opt-in like the e2e
tests (``pytest -m deploy``, ``tests/deploy`` named, or ``DEPLOY=1``; docs/deployment-tests.md);
every step's duration is printed at the end of the session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.steps import Steps, skip_unrequested

HERE = Path(__file__).resolve().parent
# The steps' durations and what a run measured about the deployment (sizes, exit codes).
STEPS = Steps("deploy step durations")
FACTS = STEPS.facts
step = STEPS.step


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deploy: runs an artefact under real node components (root)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_unrequested(config, items, HERE, "deploy", "DEPLOY",
                     "deploy tests not requested: `make test-deploy`, `pytest tests/deploy`")


@pytest.fixture(scope="session", autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the deployment tests run kubelet and containerd: they need root")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    STEPS.report(terminalreporter)
