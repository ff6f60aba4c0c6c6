"""Two real plugin processes in Akeyless envelope mode, over their sockets: what kube-apiserver
sees through an outage and a revocation (the in-process proofs: test_akeyless_envelope.py)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import grpc

from akeyless_emulator import Emulator
from tests.integration.akeyless.test_akeyless_envelope import revoke
from tests.integration.akeyless.test_akeyless_socket import serving
from tests.support import secrets_scan
from tests.support.emulator import KEY
from tests.support.intermediate_keys import iks_of
from tests.support.kmsclient import Client
from tests.support.procs import eventually


def test_outage_ride_through_and_revocation(emu: Emulator, tmp_path: Path) -> None:
    seed = os.urandom(32)
    with (serving(emu, tmp_path / "a", KMS_APPLIANCE_AKEYLESS_MODE="envelope") as (a, env_a),
          serving(emu, tmp_path / "b", KMS_APPLIANCE_AKEYLESS_MODE="envelope") as (b, env_b),
          Client(a.socket) as ca, Client(b.socket) as cb):
        enc = ca.encrypt(seed)
        assert ":ik:" in enc.key_id and enc.key_id == ca.status().key_id
        assert cb.decrypt(enc.ciphertext, enc.key_id) == seed  # B unwraps A's IK once
        own_b = cb.encrypt(os.urandom(32))  # B's own IK, for the secret scan

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
    iks = iks_of([enc.ciphertext, enc2.ciphertext, own_b.ciphertext], emu.key(KEY))
    assert len(iks) == 2  # A's (both Encrypts) and B's
    secrets = [env_a["AKEYLESS_ACCESS_KEY"].encode(), env_b["AKEYLESS_ACCESS_KEY"].encode(),
               seed, seed2, *sorted(iks)]
    written = a.written() + b.written()
    assert secrets_scan.find(written, secrets) == []
    assert_scan_sees_a_leaked_ik(written, sorted(iks))


def assert_scan_sees_a_leaked_ik(written: bytes, iks: list[bytes]) -> None:
    """The clean scan above is worth something only if an IK in the log would be seen:
    a copy of the log with one IK inserted (raw, hex, base64 mid-line) is flagged."""
    middle = len(written) // 2
    for ik in iks:
        for leaked in (ik, ik.hex().encode(), b"ik=" + base64.b64encode(b"x" + ik)):
            copy = written[:middle] + leaked + written[middle:]
            assert secrets_scan.find(copy, [ik]), f"scan missed an IK planted as {leaked[:3]!r}..."
