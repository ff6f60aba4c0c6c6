"""Process metrics on the app's own registry, and the KEK version's creation date as the
backends state it (the "key not rotated" alert's source, which must survive a restart)."""

from __future__ import annotations

import datetime as dt
import json
import os
import types
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from kms_appliance.backends import keyring
from kms_appliance.backends.akeyless import keystate
from kms_appliance.backends.local import LocalBackend
from kms_appliance.metrics import Metrics

PROCESS = ("process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
           "process_max_fds", "process_cpu_seconds_total", "process_start_time_seconds")


def _samples(m: Metrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(m.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class TestProcessMetrics:
    def test_on_each_registry(self):
        """Two Metrics (as tests and the app make them) both carry process_* and python_info."""
        for m in (Metrics(), Metrics()):
            samples = _samples(m)
            for name in PROCESS:
                assert name in samples, name
            assert any(n.startswith("python_info{") for n in samples)

    def test_values_are_this_process(self):
        samples = _samples(Metrics())
        assert samples["process_resident_memory_bytes"] > 1 << 20
        assert samples["process_open_fds"] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=3)
        start = samples["process_start_time_seconds"]
        assert start <= dt.datetime.now(dt.UTC).timestamp()


class TestAkeylessDates:
    @pytest.mark.parametrize(("value", "expected"), [
        (dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC), 1772366400.0),
        (dt.datetime(2026, 3, 1, 12, 0), 1772366400.0),  # naive: Akeyless answers in UTC
        ("2026-03-01T12:00:00Z", 1772366400.0),  # raw JSON from a partial (frozen) bundle
        ("2026-03-01T13:00:00+01:00", 1772366400.0),
        ("yesterday", None), ("", None), (None, None), (1772366400, None),
    ])
    def test_timestamp(self, value, expected):
        assert keystate.timestamp(value) == expected

    @staticmethod
    def _item(**kw):
        versions = [types.SimpleNamespace(version=1, item_version_state="Enabled",
                                          creation_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
                    types.SimpleNamespace(version=2, item_version_state="Enabled",
                                          creation_date="2026-03-01T12:00:00Z")]
        base = {"item_id": 7, "last_version": 2, "item_type": "AES256GCM", "is_enabled": True,
                "item_state": "Enabled", "item_versions": versions, "item_name": "/k",
                "delete_protection": True, "auto_rotate": True, "rotation_interval": 90}
        return types.SimpleNamespace(**{**base, **kw})

    def test_from_item_keeps_dates_and_settings(self):
        st = keystate.from_item(self._item(), "/k")
        assert st.created == {1: 1735689600.0, 2: 1772366400.0}
        assert (st.delete_protection, st.auto_rotate, st.rotation_interval) == (True, True, 90)

    def test_missing_fields_are_unknown_not_false(self):
        st = keystate.from_item(self._item(delete_protection=None, auto_rotate="yes",
                                           rotation_interval=True, item_versions=None), "/k")
        assert st.created == {}
        assert (st.delete_protection, st.auto_rotate, st.rotation_interval) == (None, None, None)


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
