"""Deployment tests: the artefacts run the way an operator deploys them, under
real node components (kubelet + containerd built from their Go modules).

Opt-in like the e2e tests (they build Go components and run a node as root):
they run under ``pytest -m deploy``, when ``tests/deploy`` is named on the
command line, or with ``DEPLOY=1``; ``make test-deploy`` does the lot.
Every step's duration is printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STEPS: list[tuple[str, float]] = []
# What a run measured about the deployment (sizes, exit codes), printed after the steps.
FACTS: list[str] = []


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time a step; the durations are printed at the end of the session."""
    start = time.monotonic()
    try:
        yield
    finally:
        STEPS.append((name, time.monotonic() - start))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deploy: runs an artefact under real node components (root)")


def _requested(config: pytest.Config) -> bool:
    if os.environ.get("DEPLOY") == "1":
        return True
    markexpr = str(config.getoption("markexpr", "") or "")
    if "deploy" in markexpr and "not deploy" not in markexpr:
        return True
    return any(
        (p := Path(str(arg).split("::", 1)[0]).resolve()) == HERE or HERE in p.parents for arg in config.args
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _requested(config):
        return
    skip = pytest.mark.skip(reason="deploy tests not requested: `make test-deploy`, `pytest tests/deploy`")
    for item in items:
        if "deploy" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the deployment tests run kubelet and containerd: they need root")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STEPS:
        return
    terminalreporter.section("deploy step durations")
    for name, seconds in STEPS:
        terminalreporter.write_line(f"{seconds:7.1f}s  {name}")
    terminalreporter.write_line(f"{sum(s for _, s in STEPS):7.1f}s  total of timed steps")
    for fact in FACTS:
        terminalreporter.write_line(f"measured: {fact}")
