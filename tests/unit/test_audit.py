"""The audit writer: when a record reaches the file, and that none is lost or torn."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from kms_appliance.audit import AuditLog, CallLines, line


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_interval_zero_writes_before_event_returns(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), flush_interval=0)
    try:
        log.event(event="encrypt", uid="u1")
        assert [r["uid"] for r in _lines(path)] == ["u1"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        log.close()


def test_buffered_record_reaches_the_file_without_any_other_call(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), flush_interval=0.02)
    try:
        log.event(event="encrypt", uid="u1")
        deadline = time.monotonic() + 5
        while not path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r["uid"] for r in _lines(path)] == ["u1"]
        log.event(event="decrypt", uid="u2")  # the flusher re-arms after each flush
        while len(_lines(path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r["uid"] for r in _lines(path)] == ["u1", "u2"]
    finally:
        log.close()


def test_close_writes_everything_buffered_and_stops_the_flusher(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), flush_interval=1.0)
    log.event(event="encrypt", uid="last")
    log.close()
    assert [r["uid"] for r in _lines(path)] == ["last"]
    assert not [t for t in threading.enumerate() if t.name == "audit-flush"]


def test_concurrent_writers_lose_and_tear_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), flush_interval=0.005)

    def burst(n: int) -> None:
        for i in range(500):
            log.event(event="encrypt", uid=f"{n}-{i}", pad="x" * 300)

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    uids = [r["uid"] for r in _lines(path)]  # every line parses: none torn
    assert sorted(uids) == sorted(f"{n}-{i}" for n in range(8) for i in range(500))


def test_reopen_follows_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), flush_interval=0.02)
    try:
        log.event(event="encrypt", uid="before")
        log.flush()
        path.rename(tmp_path / "audit.log.1")
        log.reopen()  # what SIGHUP does; the next flush acts on it
        log.flush()
        log.event(event="encrypt", uid="after")
        log.flush()
        assert [r["uid"] for r in _lines(tmp_path / "audit.log.1")] == ["before"]
        assert [r["uid"] for r in _lines(path)] == ["after"]
    finally:
        log.close()


def test_symlinked_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / "audit.log")
    with pytest.raises(OSError):
        AuditLog(str(tmp_path / "audit.log"))


def test_a_failing_disk_is_reported_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog("/dev/full", flush_interval=0)
    with caplog.at_level(logging.ERROR, logger="kms_appliance.audit"):
        for i in range(3):
            log.event(event="encrypt", uid=str(i))
        log.close()  # shutdown goes on even though the last flush cannot write
    errors = [r for r in caplog.records if "audit log write failed" in r.getMessage()]
    assert len(errors) == 1


@pytest.mark.parametrize(("uid", "key_name", "cached"), [
    ("7c1b2f", "/k8s-etcd-key", None),
    ('quote" back\\ nl\n', "/ring-\u00e9t\u00e9.json", True),  # escaped exactly as the general path does
    ("", "/k", False),
])
def test_cached_call_lines_are_the_general_lines(uid: str, key_name: str, cached: bool | None) -> None:
    lines = CallLines("local", key_name)
    ts, elapsed = 1_764_381_134.9617, 0.000_412_5
    fields: dict[str, object] = {
        "event": "decrypt", "api": "v2", "uid": uid, "backend": "local", "key_name": key_name,
        "key_id": "local/ab/3", "key_version": "3", "outcome": "ok", "code": "OK",
        "duration_ms": round(elapsed * 1000, 3), "ct_fp": "a98bc46085bf5430"}
    if cached is not None:
        fields["cached"] = cached
    for _ in range(2):  # built, then from the cache
        got = lines.ok(ts, elapsed, "v2", "decrypt", uid, "local/ab/3", "3", "a98bc46085bf5430", cached)
        assert got == line(fields, ts)
        assert json.loads(got)["uid"] == uid


def test_call_line_cache_stays_bounded() -> None:
    lines = CallLines("local", "/k")
    for i in range(CallLines.MAX_CACHED + 10):  # a caller can send any key_id to Decrypt
        lines.ok(0.0, 0.0, "v2", "decrypt", "u", f"foreign/{i}", "1", "", None)
    assert len(lines._parts) <= CallLines.MAX_CACHED
