"""The real plugin process with the Akeyless backend: over the socket, as kube-apiserver sees it."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from akeyless_emulator import Emulator
from tests.support import plugin as pm
from tests.support import secrets_scan
from tests.support.emulator import KEY, identity_env
from tests.support.kmsclient import Callers, Client
from tests.support.procs import eventually

ANNOTATION = "version.kms-appliance.akeyless.io"


@contextlib.contextmanager
def serving(emu: Emulator, workdir: Path, **settings: str) -> Iterator[tuple[pm.Plugin, dict[str, str]]]:
    """The plugin on ``emu`` with a fresh identity, re-reading the key every second."""
    env = identity_env(emu, KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL="1s", **settings)
    with pm.running(workdir, env=env, akeyless=True) as p:
        yield p, env


def test_round_trip_rotation_and_audit_item_version(emu: Emulator, tmp_path: Path) -> None:
    with serving(emu, tmp_path / "a") as (p, env), Client(p.socket) as c:
        seed = os.urandom(32)
        enc = c.encrypt(seed)
        st = c.status()
        assert (st.healthz, st.key_id) == ("ok", enc.key_id)
        assert enc.annotations[ANNOTATION] == b"1"
        assert c.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) == seed
        assert c.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) == seed
        assert c.v1_decrypt(c.v1_encrypt(seed)) == seed

        emu.rotate_key(KEY)
        assert eventually(lambda: c.status().key_id != enc.key_id, 15, 0.1)
        new = c.encrypt(os.urandom(32))
        assert new.key_id == c.status().key_id != enc.key_id
        assert new.annotations[ANNOTATION] == b"2"
        assert c.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) == seed
    records = p.audit_records()
    decrypts = [r for r in records if r["event"] == "decrypt" and r["api"] == "v2"]
    assert [r["key_version"] for r in decrypts] == ["1", "1", "1"]
    assert [r["cached"] for r in decrypts] == [False, True, True]
    assert all(r["key_name"] == KEY and r["backend"] == "akeyless" for r in decrypts)
    assert any(r["event"] == "key_rotation" and r["key_version"] == "2" for r in records)
    secrets = [env["AKEYLESS_ACCESS_KEY"].encode(), seed]
    assert secrets_scan.find(p.written(), secrets) == []


def test_sigterm_lets_slow_calls_in_flight_finish(emu: Emulator, tmp_path: Path) -> None:
    """Encrypts held 1.5 s by Akeyless are answered OK after SIGTERM; then exit 0, socket gone."""
    with serving(emu, tmp_path / "b") as (p, _):
        emu.fault("encrypt", "latency", delay=1.5)
        callers = Callers(p.socket, 4, lambda c: len(c.encrypt(os.urandom(32)).ciphertext), timeout=10)
        assert eventually(lambda: emu.in_flight.get("encrypt", 0) >= 4, 10, 0.02), "all four calls in flight at SIGTERM"
        p.proc.send_signal(signal.SIGTERM)
        results = callers.join(15)
        assert p.proc.wait(20) == 0
        assert len(results) == 4 and all(isinstance(r, int) and r > 0 for r in results), results
        assert not p.socket.exists()
