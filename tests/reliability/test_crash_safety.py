"""kill -9 at random points under load: nothing on disk (keyring, audit file, socket, UID token
file) is left torn, and every ciphertext handed out before a crash decrypts after the restart."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from akeyless_emulator import Emulator
from kms_appliance.backends import keyring
from tests.support import figures, ledger
from tests.support import plugin as pm
from tests.support.emulator import identity_env, record_secrets
from tests.support.kmsclient import Client

ROUNDS = int(os.environ.get("KMS_APPLIANCE_CRASH_ROUNDS", "6"))
RELOAD = {"KMS_APPLIANCE_LOCAL_RELOAD_INTERVAL": "100ms"}


def _load(sock: Path, stop: threading.Event, sealed: list[tuple[str, bytes, bytes, str]],
          wrong: list[str]) -> None:
    with Client(sock, timeout=3) as c:
        while not stop.is_set():
            seed = ledger.new_secret()
            try:
                enc = c.encrypt(seed)
                sealed.append(("v2", seed, bytes(enc.ciphertext), enc.key_id))
                if c.decrypt(enc.ciphertext, enc.key_id) != seed:
                    wrong.append("v2")
                cipher = c.v1_encrypt(seed)
                sealed.append(("v1", seed, cipher, ""))
                if c.v1_decrypt(cipher) != seed:
                    wrong.append("v1")
            except grpc.RpcError:
                time.sleep(0.01)  # the plugin was killed under us


def _rotator(ring: Path, stop: threading.Event, rng: random.Random, killed: list[int]) -> None:
    while not stop.is_set():
        proc = subprocess.Popen([sys.executable, "-m", "kms_appliance", "keyring", "rotate", str(ring)],
                                cwd=pm.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.kill()
            killed.append(1)
        proc.wait(10)


def _audit_intact(path: Path, torn: set[bytes]) -> tuple[int, bytes]:
    """(whole lines, unfinished tail): every line is JSON but the tails kills tore (a new one joins
    ``torn``). A kill can cut the write in progress at a page boundary, so the last line may be
    torn; the next start must end it, or the record glued to it would not parse."""
    *whole, tail = path.read_bytes().split(b"\n")
    for line in whole:
        if line not in torn:
            json.loads(line)
    if tail:
        torn.add(tail)
    return len(whole), tail


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    """A keyring made by the CLI, alone in a 0700 work directory the plugin also uses."""
    (tmp_path / "work").mkdir(mode=0o700)
    pm.keyring_init(tmp_path / "work" / "keyring.json")
    return tmp_path / "work" / "keyring.json"


def test_kill_9_under_load_with_rotations(ring: Path) -> None:
    rng = random.Random(int(os.environ.get("KMS_APPLIANCE_FUZZ_SEED", "7")))
    work = ring.parent
    sealed: list[tuple[str, bytes, bytes, str]] = []
    wrong: list[str] = []
    rotations_killed: list[int] = []
    restarts_recovered_stale = 0
    torn: set[bytes] = set()
    for _ in range(ROUNDS):
        p = pm.start(work, env=RELOAD, keyring=ring)
        stop = threading.Event()
        threads = [threading.Thread(target=_load, args=(p.socket, stop, sealed, wrong)) for _ in range(3)]
        threads.append(threading.Thread(target=_rotator, args=(ring, stop, rng, rotations_killed)))
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.0))
        p.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(30)
        if p.socket.exists():
            restarts_recovered_stale += 1
        keyring.load(ring)  # parses and validates: never torn
        _audit_intact(p.audit, torn)
    # the last restart: the stale socket is recovered and everything ever handed out decrypts
    with pm.running(work, env=RELOAD, keyring=ring) as p, Client(p.socket, timeout=5) as c:
        for api, seed, ct, key_id in sealed:
            got = c.decrypt(ct, key_id) if api == "v2" else c.v1_decrypt(ct)
            assert got == seed, "a ciphertext handed out before a crash no longer decrypts"
    records, tail = _audit_intact(p.audit, torn)
    assert not tail, "a graceful stop left a torn record"
    assert records > len(torn), "the audit trail recorded nothing"
    leftovers = [x.name for x in work.iterdir() if x.name.endswith(".tmp")]
    figures.put("crash safety", "local keyring",
                f"{ROUNDS} kill -9 of the plugin under load, {len(rotations_killed)} kill -9 of "
                f"`keyring rotate`, {len(keyring.load(ring).entries)} key versions, "
                f"{len(sealed)} ciphertexts re-decrypted after restart, "
                f"{records} audit lines, all JSON but {len(torn)} torn by a kill and ended at restart, "
                f"stale socket recovered {restarts_recovered_stale}x, temp files left {len(leftovers)}")
    assert not wrong
    assert sealed
    assert restarts_recovered_stale == ROUNDS, "kill -9 leaves the socket behind, and each restart recovers it"


def test_kill_9_during_uid_token_rotation(emu: Emulator, tmp_path: Path) -> None:
    rng = random.Random(11)
    first = emu.add_universal_identity()
    access_id = emu.core.tokens.tokens[first].access_id
    token_file = tmp_path / "uid-token"
    env = {**os.environ, **identity_env(emu), "AKEYLESS_ACCESS_ID": access_id,
           "AKEYLESS_UID_INIT_TOKEN": first, "KMS_APPLIANCE_AKEYLESS_UID_TOKEN_FILE": str(token_file)}
    env.pop("AKEYLESS_ACCESS_KEY")
    dead_after_crash = 0
    kills = 0
    for _ in range(ROUNDS):
        proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.uid_rotator"], cwd=pm.REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"READY":
            proc.kill()
            proc.wait(5)
            err = proc.stderr.read() if proc.stderr else b""
            ledger.text(err)
            pytest.fail(f"restart from the saved token failed: {err[-400:]!r}")
        time.sleep(rng.uniform(0.2, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills += 1
        ledger.text(proc.stderr.read() if proc.stderr else b"")
        saved = token_file.read_text()
        assert saved.endswith("\n") and saved.count("\n") == 1, "torn token file"
        token = saved.strip()
        assert token in emu.core.tokens.tokens, "the file holds something the emulator never issued"
        assert token_file.stat().st_mode & 0o777 == 0o600
        live = emu.core.tokens.tokens[token]
        if getattr(live, "revoked", False):
            dead_after_crash += 1
            # the window between Akeyless rotating and the file being replaced was hit:
            # start the next round from a fresh token, as an operator would
            fresh = emu.add_universal_identity(access_id=None)
            env["AKEYLESS_ACCESS_ID"] = emu.core.tokens.tokens[fresh].access_id
            env["AKEYLESS_UID_INIT_TOKEN"] = fresh
            token_file.unlink()
    record_secrets(emu)
    rotations = emu.calls["uid-rotate-token"]
    figures.put("crash safety", "UID token file",
                f"{kills} kill -9 during {rotations} rotations: file never torn, always an issued token, "
                f"0600; restart from a dead token (rotated but not yet saved) {dead_after_crash}x")
    assert rotations >= kills


def test_keyring_missing_then_garbage_at_runtime_keeps_the_old_key(ring: Path) -> None:
    """A keyring that vanishes for 1 s, then one replaced by garbage, during reloads: the plugin
    keeps serving with the key it holds."""
    with pm.running(ring.parent, env=RELOAD, keyring=ring) as p, Client(p.socket, timeout=3) as c:
        ring.rename(ring.with_name("keyring.moved"))
        time.sleep(1.0)
        ring.with_name("keyring.moved").rename(ring)
        time.sleep(0.5)
        assert p.proc.poll() is None, "the plugin exited because its keyring was missing for 1 s"
        assert c.status().healthz == "ok"
        seed = ledger.new_secret()
        enc = c.encrypt(seed)
        good = ring.read_bytes()
        tmp = ring.with_name("x.tmp")
        tmp.write_bytes(b'{"format": "kms-appliance-keyring/1", "keys": [')
        tmp.chmod(0o600)
        tmp.replace(ring)
        time.sleep(0.6)
        assert p.proc.poll() is None
        assert c.decrypt(enc.ciphertext, enc.key_id) == seed
        assert c.status().key_id == enc.key_id
        tmp.write_bytes(good)
        tmp.chmod(0o600)
        tmp.replace(ring)
