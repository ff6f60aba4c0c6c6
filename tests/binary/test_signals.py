"""Signals to the frozen binary: SIGHUP reloads, SIGTERM stops it cleanly (exit 0, socket
removed), Ctrl-C to the process group stops it gracefully.

The signal goes to the outermost process (staticx's bootloader), as a
container runtime or systemd would send it; it must reach the Python
server through the two bootloaders.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.binary.sandbox import START_TIMEOUT
from tests.support import plugin as pm
from tests.support.kmsclient import Client

pytestmark = pytest.mark.binary


@pytest.fixture
def unpack(tmp_path: Path) -> Path:
    """TMPDIR of the binary: every file it unpacks must be gone once it exits."""
    d = tmp_path / "unpack"
    d.mkdir()
    return d


@pytest.fixture
def frozen(binary: Path, tmp_path: Path, unpack: Path) -> Iterator[pm.Plugin]:
    """The binary serving on a local keyring it made itself, prepared (not started); stopped at the
    end, and no process of its chain may be left."""
    plugin = pm.prepare(tmp_path / "p", command=pm.Command.frozen(binary), http=False, audit_file=False,
                        base_env={"PATH": "/usr/bin:/bin", "TMPDIR": str(unpack)})
    yield plugin
    if plugin.process.proc is not None:
        plugin.stop(signal.SIGKILL)


def test_sighup_reloads_and_sigterm_stops_cleanly(frozen: pm.Plugin, unpack: Path) -> None:
    """SIGHUP to the pid an operator sees (systemd's ExecReload: ``kill -HUP $MAINPID``) reaches
    Python through both bootloaders: the rotated key is picked up, nothing dies. Stock staticx
    died of it (orphaning the server, which now stops with its ancestors). SIGTERM to the same
    pid then exits 0, removes the socket and leaves no unpacked file in TMPDIR."""
    frozen.start(timeout=START_TIMEOUT)
    with Client(frozen.socket, timeout=10) as client:
        status = client.status()
        assert status.healthz == "ok"
        frozen.rotate_key()
        for _ in range(100):
            frozen.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while client.status().key_id == status.key_id and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.status().key_id != status.key_id, "the rotation was not picked up"
        assert frozen.proc.poll() is None, "the outermost process died of SIGHUP"
    rc = frozen.stop()
    err = frozen.stderr.read_text(errors="replace")
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err
    assert not frozen.socket.exists()
    assert list(unpack.iterdir()) == [], "unpacked files left behind in TMPDIR"


def test_ctrl_c_to_the_process_group_stops_gracefully(frozen: pm.Plugin) -> None:
    """Ctrl-C (SIGINT to the whole group) reaches Python directly and through both bootloaders:
    the duplicates are one stop request, not the "second Ctrl-C" that forces exit 130."""
    rcs = []
    for _ in range(3):  # the duplicates race; one run could be lucky
        frozen.start(timeout=START_TIMEOUT)
        os.killpg(frozen.proc.pid, signal.SIGINT)
        rcs.append(frozen.proc.wait(30))
        frozen.stop()  # already exited: proves no process of the group is left
    assert rcs == [0, 0, 0]
