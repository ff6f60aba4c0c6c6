"""The real plugin process with the Akeyless backend: over the socket, as kube-apiserver sees it; in
envelope mode, two of them through an outage and a revocation (in-process: test_akeyless_envelope.py)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from akeyless_emulator import Emulator
from tests.integration.akeyless.test_akeyless_envelope import revoke
from tests.support import plugin as pm
from tests.support import secrets_scan
from tests.support.emulator import KEY, identity_env
from tests.support.kmsclient import Client
from tests.support.procs import eventually

ANNOTATION = "version.kms-appliance.akeyless.io"


@contextlib.contextmanager
def serving(emu: Emulator, workdir: Path, **settings: str) -> Iterator[tuple[pm.Plugin, dict[str, str]]]:
    """The plugin on ``emu`` with a fresh identity, re-reading the key every second."""
    env = identity_env(emu, KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL="1s", **settings)
    with pm.running(workdir, env=env, akeyless=True) as p:
        yield p, env


def test_round_trip_rotation_and_audit(emu: Emulator, tmp_path: Path) -> None:
    """Round trips and a rotation as kube-apiserver sees them; the audit names each item_version.
    (SIGTERM with encrypts held by Akeyless: tests/reliability/test_attacks_signals.py.)"""
    with serving(emu, tmp_path / "a") as (p, env), Client(p.socket) as c:
        seed = os.urandom(32)
        enc = c.encrypt(seed)
        st = c.status()
        assert (st.healthz, st.key_id) == ("ok", enc.key_id)
        assert dict(enc.annotations) == {ANNOTATION: b"1"}
        assert seed not in enc.ciphertext
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


def test_outage_ride_through_and_revocation(emu: Emulator, tmp_path: Path) -> None:
    """(That no IK reaches what such plugins write: tests/reliability/test_zz_secret_hygiene.py.)"""
    seed = os.urandom(32)
    with (serving(emu, tmp_path / "a", KMS_APPLIANCE_AKEYLESS_MODE="envelope") as (a, _),
          serving(emu, tmp_path / "b", KMS_APPLIANCE_AKEYLESS_MODE="envelope") as (b, env_b),
          Client(a.socket) as ca, Client(b.socket) as cb):
        enc = ca.encrypt(seed)
        assert ":ik:" in enc.key_id and enc.key_id == ca.status().key_id
        assert cb.decrypt(enc.ciphertext, enc.key_id) == seed  # B unwraps A's IK once

        emu.fault("*", status=503)  # Akeyless down for both
        seed2 = os.urandom(32)
        enc2 = ca.encrypt(seed2)  # an apiserver restarting now gets its Encrypt
        assert ca.decrypt(enc2.ciphertext, enc2.key_id) == seed2
        assert cb.decrypt(enc2.ciphertext, enc2.key_id) == seed2  # same IK, held by B
        assert ca.v1_decrypt(ca.v1_encrypt(seed)) == seed
        seen = emu.calls["describe-item"]  # wait for refresh rounds to fail against the outage
        assert eventually(lambda: emu.calls["describe-item"] >= seen + 4, 15, 0.1)
        assert cb.decrypt(enc.ciphertext, enc.key_id) == seed
        assert ca.status().healthz == "ok"
        emu.clear_faults()

        revoke(emu, env_b["AKEYLESS_ACCESS_ID"])
        deadline, code = time.monotonic() + 15, None
        while time.monotonic() < deadline:
            try:
                cb.decrypt(enc.ciphertext, enc.key_id)
            except grpc.RpcError as exc:
                code = exc.code()
                break
            time.sleep(0.2)
        assert code == grpc.StatusCode.PERMISSION_DENIED  # fail closed
        assert cb.status().healthz.startswith("unhealthy")
    rec_a, rec_b = a.audit_records(), b.audit_records()
    created = [r for r in rec_a if r["event"] == "intermediate_key_created"]
    assert len(created) == 1 and created[0]["key_id"] == enc.key_id
    assert created[0]["item_version"] == 1 and created[0]["reason"] == "startup"
    unwrapped = [r for r in rec_b if r["event"] == "intermediate_key_unwrapped"]
    assert [r["key_id"] for r in unwrapped] == [enc.key_id]
    assert {r["reason"].split(":")[0] for r in rec_b if r["event"] == "intermediate_key_dropped"} \
        == {"access denied"}
    decrypts = [r for r in rec_b if r["event"] == "decrypt" and r["outcome"] == "ok"]
    assert decrypts and all(r["key_id"] == enc.key_id and r["key_version"] == "1" for r in decrypts)
