"""The frozen binary's three processes (staticx's bootloader -> PyInstaller's bootloader ->
Python) live and die together: ``kill -9`` of the pid an operator sees used to orphan the other
two, which kept the socket, so a restarted plugin refused to start.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.binary import sandbox
from tests.support import plugin as pm
from tests.support.procs import alive, children, descendants, eventually, wait_until

pytestmark = pytest.mark.binary

GONE_BOUND = 1.0  # no process of the plugin remains within 1 s of the kill
CLEAN_BOUND = 10.0  # unpack directories removed (rm of ~100 MB on a loaded machine)


@dataclass
class Running:
    plugin: pm.Plugin
    chain: list[int]  # [staticx bootloader, PyInstaller bootloader, python]
    unpack: Path


def _child(pid: int) -> int:
    """The one direct child of ``pid`` (each bootloader starts exactly one)."""
    wait_until(lambda: bool(children(pid)), 30, f"a child of pid {pid}", interval_s=0.02)
    return children(pid)[0]


def _kill9(victim: int, pids: list[int], plugin: pm.Plugin) -> float:
    """kill -9 of ``victim``: none of ``pids`` may be alive GONE_BOUND later; returns how long they took."""
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    if victim == plugin.proc.pid:
        plugin.proc.wait(5)  # the operator's shell reaps what it started
    eventually(lambda: not any(alive(p) for p in pids), GONE_BOUND, 0.01)
    took = time.monotonic() - killed_at
    left = [p for p in pids if alive(p)]
    assert not left, f"still running {GONE_BOUND}s after kill -9 of {victim}: {left} of {pids}"
    return took


def _start(binary: Path, tmp: Path, run: Path, ring: Path, args: tuple[str, ...] = ()) -> Running:
    unpack = tmp / "unpack"
    unpack.mkdir(exist_ok=True)
    plugin = pm.start(tmp / "p", args, keyring=ring, socket_path=run / "kms.sock", command=pm.Command.frozen(binary),
                      http=False, audit_file=False, base_env={"PATH": "/usr/bin:/bin", "TMPDIR": str(unpack)},
                      timeout=sandbox.START_TIMEOUT)
    try:
        middle = _child(plugin.proc.pid)
        bottom = _child(middle)
    except BaseException:
        plugin.stop(signal.SIGKILL)
        raise
    return Running(plugin, [plugin.proc.pid, middle, bottom], unpack)


@pytest.fixture
def ring(binary: Path, tmp_path: Path) -> Path:
    path = tmp_path / "keyring.json"
    pm.keyring_init(path, pm.Command.frozen(binary))
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    return run


@pytest.fixture
def plugin(binary: Path, tmp_path: Path, run_dir: Path, ring: Path) -> Iterator[Running]:
    r = _start(binary, tmp_path, run_dir, ring)
    try:
        yield r
    finally:
        r.plugin.stop(signal.SIGKILL)  # no process of the chain may be left


@pytest.mark.parametrize("level", [0, 1, 2], ids=["top-staticx", "middle-pyinstaller", "bottom-python"])
def test_kill9_ends_the_whole_chain_and_a_restart_serves(
        plugin: Running, level: int, binary: Path, tmp_path: Path, run_dir: Path, ring: Path) -> None:
    """kill -9 of any one of the three: within 1 s none remains; a new plugin serves on the socket.
    After kill -9 of the top, both unpack directories are removed (not leaked in TMPDIR)."""
    took = _kill9(plugin.chain[level], plugin.chain, plugin.plugin)
    plugin.plugin.proc.wait(5)
    if level == 0:
        eventually(lambda: not list(plugin.unpack.iterdir()), CLEAN_BOUND, 0.05)
        assert list(plugin.unpack.iterdir()) == []

    (tmp_path / "again").mkdir()
    again = _start(binary, tmp_path / "again", run_dir, ring).plugin
    try:
        assert again.status(timeout=10).healthz == "ok"
        assert again.stop() == 0
    finally:
        again.stop(signal.SIGKILL)  # no-op once stopped; proves nothing of it is left
    print(f"chain gone {took:.3f} s after kill -9 of level {level}")


def test_kill9_of_the_top_ends_the_peer_gate_process_too(
        binary: Path, tmp_path: Path, run_dir: Path, ring: Path) -> None:
    """With server.allowed_uids the gate accepts in a fourth process: it goes with the rest."""
    r = _start(binary, tmp_path, run_dir, ring, ("--allowed-uids", str(os.geteuid())))
    try:
        assert r.plugin.status(timeout=10).healthz == "ok"
        tree = [r.chain[0], *descendants(r.chain[0])]
        assert len(tree) == 4, tree
        _kill9(r.chain[0], tree, r.plugin)
    finally:
        r.plugin.stop(signal.SIGKILL)
