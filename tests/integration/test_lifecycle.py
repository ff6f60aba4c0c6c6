"""Start, SIGTERM with calls in flight, clean exit and socket removal."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.support import plugin as pm
from tests.support.kmsclient import Callers, Client


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_exits_0_and_removes_socket(tmp_path: Path, sig: signal.Signals) -> None:
    p = pm.start(tmp_path / "t")
    assert p.stop(sig) == 0
    assert not p.socket.exists()
    events = [r["event"] for r in p.audit_records()]
    assert events[0] == "startup" and events[-1] == "shutdown"


def test_sigterm_under_load_lets_calls_finish(tmp_path: Path) -> None:
    """Callers hammering the socket see only OK answers or a clean UNAVAILABLE, never a wrong answer."""
    p = pm.start(tmp_path / "t")
    ok, wrong = [0], []
    stop = threading.Event()

    def caller(c: Client) -> None:
        while not stop.is_set():
            seed = os.urandom(32)
            enc = c.encrypt(seed)
            if c.decrypt(enc.ciphertext, enc.key_id) != seed:
                wrong.append(1)
            ok[0] += 1

    callers = Callers(p.socket, 8, caller)
    time.sleep(1.0)
    assert p.stop(signal.SIGTERM) == 0
    stop.set()
    failures = [r.code().name if hasattr(r, "code") else repr(r) for r in callers.join(30) if r is not None]
    assert ok[0] > 0 and not wrong
    assert set(failures) <= {"UNAVAILABLE", "CANCELLED"}
    assert not p.socket.exists()
