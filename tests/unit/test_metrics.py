"""Process metrics on the app's own registry (every Metrics carries them, as the app's and the tests' do)."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from kms_appliance.metrics import Metrics

PROCESS = ("process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
           "process_max_fds", "process_cpu_seconds_total", "process_start_time_seconds")


def _samples(m: Metrics) -> dict[str, float]:
    return {s.name: s.value for family in m.registry.collect() for s in family.samples}


class TestProcessMetrics:
    def test_on_each_registry(self):
        """Two Metrics (as tests and the app make them) both carry process_* and python_info."""
        for m in (Metrics(), Metrics()):
            samples = _samples(m)
            for name in PROCESS:
                assert name in samples, name
            assert "python_info" in samples

    def test_values_are_this_process(self):
        samples = _samples(Metrics())
        assert samples["process_resident_memory_bytes"] > 1 << 20
        assert samples["process_open_fds"] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=3)
        start = samples["process_start_time_seconds"]
        assert start <= dt.datetime.now(dt.UTC).timestamp()
