"""The audit writer: when a record reaches the file, and that none is lost or torn."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from contextlib import closing
from pathlib import Path

import pytest

from kms_appliance import config, preflight
from kms_appliance.audit import BUFFER_BYTES, AuditLog, CallLines, CallRecord, Site, line
from kms_appliance.audit import check as audit_check
from kms_appliance.audit import open_file as audit_open
from kms_appliance.errors import SetupError
from kms_appliance.metrics import Metrics
from kms_appliance.threads import Supervisor
from tests.support.procs import eventually
from tests.unit.helpers import sample


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_interval_zero_writes_before_event_returns(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with closing(AuditLog(str(path), flush_interval=0)) as log:
        log.event(event="encrypt", uid="u1")
        assert [r["uid"] for r in _lines(path)] == ["u1"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_buffered_record_reaches_the_file_without_any_other_call(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with closing(AuditLog(str(path), flush_interval=0.02)) as log:
        log.event(event="encrypt", uid="u1")
        assert eventually(lambda: [r["uid"] for r in _lines(path)] == ["u1"], 5)
        log.event(event="decrypt", uid="u2")  # the flusher re-arms after each flush
        assert eventually(lambda: [r["uid"] for r in _lines(path)] == ["u1", "u2"], 5)


def test_close_writes_everything_buffered_and_stops_the_flusher(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), flush_interval=1.0)
    log.event(event="encrypt", uid="last")
    log.close()
    assert [r["uid"] for r in _lines(path)] == ["last"]
    assert not [t for t in threading.enumerate() if t.name == "audit-flush"]


def test_a_burst_beyond_the_buffer_reaches_the_file_as_whole_lines_only(tmp_path: Path) -> None:
    """What a burst spills before the flush ends at a record's end: a kill -9 may come next (the
    crash test forgives the one line a kill cuts, so a writer spilling mid-record fails only here)."""
    path = tmp_path / "audit.log"
    with closing(AuditLog(str(path), flush_interval=1.0)) as log:
        spilled = b""
        for i in range(3 * BUFFER_BYTES // 100):
            log.event(event="encrypt", uid=f"u{i}", pad="x" * (i % 97))
            spilled = path.read_bytes()
            assert not spilled or spilled.endswith(b"\n"), f"torn after record {i}"
        assert len(spilled) >= BUFFER_BYTES, "the buffer is not bounded: a burst waits whole"
    assert [r["uid"] for r in _lines(path)] == [f"u{i}" for i in range(3 * BUFFER_BYTES // 100)]


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


def test_symlinked_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / "audit.log")
    with pytest.raises(SetupError, match="symlink"):
        AuditLog(str(tmp_path / "audit.log"))


def test_a_failing_disk_is_reported_once_and_never_raises(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    log = AuditLog(str(tmp_path / "audit.log"), flush_interval=0, metrics=metrics)
    log._out = open("/dev/full", "a", encoding="utf-8")  # noqa: SIM115 - ENOSPC on every write
    with caplog.at_level(logging.ERROR, logger="kms_appliance.audit"):
        for i in range(3):
            log.event(event="encrypt", uid=str(i))
        log.close()  # shutdown goes on even though the last flush cannot write
    errors = [r for r in caplog.records if "audit log" in r.getMessage()]
    assert len(errors) == 1
    assert sample(metrics, "kms_appliance_audit_records_dropped_total") == 3


# ---- a broken trail is counted, reported, retried --------------------------------------------


def test_write_failure_drops_counts_and_reopens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuditLog, "RETRY_EVERY", 0.05)
    path = tmp_path / "audit.log"
    metrics = Metrics()
    with closing(AuditLog(str(path), flush_interval=0, metrics=metrics)) as log:
        log._out = open("/dev/full", "a", encoding="utf-8")  # noqa: SIM115 - the disk fills up
        log.event(event="encrypt", uid="lost")
        assert log.lost and "No space left" in (log.problem() or "")
        log.event(event="encrypt", uid="lost-too")
        assert sample(metrics, "kms_appliance_audit_records_dropped_total") == 2
        assert sample(metrics, "kms_appliance_audit_write_failures_total") == 1
        assert eventually(lambda: (log.flush(), log.problem() is None)[1])  # the maintenance tick
        log.event(event="encrypt", uid="kept")
        assert [r["uid"] for r in _lines(path)] == ["kept"] and not log.lost


def test_a_torn_last_line_is_ended_before_the_next_record(tmp_path: Path) -> None:
    """A disk that filled up (or a kill -9) mid-record must not cost the next record too."""
    path = tmp_path / "audit.log"
    path.write_text('{"uid":"whole"}\n{"uid":"to')
    path.chmod(0o600)
    with closing(AuditLog(str(path), flush_interval=0)) as log:
        log.event(event="encrypt", uid="next")
    lines = path.read_text().splitlines()
    assert lines[1] == '{"uid":"to' and json.loads(lines[2])["uid"] == "next"


def test_sighup_retries_a_refused_reopen_every_time(tmp_path: Path) -> None:
    """A FIFO (or anything not a regular file) planted after rotation is refused, never opened."""
    path = tmp_path / "audit.log"
    with closing(AuditLog(str(path), flush_interval=0)) as log:
        log.event(event="encrypt", uid="1")
        path.rename(tmp_path / "audit.log.1")
        os.mkfifo(path, 0o600)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # even with a reader: still refused
        try:
            for _ in range(2):
                log.reopen()
                log.flush()
                assert "FIFO" in (log.problem() or "")
        finally:
            os.close(reader)
        path.unlink()
        log.reopen()
        log.flush()
        assert log.problem() is None
        log.event(event="encrypt", uid="2")
        assert [r["uid"] for r in _lines(path)] == ["2"]


@pytest.mark.root
def test_logrotate_create_with_the_wrong_owner_is_refused_then_picked_up(tmp_path: Path) -> None:
    """`create 0600 nobody nobody`: refused on SIGHUP (records stay in the rotated file), then fixed."""
    owner = 65534
    path = tmp_path / "audit.log"
    with closing(AuditLog(str(path), flush_interval=0)) as log:
        path.rename(tmp_path / "audit.log.1")
        path.touch(mode=0o600)
        os.chown(path, owner, owner)
        log.reopen()
        log.flush()
        assert f"owned by uid {owner}" in (log.problem() or "")
        log.event(event="encrypt", uid="kept")
        assert [r["uid"] for r in _lines(tmp_path / "audit.log.1")] == ["kept"]
        os.chown(path, os.geteuid(), os.getegid())
        log.reopen()
        log.flush()
        assert log.problem() is None
        log.event(event="encrypt", uid="new")
        assert [r["uid"] for r in _lines(path)] == ["new"]


@pytest.mark.root
def test_a_directory_the_user_cannot_enter_is_one_typed_refusal_for_serve_and_check(tmp_path: Path) -> None:
    """As the plugin's (unprivileged) user: `serve` and `check` say the same, never a bare OSError."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)  # root's, like pytest's base directory above it
    target = closed / "audit.log"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops to nobody and reports each outcome on the pipe
        try:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            outcomes = []
            for attempt in (lambda: audit_open(target), lambda: audit_check(str(target))):
                try:
                    attempt()
                    outcomes.append("no error")
                except Exception as exc:  # the type is what the test reports
                    outcomes.append(f"{type(exc).__name__}: {exc}")
            os.write(write, json.dumps(outcomes).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcomes = json.loads(pipe.read())
    os.waitpid(pid, 0)
    want = f"SetupError: observability.audit_log: cannot open directory '{closed}': Permission denied"
    assert outcomes == [want, want]


def test_flusher_runs_under_the_supervisor(tmp_path: Path) -> None:
    threads = Supervisor()
    log = AuditLog(str(tmp_path / "audit.log"), flush_interval=0.02, threads=threads)
    try:
        assert threads.alive("audit-flush")
    finally:
        threads.stopping.set()
        log.close()


# ---- the path, at start ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o773])
def test_directory_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d").chmod(mode)
    with pytest.raises(SetupError, match="writable by other users"):
        AuditLog(str(tmp_path / "d" / "audit.log"))


def test_foreign_or_shared_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("")
    path.chmod(0o622)
    with pytest.raises(SetupError, match="writable by other users"):
        AuditLog(str(path))
    if os.geteuid() == 0:
        path.chmod(0o600)
        os.chown(path, 65534, 65534)
        with pytest.raises(SetupError, match="owned by uid 65534"):
            AuditLog(str(path))


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
        rec = CallRecord(ts, elapsed, Site("v2", "decrypt"), uid, "local/ab/3", "3", b"ct", cached)
        got = lines.ok(rec, "a98bc46085bf5430")
        assert got == line(fields, ts)
        assert json.loads(got)["uid"] == uid


def test_call_line_cache_stays_bounded() -> None:
    lines = CallLines("local", "/k")
    for i in range(CallLines.MAX_CACHED + 10):  # a caller can send any key_id to Decrypt
        lines.ok(CallRecord(0.0, 0.0, Site("v2", "decrypt"), "u", f"foreign/{i}", "1", b""), "")
    assert len(lines._parts) <= CallLines.MAX_CACHED


def test_preflight_reports_an_unsafe_audit_path_without_creating_anything(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(SetupError, match="FIFO"):
        audit_check(str(tmp_path / "fifo"))
    assert "does not exist yet" in audit_check(str(tmp_path / "audit.log"))
    assert not (tmp_path / "audit.log").exists()
    cfg = config.load(flags={"observability.audit_log": str(tmp_path / "fifo"),
                             "server.backend": "local", "local.keyring": str(tmp_path / "k.json")},
                      env={}, config_file=None)
    result = {r.name: r for r in preflight.checks(cfg)}["audit_log"]
    assert result.status == "fail" and "FIFO" in result.detail
