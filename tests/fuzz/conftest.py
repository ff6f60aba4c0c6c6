"""Stage gating (see tests/support/stage.py)."""

from __future__ import annotations

import pytest

from tests.support import figures, stage


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stage.deselect_unless_asked(config, items)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures.summary(terminalreporter)
