"""The served plugin: process metrics on /metrics, and the KEK version's age from the
keyring's own date, unchanged by a restart and moved by a rotation (SIGHUP)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.support import plugin
from tests.support.procs import eventually

OLD = "2020-01-02T03:04:05Z"
OLD_TS = 1577934245.0
CREATED = "kms_appliance_key_version_created_timestamp_seconds"


def _metrics(p: plugin.Plugin) -> dict[str, float]:
    status, body = p.http("/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _old_keyring(path: Path) -> None:
    plugin.keyring_init(path)
    doc = json.loads(path.read_text())
    doc["keys"][0]["created"] = OLD
    path.write_text(json.dumps(doc))


def test_key_age_survives_restart_and_follows_rotation(tmp_path: Path) -> None:
    ring = tmp_path / "w" / "keyring.json"
    ring.parent.mkdir(mode=0o700)
    _old_keyring(ring)
    with plugin.running(tmp_path / "w", keyring=ring) as p:
        first = _metrics(p)
        assert first[f'{CREATED}{{backend="local"}}'] == OLD_TS
        for name in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"):
            assert first[name] > 0, name
        assert first["process_start_time_seconds"] > OLD_TS
    assert p.proc.poll() is not None  # the old process is gone before the restart
    with plugin.running(tmp_path / "w", keyring=ring) as p:
        again = _metrics(p)
        assert again[f'{CREATED}{{backend="local"}}'] == OLD_TS  # a restart does not reset the age
        assert again["process_start_time_seconds"] >= first["process_start_time_seconds"]
        p.rotate_key()
        p.proc.send_signal(signal.SIGHUP)
        assert eventually(lambda: _metrics(p)['kms_appliance_key_version{backend="local"}'] == 2, 10, 0.05)
        assert _metrics(p)[f'{CREATED}{{backend="local"}}'] > time.time() - 600
