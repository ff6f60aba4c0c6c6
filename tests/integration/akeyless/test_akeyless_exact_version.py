"""Direct mode: every new ciphertext, key_id and audit record names the item_version Akeyless used
(``Emulator.encrypt_versions``, joined through the Akeyless blob each answer carries). The refresh
interval is 60 s: only the check after each encrypt can follow the rotations during a burst."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from akeyless_emulator import Emulator
from akeyless_emulator.api import result_fingerprint
from kms_appliance.audit import fingerprint
from kms_appliance.backends import envelope
from kms_appliance.backends.akeyless.backend import ANNOTATION, AkeylessBackend
from kms_appliance.errors import BackendUnavailable
from tests.integration.akeyless.rotating import error_while_rotating, rotated_during_check
from tests.support import plugin as pm
from tests.support.emulator import KEY
from tests.support.kmsclient import Callers, Client

_LABEL = struct.Struct(">IH")  # the plugin's own header after the envelope header: version, length
WORKERS = 4
PER_WORKER = 24  # alternating v1 and v2
ROTATE_AT = (8, 30, 60)  # rotate once the emulator has seen this many encrypts


def _label(ciphertext: bytes) -> tuple[int, bytes]:
    """(the version the plugin wrote in its header, Akeyless's blob)."""
    payload = ciphertext[envelope.HEADER_LEN:]
    return _LABEL.unpack_from(payload)[0], payload[_LABEL.size:]


def _burst(c: Client) -> list[tuple[str, bytes, bytes, Any]]:
    """One caller's encrypts, KMS v1 and v2 in turn: (api, seed, ciphertext, the v2 response)."""
    out: list[tuple[str, bytes, bytes, Any]] = []
    for i in range(PER_WORKER):
        seed = os.urandom(32)
        if i % 2:
            resp = c.encrypt(seed, uid=f"burst-{i}")
            out.append(("v2", seed, resp.ciphertext, resp))
        else:
            out.append(("v1", seed, c.v1_encrypt(seed), None))
    return out


def _rotator(emu: Emulator, rotated: list[int]) -> None:
    for calls in ROTATE_AT:
        if not emu.wait_for("encrypt", calls=calls, timeout=30):
            return
        rotated.append(emu.rotate_key(KEY))


def test_rotations_during_a_burst_label_every_record_with_the_version_used(
        emu: Emulator, ak_env: dict[str, str], tmp_path: Path) -> None:
    env = {**ak_env, "KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL": "60s"}
    item_id = emu.key(KEY).item_id
    # Widen the window between an encrypt and what follows it, so rotations land inside it.
    emu.fault("encrypt", "latency", delay=0.005)
    rotated: list[int] = []
    with pm.running(tmp_path / "p", env=env, akeyless=True) as p:
        rot = threading.Thread(target=_rotator, args=(emu, rotated))
        rot.start()
        results = Callers(p.socket, WORKERS, _burst, timeout=10).join(60)
        rot.join(30)
        out = [call for calls in results if isinstance(calls, list) for call in calls]
        assert len(out) == WORKERS * PER_WORKER, results  # no caller raised
        assert rotated == [2, 3, 4], "every rotation must happen during the burst"
        emu.clear_faults()

        used = emu.encrypt_versions()
        with Client(p.socket, timeout=10) as c:
            for api, _, ct, resp in out:
                label, blob = _label(ct)
                version = used[result_fingerprint(blob)]
                assert label == version, f"{api} ciphertext labelled {label}, Akeyless used {version}"
                if resp is not None:
                    assert resp.key_id == f"akeyless:{item_id}:{version}"
                    assert resp.annotations[ANNOTATION] == str(version).encode()
            emu.rotate_key(KEY)  # old data stays readable after yet another rotation
            for _, seed, ct, resp in out:
                if resp is None:
                    assert c.v1_decrypt(ct) == seed
                else:
                    assert c.decrypt(ct, resp.key_id, dict(resp.annotations)) == seed
        versions_used = {used[result_fingerprint(_label(ct)[1])] for _, _, ct, _ in out}
        assert versions_used == {1, 2, 3, 4}, versions_used

    records = {r["ct_fp"]: r for r in p.audit_records() if r["event"] == "encrypt"}
    for api, _, ct, _ in out:
        rec = records[fingerprint(ct)]
        version = used[result_fingerprint(_label(ct)[1])]
        assert (rec["api"], rec["outcome"]) == ("v2" if api == "v2" else "v1beta1", "ok")
        assert rec["key_version"] == str(version)
        assert rec["key_id"] == f"akeyless:{item_id}:{version}"


def test_rotation_between_encrypt_and_check_is_wrapped_again(
        emu: Emulator, ak_env: dict[str, str],
        make_backend: Callable[..., AkeylessBackend]) -> None:
    """A rotation landing after Akeyless encrypted under v1: the DEK is wrapped again as v2, which a
    peer still holding version 1 as the latest decrypts (the label travels in the ciphertext)."""
    backend = make_backend(ak_env, refresh_interval=60.0)
    peer = make_backend(ak_env, refresh_interval=60.0)
    emu.reset_calls()
    emu.fault("describe-item", "latency", delay=0.5, times=1)
    wrapped = rotated_during_check(emu, backend.wrap, b"k" * 32)
    label, blob = _label(wrapped.ciphertext)
    assert label == emu.encrypt_versions()[result_fingerprint(blob)] == 2
    assert wrapped.key_version == "2" and wrapped.key_id.endswith(":2")
    # encrypt, check (moved), full describe, encrypt, check
    assert (emu.calls["encrypt"], emu.calls["describe-item"]) == (2, 3)
    assert backend.state.last_version == 2  # the held state followed at once, in full
    assert set(backend.state.versions) == {1, 2}
    assert backend.unwrap(wrapped.ciphertext, wrapped.key_id, {}).plaintext == b"k" * 32
    assert peer.state.last_version == 1
    out = peer.unwrap(wrapped.ciphertext, wrapped.key_id, {})
    assert (out.plaintext, out.key_version) == (b"k" * 32, "2")


def test_a_key_rotating_during_every_check_gives_up_after_three_encrypts(
        emu: Emulator, ak_env: dict[str, str],
        make_backend: Callable[..., AkeylessBackend]) -> None:
    """Bounded: each check finds a newer version (the describe held 0.25 s by a latency fault);
    the third mismatch is UNAVAILABLE, not a loop."""
    backend = make_backend(ak_env, refresh_interval=60.0)
    emu.reset_calls()
    emu.fault("describe-item", "latency", delay=0.25)
    err = error_while_rotating(emu, backend.wrap, b"k" * 32)
    assert isinstance(err, BackendUnavailable) and "rotated during each of 3" in err.message
    assert (emu.calls["encrypt"], emu.calls["describe-item"]) == (3, 6)  # a check + a full each
    assert backend.state.last_version == 4
    emu.clear_faults()
    wrapped = backend.wrap(b"k" * 32)  # a quiet key: one encrypt, one describe, version 4
    assert wrapped.key_version == "4" and _label(wrapped.ciphertext)[0] == 4
    assert (emu.calls["encrypt"], emu.calls["describe-item"]) == (4, 7)
