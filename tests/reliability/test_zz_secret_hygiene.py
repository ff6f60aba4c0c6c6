"""The suite-wide secret check: runs last, scans everything any test of the session made the plugin write.

Every plugin process's stdout, stderr, audit file, /metrics and health bodies, every gRPC error
detail and any core file, for every access key, token, KEK, DEK and seed the tests used
(tests/support/ledger.py) in raw, hex and base64 forms. This module runs busy scenarios of its
own at --log-level debug (the most an operator can set), so it proves something when run alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from akeyless_emulator import Emulator
from tests.support import figures, ledger, secrets_scan
from tests.support import plugin as pm
from tests.support.emulator import KEY, each_fault, identity_env, record_secrets
from tests.support.intermediate_keys import iks_of
from tests.support.kmsclient import Client
from tests.support.procs import eventually

DEBUG = ["--log-level", "debug"]  # the most the plugin ever writes: what the scan must cover


def _busy_akeyless_run(emu: Emulator, tmp_path: Path) -> None:
    """Auth, wraps, unwraps, token expiry, every fault class, with the plugin at debug level."""
    env = identity_env(emu, KMS_APPLIANCE_SERVER_CALL_TIMEOUT="1s", KMS_APPLIANCE_CACHE_ENABLED="false")
    with (pm.running(tmp_path / "verbose", DEBUG, env=env, akeyless=True) as p,
          Client(p.socket, timeout=5) as c):
        for _fault in each_fault(emu, none_first=True):
            seed = ledger.new_secret()
            try:
                enc = c.encrypt(seed)
                c.decrypt(enc.ciphertext, enc.key_id)
                c.v1_decrypt(c.v1_encrypt(seed))
            except grpc.RpcError as exc:
                ledger.text(exc.details() or "")
        p.http("/metrics")
        p.http("/readyz")


def _busy_envelope_run(emu: Emulator, tmp_path: Path) -> tuple[pm.Plugin, list[bytes]]:
    """Envelope mode at debug level: IK created, a second plugin unwraps it, rotation (new IK),
    an outage ridden through, revocation (IKs dropped). Every IK goes to the ledger: the
    test plays Akeyless and unwraps it from the ciphertexts (tests/support/intermediate_keys)."""
    envelope = {"KMS_APPLIANCE_AKEYLESS_MODE": "envelope", "KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL": "1s"}
    env_b = identity_env(emu, **envelope)
    cts: list[bytes] = []
    with (pm.running(tmp_path / "envelope-a", DEBUG, env=identity_env(emu, **envelope), akeyless=True) as a,
          pm.running(tmp_path / "envelope-b", DEBUG, env=env_b, akeyless=True) as b,
          Client(a.socket, timeout=5) as ca, Client(b.socket, timeout=5) as cb):
        def round_trip(client: Client) -> None:
            seed = ledger.new_secret()
            enc = client.encrypt(seed)
            cts.append(enc.ciphertext)
            assert cb.decrypt(enc.ciphertext, enc.key_id) == seed
            ledger.secret(ca.v1_decrypt(ca.v1_encrypt(seed)))

        round_trip(ca)
        round_trip(cb)
        first = ca.status().key_id
        emu.rotate_key(KEY)
        assert eventually(lambda: ca.status().key_id != first, 15, 0.1)
        round_trip(ca)
        emu.fault("*", status=503)
        assert eventually(lambda: emu.calls["describe-item"] > 0, 15, 0.1)
        cts.append(ca.encrypt(os.urandom(32)).ciphertext)
        emu.clear_faults()
        with emu.core.lock:
            emu.core.identities.pop(env_b["AKEYLESS_ACCESS_ID"])
        emu.expire_tokens()
        assert eventually(lambda: cb.status().healthz != "ok", 15, 0.1)
        for ct in cts:
            try:
                cb.decrypt(ct, "")
            except grpc.RpcError as exc:
                ledger.text(exc.details() or "")
        a.http("/metrics")
        b.http("/metrics")
    iks = sorted(iks_of(cts, emu.key(KEY)))
    assert len(iks) == 3  # A's before and after the rotation, B's
    ledger.secrets(iks)
    return a, iks


def test_nothing_secret_in_anything_written(emu: Emulator, tmp_path: Path) -> None:
    _busy_akeyless_run(emu, tmp_path)
    envelope_plugin, iks = _busy_envelope_run(emu, tmp_path)
    record_secrets(emu)
    secrets = sorted(ledger.SECRETS)
    anchors = secrets_scan.index(secrets)
    scanned, hits, cores = 0, [], 0
    for data, where in ledger.outputs(ledger.PLUGINS, ledger.TEXTS, "gRPC error detail").items():
        scanned += len(data)
        hits += [f"{where}: secret #{i} ({len(secrets[i])} bytes)" for i in secrets_scan.scan(data, anchors)]
    for directory in ledger.DIRS:
        for core in Path(directory).glob("core*"):
            cores += 1
            data = core.read_bytes()
            scanned += len(data)
            hits += [f"{core}: secret #{i}" for i in secrets_scan.scan(data, anchors)]
    figures.put("secret hygiene", "plugin processes scanned", len(ledger.PLUGINS))
    figures.put("secret hygiene", "bytes scanned", scanned)
    figures.put("secret hygiene", "gRPC error details scanned", len(ledger.TEXTS))
    figures.put("secret hygiene", "secrets (raw/hex/base64 forms each)", len(secrets))
    figures.put("secret hygiene", "core files found", cores)
    figures.put("secret hygiene", "secrets found", len(hits))
    ledger.mark_scanned()  # the end-of-session check need not scan it again
    assert len(ledger.PLUGINS) >= 1 and len(secrets) >= 10 and scanned > 10_000
    assert hits == [], hits[:20]
    # ... and an IK that leaked into a copy of a plugin's output would be flagged
    log = envelope_plugin.written()
    for ik in iks:
        leaked = log[: len(log) // 2] + ik.hex().encode() + log[len(log) // 2 :]
        assert secrets_scan.scan(leaked, anchors) == {secrets.index(ik)}


@pytest.mark.parametrize("form", ["raw", "hex", "base64-offset"])
def test_the_scan_finds_a_planted_secret(form: str) -> None:
    """The scan is only worth its zero if it can see a secret: plant one in each form."""
    import base64
    secret = os.urandom(32)
    planted = {"raw": secret, "hex": secret.hex().encode(),
               "base64-offset": base64.b64encode(b"xy" + secret + b"z")}[form]
    hay = os.urandom(5000) + planted + os.urandom(5000)
    assert secrets_scan.scan(hay, secrets_scan.index([os.urandom(32), secret])) == {1}
