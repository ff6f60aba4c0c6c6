"""Small helpers several unit modules share (the other suites have theirs in tests/support)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from kms_appliance.metrics import Metrics
from tests.support.procs import REPO


class Clock:
    """A time source for code that takes ``clock=``: it stands still until the test moves ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """A metric's value on ``metrics``' own registry; a series never touched counts as 0."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


def script(path: str) -> ModuleType:
    """A script of the repository (not a package module) imported from its file."""
    spec = importlib.util.spec_from_file_location(path.rpartition("/")[2].removesuffix(".py"), REPO / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fifo_error(fifo: Path, read: Callable[[], object], timeout: float = 10) -> BaseException | None:
    """What ``read()`` raised, given a FIFO made at ``fifo``: a reader still waiting for a writer
    after ``timeout`` is released (so its thread ends) and the test fails on the TimeoutError."""
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(read)
        try:
            return loading.exception(timeout=timeout)
        finally:
            if not loading.done():
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
