"""The peer gate's own process (server.allowed_uids), on the real plugin: it serves, it is
supervised, it leaves the stop to its parent, and it never outlives the plugin."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import plugin as pm
from tests.support import procinfo
from tests.support.kmsclient import Client, round_trip
from tests.support.procs import alive, eventually, only_child


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[pm.Plugin]:
    with pm.running(tmp_path / "g", ["--allowed-uids", f"{os.geteuid()},4242"]) as p:
        yield p


def _gone(pid: int, within: float) -> bool:
    return eventually(lambda: not alive(pid), within, 0.02)


def test_the_gate_serves_ignores_stop_signals_is_replaced_and_stops_with_the_plugin(gated: pm.Plugin) -> None:
    """The gate accepts in its own process (the serving process holds no relay). A service manager
    signals the whole group: the gate must keep relaying while the plugin drains, so it ignores
    stop signals. Killed, it is replaced and the door reopens; the plugin's stop then ends it, an
    idle raw connection not holding it up, and removes the (0600) socket."""
    gate = only_child(gated.proc.pid)
    with Client(gated.socket) as kept:
        assert kept.status().healthz == "ok"
        names = procinfo.thread_names(gate)
        plugin_fds = procinfo.fd_targets(gated.proc.pid)
    assert names, "the gate's process runs threads"
    assert str(gated.socket) not in plugin_fds
    _, metrics = gated.http("/metrics")
    assert b"kms_appliance_connections " in metrics

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(gate, sig)
    time.sleep(0.3)
    assert only_child(gated.proc.pid) == gate
    round_trip(gated.socket)

    os.kill(gate, signal.SIGKILL)
    assert _gone(gate, 5)
    second = only_child(gated.proc.pid)
    assert second != gate
    round_trip(gated.socket)
    status, body = gated.http("/livez")
    assert status == 200, body
    assert f"peer gate process {gate} ended (killed by signal 9)" in gated.stderr.read_text()
    _, metrics = gated.http("/metrics")
    assert b'kms_appliance_thread_restarts_total{thread="peer-gate"} 1.0' in metrics
    assert stat.S_IMODE(gated.socket.lstat().st_mode) == 0o600
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(gated.socket))  # an idle raw connection must not block shutdown
    assert gated.stop() == 0
    assert _gone(second, 5)
    assert not gated.socket.exists()


def test_kill_9_of_the_plugin_takes_the_gate_with_it(gated: pm.Plugin) -> None:
    gate = only_child(gated.proc.pid)
    gated.proc.kill()
    gated.proc.wait(10)
    assert _gone(gate, 1.0), "the gate must not keep the socket after its plugin died"
