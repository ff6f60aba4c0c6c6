"""No access key, token or DEK ever reaches a log line or an exception text, at DEBUG, through
auth, token expiry, every fault class and UID rotation."""

from __future__ import annotations

import base64
import logging
import os
import time
import traceback
from pathlib import Path

import pytest

from akeyless_emulator import Emulator
from kms_appliance.errors import KmsError
from tests.support.emulator import each_fault
from tests.support.procs import eventually


def _exercise(b, emu: Emulator, texts: list[str], deks: list[bytes], seen: set[str]) -> None:
    for _ in range(3):
        dek = os.urandom(32)
        deks.append(dek)
        w = b.wrap(dek)
        b.unwrap(w.ciphertext, w.key_id, w.annotations)
    emu.expire_tokens()
    for _fault in each_fault(emu):
        dek = os.urandom(32)
        deks.append(dek)
        try:
            w = b.wrap(dek)
            b.unwrap(w.ciphertext, w.key_id, {})
        except KmsError as exc:
            texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])
        seen.update(emu.core.tokens.tokens)  # tokens issued so far


def test_nothing_secret_is_written(emu: Emulator, base_env, ak_env, make_backend,
                                   caplog: pytest.LogCaptureFixture, tmp_path: Path):
    caplog.set_level(logging.DEBUG)  # the root logger, restored after the test
    texts: list[str] = []
    deks: list[bytes] = []
    seen: set[str] = set()
    _exercise(make_backend(ak_env, cache=False), emu, texts, deks, seen)
    uid = emu.add_universal_identity()  # after the first run's expire_tokens()
    uid_env = {**base_env, "AKEYLESS_ACCESS_ID": emu.core.tokens.tokens[uid].access_id,
               "AKEYLESS_UID_INIT_TOKEN": uid,
               "KMS_APPLIANCE_AKEYLESS_UID_TOKEN_FILE": str(tmp_path / "uid")}
    ub = make_backend(uid_env, uid_rotate_interval=0.2)
    assert eventually(lambda: emu.calls["uid-rotate-token"] >= 2, 10, 0.05)
    emu.fault("uid-rotate-token", kind="malformed")
    time.sleep(0.5)
    emu.clear_faults()
    _exercise(ub, emu, texts, deks, seen)

    written = caplog.text + "\n".join(texts)
    assert len(caplog.records) > 0
    assert texts
    tokens = seen | set(emu.core.tokens.tokens)
    secrets = [ak_env["AKEYLESS_ACCESS_KEY"], *tokens]
    for dek in deks:
        secrets += [dek.hex(), base64.b64encode(dek).decode(), repr(dek)[2:-1]]
    hits = [s[:6] + "..." for s in secrets if s and s in written]
    assert hits == [], f"secrets found in logs/exceptions: {hits}"
    assert len(tokens) >= 4
    assert any(t.startswith("u-") for t in tokens)
