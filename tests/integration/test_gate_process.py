"""The peer gate's own process (server.allowed_uids), on the real plugin: it serves, it is
supervised, it leaves the stop to its parent, and it never outlives the plugin."""

from __future__ import annotations

import os
import signal
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
    with pm.running(tmp_path / "g", ["--allowed-uids", str(os.geteuid())]) as p:
        yield p


def _gone(pid: int, within: float) -> bool:
    return eventually(lambda: not alive(pid), within, 0.02)


def test_accepts_in_a_child_and_the_serving_process_holds_no_relay(gated: pm.Plugin) -> None:
    gate = only_child(gated.proc.pid)
    with Client(gated.socket) as kept:
        assert kept.status().healthz == "ok"
        names = procinfo.thread_names(gate)
        plugin_fds = procinfo.fd_targets(gated.proc.pid)
    assert names, "the gate's process runs threads"
    assert str(gated.socket) not in plugin_fds
    _, metrics = gated.http("/metrics")
    assert b"kms_appliance_connections " in metrics


def test_a_killed_gate_is_replaced_and_the_door_reopens(gated: pm.Plugin) -> None:
    first = only_child(gated.proc.pid)
    os.kill(first, signal.SIGKILL)
    assert _gone(first, 5)
    second = only_child(gated.proc.pid)
    assert second != first
    round_trip(gated.socket)
    status, body = gated.http("/livez")
    assert status == 200, body
    assert f"peer gate process {first} ended (killed by signal 9)" in gated.stderr.read_text()
    _, metrics = gated.http("/metrics")
    assert b'kms_appliance_thread_restarts_total{thread="peer-gate"} 1.0' in metrics


def test_the_gate_leaves_stop_signals_to_its_parent(gated: pm.Plugin) -> None:
    """A service manager signals the whole group: the gate must keep relaying while the
    plugin drains, so it ignores them; the plugin's stop then ends it."""
    gate = only_child(gated.proc.pid)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(gate, sig)
    time.sleep(0.3)
    assert only_child(gated.proc.pid) == gate
    round_trip(gated.socket)
    assert gated.stop() == 0
    assert _gone(gate, 5)


def test_kill_9_of_the_plugin_takes_the_gate_with_it(gated: pm.Plugin) -> None:
    gate = only_child(gated.proc.pid)
    gated.proc.kill()
    gated.proc.wait(10)
    assert _gone(gate, 1.0), "the gate must not keep the socket after its plugin died"
