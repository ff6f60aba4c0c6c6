"""Signals as an attack and as an operator mistake.

A burst of SIGHUPs used to deadlock the main thread (the handler's ``Event.set()`` re-entered a
lock the interrupted code held: rotation was never picked up again and SIGTERM was ignored) or
hit RecursionError in nested handlers. Core dumps are off in ``serve`` (a core of an aborted
stop held the KEK), and calls in flight at SIGTERM finish OK with exit 0.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from akeyless_emulator import Emulator
from kms_appliance.kms import v2_pb2
from tests.support import figures
from tests.support import plugin as pm
from tests.support.emulator import identity_env
from tests.support.kmsclient import Callers, Client
from tests.support.procs import eventually

HUPS = 10_000  # per round
ROUNDS = 30  # a pause between rounds lets the loop go back to waiting (where the old lock was held)
SENDERS = 2  # concurrent senders: signals keep arriving while a handler runs
PICKUP_BOUND = 5.0  # one HUP is handled on the next loop turn (TICK 0.5 s); generous for CI
GRACE = 2.0  # --grace-period for these tests
STOP_BOUND = GRACE + 5.0
IDLE_HTTP = 20
IN_FLIGHT = 4  # slow calls at SIGTERM, each on a connection of its own


def _flood(pid: int, count: int) -> float:
    def send(n: int) -> None:
        for _ in range(n):
            os.kill(pid, signal.SIGHUP)

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(count // SENDERS,)) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def test_sighup_flood_leaves_reload_and_stop_working(tmp_path: Path) -> None:
    """The serving process has RLIMIT_CORE 0 (soft and hard: no core can hold the KEK); then
    30 x 10,000 SIGHUPs: a rotation is picked up after one more HUP, Status works, SIGTERM exits 0."""
    p = pm.start(tmp_path / "p", ["--grace-period", f"{GRACE}s"])
    client = Client(p.socket)
    try:
        limits = Path(f"/proc/{p.proc.pid}/limits").read_text().splitlines()
        core = next(line for line in limits if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core
        old = str(client.status().key_id)
        for _ in range(ROUNDS):
            took = _flood(p.proc.pid, HUPS)
            time.sleep(0.02)
        figures.put("signals", f"{HUPS} SIGHUPs sent in", f"{took:.3f} s ({ROUNDS} rounds)")
        assert p.proc.poll() is None, "the plugin died of a SIGHUP flood"
        p.rotate_key()
        os.kill(p.proc.pid, signal.SIGHUP)
        assert eventually(lambda: client.status().key_id != old, PICKUP_BOUND, 0.05), \
            "after the flood, a rotation + SIGHUP was not picked up (wedged loop)"
        assert client.status().healthz == "ok"
    finally:
        client.close()
        rc = p.stop(timeout=STOP_BOUND)
    assert rc == 0, f"SIGTERM after the flood: exit {rc} (-9: ignored for {STOP_BOUND}s, then killed)"
    err = p.stderr.read_text()
    assert "Traceback" not in err
    assert err.count("key rotated") == 1


def test_calls_in_flight_at_sigterm_complete(emu: Emulator, tmp_path: Path) -> None:
    """Slow Encrypts (Akeyless answering after 1.5 s), one per connection, in flight at SIGTERM,
    idle HTTP connections closing meanwhile: each call is answered OK, exit 0, the socket
    removed, no traceback."""
    p = pm.start(tmp_path / "plugin", ["--log-level", "debug", "--grace-period", "10s"], identity_env(emu),
                 akeyless=True)
    try:
        with Client(p.socket, timeout=30) as client:
            client.encrypt(b"\x01" * 32, uid="warm-up")  # auth done, the key described
        emu.reset_calls()
        emu.fault("encrypt", delay=1.5, times=IN_FLIGHT)
        callers = Callers(p.socket, IN_FLIGHT, lambda c: c.encrypt(b"\x02" * 32, "in-flight"), timeout=30)
        assert emu.wait_for("encrypt", in_flight=IN_FLIGHT, timeout=10), "the calls never all reached Akeyless"
        # Idle and half-sent HTTP connections open at SIGTERM, closed during the drain (the
        # timing that aborted a stop): they must not disturb the stop nor print a traceback.
        idle = [socket.create_connection(("127.0.0.1", p.http_port)) for _ in range(IDLE_HTTP)]
        for conn in idle[: IDLE_HTTP // 2]:
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        p.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # not an assertion: lets the stop begin before the connections close
        for conn in idle:
            conn.close()
        answers = callers.join(30)
        rc = p.proc.wait(30)
    finally:
        p.stop(signal.SIGKILL)
    assert len(answers) == IN_FLIGHT, answers
    assert all(isinstance(a, v2_pb2.EncryptResponse) and a.ciphertext and a.key_id for a in answers), answers
    assert rc == 0, p.stderr.read_text()[-2000:]
    assert not p.socket.exists()
    assert "Traceback" not in p.stderr.read_text()
