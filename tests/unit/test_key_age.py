"""Process metrics on the app's own registry, and the local KEK version's creation date (the
"key not rotated" alert's source, which must survive a restart; Akeyless's: akeyless/test_keystate.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from kms_appliance.backends import keyring
from kms_appliance.backends.local import LocalBackend
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


def _ring_created(tmp_path: Path, created: str) -> Path:
    """A new keyring whose first key says it was created at ``created``."""
    path = tmp_path / "ring.json"
    keyring.init(path)
    doc = json.loads(path.read_text())
    doc["keys"][0]["created"] = created
    path.write_text(json.dumps(doc))
    return path


class TestLocalDates:
    def test_status_carries_the_current_entry_created(self, tmp_path: Path):
        path = _ring_created(tmp_path, "2020-01-02T03:04:05Z")
        backend = LocalBackend(path)
        assert backend.status().created == 1577934245.0
        keyring.rotate(path)
        backend.refresh()
        created = backend.status().created
        assert created is not None and created > 1577934245.0
        assert backend.status().key_version == "2"

    def test_unparsable_created_is_unknown(self, tmp_path: Path):
        assert LocalBackend(_ring_created(tmp_path, "last tuesday")).status().created is None
