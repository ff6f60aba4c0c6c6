"""The servicers every handler campaign runs on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz import props


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[props.World]:
    w = props.make_world(tmp_path_factory.mktemp("fuzz-world"))
    yield w
    w.close()
