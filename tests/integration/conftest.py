"""Fixtures: a real plugin process on a real socket with a fresh keyring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import plugin as plugin_mod
from tests.support.kmsclient import Client


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[plugin_mod.Plugin]:
    with plugin_mod.running(tmp_path / "p") as p:
        yield p


@pytest.fixture
def client(plugin: plugin_mod.Plugin) -> Iterator[Client]:
    with Client(plugin.socket) as c:
        yield c
