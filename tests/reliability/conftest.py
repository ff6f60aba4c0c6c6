"""The figures summary, and an in-process Akeyless emulator holding the key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from akeyless_emulator import Emulator
from tests.support import figures
from tests.support.emulator import KEY, record_secrets


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures.summary(terminalreporter)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tls=True) as e:
        e.create_key(KEY)
        yield e
        record_secrets(e)
