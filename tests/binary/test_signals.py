"""Signals to the frozen binary: SIGTERM stops it cleanly (exit 0, socket removed), SIGHUP
reloads, Ctrl-C to the process group stops it gracefully.

The signal goes to the outermost process (staticx's bootloader), as a
container runtime or systemd would send it; it must reach the Python
server through the two bootloaders.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.binary import sandbox
from tests.support.kmsclient import Client

pytestmark = pytest.mark.binary


def test_sigterm_clean_exit_removes_socket(binary: Path, tmp_path: Path) -> None:
    run, unpack = tmp_path / "run", tmp_path / "unpack"
    run.mkdir(mode=0o700)
    unpack.mkdir()
    sock, ring, conf = run / "kms.sock", tmp_path / "keyring.json", tmp_path / "none.toml"
    conf.touch()
    subprocess.run([str(binary), "keyring", "init", str(ring)], check=True, capture_output=True,
                   timeout=60)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(unpack)}
    proc = subprocess.Popen(
        [str(binary), "serve", "--backend", "local", "--keyring", str(ring), "--socket", str(sock),
         "--http-listen", "", "--audit-log", "-", "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        sandbox.wait_serving(sock, proc, 60)
        client = Client(sock, timeout=10)
        try:
            assert client.status().healthz == "ok"
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert rc == 0, err
    assert not sock.exists()
    assert "Traceback" not in err
    assert list(unpack.iterdir()) == [], "unpacked files left behind in TMPDIR"


def test_sighup_to_outermost_process_reloads_and_keeps_serving(binary: Path, tmp_path: Path) -> None:
    """SIGHUP to the pid an operator sees (systemd's ExecReload: ``kill -HUP $MAINPID``) reaches
    Python through both bootloaders: the rotated key is picked up, nothing dies, SIGTERM exits 0.
    Stock staticx died of it (orphaning the server, which now stops with its ancestors)."""
    run, unpack = tmp_path / "run", tmp_path / "unpack"
    run.mkdir(mode=0o700)
    unpack.mkdir()
    sock, ring, conf = run / "kms.sock", tmp_path / "keyring.json", tmp_path / "none.toml"
    conf.touch()
    subprocess.run([str(binary), "keyring", "init", str(ring)], check=True, capture_output=True,
                   timeout=60)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(unpack)}
    proc = subprocess.Popen(
        [str(binary), "serve", "--backend", "local", "--keyring", str(ring), "--socket", str(sock),
         "--http-listen", "", "--audit-log", "-", "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    chain: list[int] = []
    try:
        sandbox.wait_serving(sock, proc, 60)
        chain = sandbox.descendants(proc.pid)
        client = Client(sock, timeout=10)
        try:
            old = client.status().key_id
            subprocess.run([str(binary), "keyring", "rotate", str(ring)], check=True,
                           capture_output=True, timeout=60, env=env)
            for _ in range(100):
                proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while client.status().key_id == old and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.status().key_id != old, "the rotation was not picked up"
            assert proc.poll() is None, "the outermost process died of SIGHUP"
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        for pid in [proc.pid, *chain]:  # an orphaned server (stock staticx) must not outlive us
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(5)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert rc == 0, err
    assert "Traceback" not in err


def test_ctrl_c_to_the_process_group_stops_gracefully(binary: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole group) reaches Python directly and through both bootloaders:
    the duplicates are one stop request, not the "second Ctrl-C" that forces exit 130."""
    run, unpack = tmp_path / "run", tmp_path / "unpack"
    run.mkdir(mode=0o700)
    unpack.mkdir()
    sock, ring, conf = run / "kms.sock", tmp_path / "keyring.json", tmp_path / "none.toml"
    conf.touch()
    subprocess.run([str(binary), "keyring", "init", str(ring)], check=True, capture_output=True,
                   timeout=60)
    rcs = []
    for _ in range(3):  # the duplicates race; one run could be lucky
        proc = subprocess.Popen(
            [str(binary), "serve", "--backend", "local", "--keyring", str(ring), "--socket",
             str(sock), "--http-listen", "", "--audit-log", "-", "--config", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(unpack)})
        try:
            sandbox.wait_serving(sock, proc, 60)
            os.killpg(proc.pid, signal.SIGINT)
            rcs.append(proc.wait(30))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert rcs == [0, 0, 0]
