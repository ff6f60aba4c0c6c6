"""The audit trail under a careless operator and a hostile neighbour: a lost trail is visible
(counted, /readyz failing with the reason) and retried until it works, and what sits at the path
at start is refused at once, never opened or waited on."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.reliability.probes import metric, one_line, serve_args
from tests.support import plugin as pm
from tests.support.kmsclient import Client
from tests.support.plugin import operator_cli as cli
from tests.support.procs import eventually

DEADLINE = 10.0  # retries run every 2 s and the maintenance tick every 0.5 s
_until = functools.partial(eventually, timeout=DEADLINE, interval=0.05)


def _ready(p: pm.Plugin) -> tuple[int, str]:
    status, body = p.http("/readyz")
    return status, str(json.loads(body)["reason"])


def _uids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line).get("uid", "") for line in path.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def _started(workdir: Path, *args: str) -> Iterator[tuple[pm.Plugin, Client, Path]]:
    """A plugin whose audit log lives in its own directory, logs/ (0700), once ready."""
    logs = workdir / "logs"
    logs.mkdir(mode=0o700, parents=True)
    workdir.chmod(0o700)
    with pm.running(workdir, ["--audit-log", str(logs / "audit.log"), *args]) as p, Client(p.socket) as client:
        p.audit = logs / "audit.log"
        assert _until(lambda: _ready(p)[0] == 200), _ready(p)
        yield p, client, logs


def test_failed_reopen_degrades_readiness_and_is_retried_until_it_works(tmp_path: Path) -> None:
    """The directory moved away, then (once fixed) a FIFO planted at the path after logrotate
    removed the file: each degrades readiness until a retry finds a usable path again."""
    with _started(tmp_path / "p") as (p, client, logs):
        client.encrypt(b"k" * 32, uid="before")
        # logrotate moved the directory away (or it was never re-created after a clean-up)
        logs.rename(tmp_path / "p" / "logs.old")
        p.proc.send_signal(signal.SIGHUP)
        assert _until(lambda: _ready(p)[0] == 503), _ready(p)
        assert _ready(p)[1].startswith("audit: ") and "does not exist" in _ready(p)[1]
        assert metric(p, "kms_appliance_audit_write_failures_total", "") >= 1
        client.encrypt(b"k" * 32, uid="while-broken")  # default: calls go on, into the moved file
        # A second SIGHUP while still broken is retried too (a69ccd0 gave up after the first).
        p.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert _ready(p)[0] == 503
        logs.mkdir(mode=0o700)  # fixed; no SIGHUP: the periodic retry must pick it up
        assert _until(lambda: _ready(p)[0] == 200), _ready(p)
        client.encrypt(b"k" * 32, uid="after")
        assert _until(lambda: "after" in _uids(logs / "audit.log"))
        moved = [u for u in _uids(tmp_path / "p" / "logs.old" / "audit.log") if u]
        assert moved == ["before", "while-broken"], "no record may be lost or misplaced meanwhile"
        assert [u for u in _uids(logs / "audit.log") if u] == ["after"]
        assert metric(p, "kms_appliance_audit_records_dropped_total", "") == 0
        # logrotate removed the old file; a FIFO now sits at the path: never opened, drops counted
        path = logs / "audit.log"
        path.unlink()  # rotated and deleted: the open descriptor is the only one left
        os.mkfifo(path, 0o600)
        p.proc.send_signal(signal.SIGHUP)
        assert _until(lambda: "FIFO" in _ready(p)[1]), _ready(p)
        assert _ready(p)[0] == 503
        for i in range(3):
            client.encrypt(b"k" * 32, uid=f"dropped-{i}")  # not blocked by the FIFO
        assert _until(lambda: metric(p, "kms_appliance_audit_records_dropped_total", "") >= 3)
        path.unlink()
        p.proc.send_signal(signal.SIGHUP)
        assert _until(lambda: _ready(p)[0] == 200), _ready(p)
        client.encrypt(b"k" * 32, uid="after-fifo")
        assert _until(lambda: "after-fifo" in _uids(path))


def test_audit_required_refuses_calls_while_the_trail_is_lost(tmp_path: Path) -> None:
    conf = tmp_path / "required.toml"
    conf.write_text("[observability]\naudit_required = true\n")
    with _started(tmp_path / "p", "--config", str(conf)) as (p, client, logs):
        client.encrypt(b"k" * 32, uid="before")
        (logs / "audit.log").unlink()
        logs.rmdir()
        p.proc.send_signal(signal.SIGHUP)
        assert _until(lambda: _ready(p)[0] == 503), _ready(p)
        with pytest.raises(grpc.RpcError) as err:
            client.encrypt(b"k" * 32, uid="refused")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "audit" in (err.value.details() or "")
        assert client.status().healthz != "ok"
        logs.mkdir(mode=0o700)
        assert _until(lambda: _ready(p)[0] == 200), _ready(p)
        assert client.encrypt(b"k" * 32, uid="after").ciphertext
        assert client.status().healthz == "ok"


# ---- start-up: one line, the setting named, exit 2 (mistake) or 1 (refusal), no hang -----------


@pytest.fixture
def serve(tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    keyring = tmp_path / "keyring.json"
    pm.keyring_init(keyring)

    def run(audit: str) -> subprocess.CompletedProcess[str]:
        return cli(*serve_args(keyring, tmp_path / "run" / "kms.sock", "--audit-log", audit), timeout=30)

    return run


def test_fifo_at_the_audit_path_is_refused_promptly(
        serve: Callable[[str], subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "audit.log", 0o600)
    try:
        proc = serve(str(tmp_path / "audit.log"))
    except subprocess.TimeoutExpired:
        pytest.fail("start-up hung on the FIFO")
    assert "FIFO" in one_line(proc, 1, "observability.audit_log")


def test_symlinked_directory_component_is_refused(
        serve: Callable[[str], subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    (tmp_path / "attacker").mkdir(mode=0o700)
    (tmp_path / "logs").symlink_to(tmp_path / "attacker")
    line = one_line(serve(str(tmp_path / "logs" / "audit.log")), 1, "observability.audit_log")
    assert "symlink" in line
    assert list((tmp_path / "attacker").iterdir()) == []


@pytest.mark.parametrize(("audit", "code", "says"), [
    ("", 2, "must be a file path"),
    ("{tmp}/missing/audit.log", 2, "does not exist"),
    ("{tmp}", 2, "is a directory"),
    ("{tmp}/" + "a" * 300, 2, "component of 300 bytes"),
    ("{tmp}/" + "d/" * 2100 + "audit.log", 2, "at most 4095"),
])
def test_audit_path_mistakes_are_one_line(serve: Callable[[str], subprocess.CompletedProcess[str]],
                                          tmp_path: Path, audit: str, code: int, says: str) -> None:
    line = one_line(serve(audit.format(tmp=tmp_path)), code, "observability.audit_log")
    assert says in line


@pytest.mark.parametrize(("path", "code", "says"), [
    ("/proc/kms-appliance-keyring.json", 1, "cannot write keyring"),
    ("{tmp}/" + "k" * 300 + ".json", 2, "component of 305 bytes"),
    ("{tmp}/" + "d/" * 2100 + "k.json", 2, "at most 4095"),
])
def test_keyring_init_mistakes_are_one_line(tmp_path: Path, path: str, code: int, says: str) -> None:
    line = one_line(cli("keyring", "init", path.format(tmp=tmp_path)), code, "keyring")
    assert says in line


def test_serve_with_a_too_long_keyring_path_is_one_line(tmp_path: Path) -> None:
    proc = cli(*serve_args(tmp_path / ("k" * 300), tmp_path / "run" / "kms.sock"))
    assert "component of 300 bytes" in one_line(proc, 2, "local.keyring")
