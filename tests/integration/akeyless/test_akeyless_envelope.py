"""akeyless.mode = "envelope" (DEKs wrapped locally under an intermediate key, IK, that Akeyless
wrapped): the real SDK against the emulator over HTTPS."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from akeyless_emulator import Emulator
from akeyless_emulator.api import result_fingerprint
from kms_appliance.backends import envelope
from kms_appliance.backends.akeyless import intermediate
from kms_appliance.backends.akeyless.envelope_mode import ModalBackend
from kms_appliance.errors import (
    AccessDenied,
    BackendUnavailable,
    CiphertextError,
    KeyUnavailable,
    SetupError,
)
from kms_appliance.metrics import Metrics
from tests.integration.akeyless.rotating import error_while_rotating, rotated_during_check
from tests.support.emulator import KEY

KEY_ID = re.compile(r"^akeyless:\d+:(\d+):ik:([0-9a-f]{32})$")
Events = list[tuple[str, Mapping[str, object]]]


def envelope_backend(make_backend: Callable[..., Any], env: dict[str, str], **over: Any) -> tuple[ModalBackend, Events]:
    b = make_backend(env, mode="envelope", **over)
    assert isinstance(b, ModalBackend)
    events: Events = []
    b.set_event_sink(lambda name, fields: events.append((name, fields)))
    return b, events


def revoke(emu: Emulator, access_id: str) -> None:
    """The identity is deleted and its tokens die: re-login is refused (401)."""
    with emu.core.lock:
        emu.core.identities.pop(access_id)
    emu.expire_tokens()


class TestEnvelopeRoundTrip:
    def test_one_akeyless_encrypt_at_start_then_local_wraps(self, emu: Emulator, ak_env, make_backend):
        emu.reset_calls()
        b, events = envelope_backend(make_backend, ak_env)
        # the IK: wrapped once, then unwrapped once to prove this access id may read it
        assert (emu.calls["encrypt"], emu.calls["decrypt"]) == (1, 1)
        enc = [r for r in emu.requests if r.endpoint == "encrypt"]
        assert enc[0].item_version == 1
        emu.reset_calls()
        deks = [os.urandom(32) for _ in range(50)]
        wrapped = [b.wrap(d) for d in deks]
        assert sum(emu.calls.values()) == 0
        st = b.status()
        m = KEY_ID.match(st.key_id)
        assert m and m.group(1) == "1" and st.key_version == "1" and st.healthy
        for d, w in zip(deks, wrapped, strict=True):
            assert w.key_id == st.key_id and len(w.ciphertext) < 1024
            assert d not in w.ciphertext
            assert w.ciphertext.startswith(envelope.header(envelope.BACKEND_AKEYLESS_IK))
            u = b.unwrap(w.ciphertext, w.key_id, w.annotations)
            assert (u.plaintext, u.key_id, u.key_version) == (d, st.key_id, "1")
        assert emu.calls["decrypt"] == 0  # own IK: no remote unwrap
        created = [f for n, f in events if n == "intermediate_key_created"]
        assert len(created) == 1 and created[0]["key_id"] == st.key_id
        assert created[0]["item_version"] == 1 and created[0]["reason"] == "startup"

    def test_tampering_is_refused_locally_and_the_ik_blob_never_unwraps_as_a_dek(self, emu, ak_env, make_backend):
        """Domain separation: the wrapped IK in a direct-mode frame is refused by Akeyless."""
        b, _ = envelope_backend(make_backend, ak_env)
        w = b.wrap(os.urandom(32))
        emu.reset_calls()
        for i in (len(w.ciphertext) - 1, len(w.ciphertext) - 20, 10):  # tag, sealed DEK, ik id
            bad = bytearray(w.ciphertext)
            bad[i] ^= 1
            with pytest.raises(CiphertextError):
                b.unwrap(bytes(bad), None, {})
        with pytest.raises(CiphertextError, match="key_id"):
            b.unwrap(w.ciphertext, w.key_id[:-1] + "0" if w.key_id[-1] != "0" else w.key_id[:-1] + "1", {})
        # the ik-id flip named an unknown IK: Akeyless refused to unwrap it under that context
        assert emu.calls["decrypt"] <= 1
        head = envelope.header(envelope.BACKEND_AKEYLESS) + (1).to_bytes(4, "big") + (32).to_bytes(2, "big")
        with pytest.raises(CiphertextError):
            b.unwrap(head + intermediate.parse(w.ciphertext).wrapped, None, {})


class TestSecondPlugin:
    def test_foreign_ik_unwrapped_once_then_local_and_modes_read_each_other(self, emu: Emulator, ak_env,
                                                                             make_backend):
        b1, _ = envelope_backend(make_backend, ak_env)
        b2, events2 = envelope_backend(make_backend, ak_env)
        assert b1.status().key_id != b2.status().key_id  # each plugin has its own IK
        cts = [b1.wrap(os.urandom(32)) for _ in range(20)]
        emu.reset_calls()
        for w in cts:
            assert b2.unwrap(w.ciphertext, w.key_id, w.annotations).key_id == w.key_id
        assert emu.calls["decrypt"] == 1
        rec = [r for r in emu.requests if r.endpoint == "decrypt"]
        assert rec[0].item_version == 1
        unwrapped = [f for n, f in events2 if n == "intermediate_key_unwrapped"]
        assert len(unwrapped) == 1 and unwrapped[0]["key_id"] == cts[0].key_id
        assert unwrapped[0]["item_version"] == 1
        assert len(b2.intermediate_keys) == 2
        direct = make_backend(ak_env)  # a plugin in direct mode and b2 read each other's ciphertext
        d = os.urandom(32)
        assert b2.unwrap(direct.wrap(d).ciphertext, None, {}).plaintext == d
        w = b2.wrap(d)
        assert direct.unwrap(w.ciphertext, w.key_id, {}).plaintext == d


class TestOutage:
    @pytest.mark.parametrize("fault", [{"status": 503}, {"kind": "reset"}])
    def test_held_iks_ride_through(self, emu: Emulator, ak_env, make_backend, fault):
        b1, _ = envelope_backend(make_backend, ak_env, call_timeout=1.0)
        b2, _ = envelope_backend(make_backend, ak_env, call_timeout=1.0)
        old = b1.wrap(os.urandom(32))
        b2.unwrap(old.ciphertext, old.key_id, {})  # b2 now holds b1's IK
        cold = make_backend(ak_env, cache=False, call_timeout=1.0)  # holds no IK of b1
        emu.fault("*", **fault)
        for b in (b1, b2):
            d = os.urandom(32)
            w = b.wrap(d)  # an apiserver restarting now gets its one Encrypt
            assert b.unwrap(w.ciphertext, w.key_id, {}).plaintext == d
            assert b.unwrap(old.ciphertext, old.key_id, {}).plaintext != b""
            held = len(b.intermediate_keys)
            b.refresh()
            assert len(b.intermediate_keys) == held  # unreachable: nothing dropped
        assert b2.unwrap(b1.wrap(b"k" * 32).ciphertext, None, {}).plaintext == b"k" * 32
        with pytest.raises(BackendUnavailable):  # no IK in memory: needs Akeyless
            cold.unwrap(old.ciphertext, old.key_id, {})
        with pytest.raises(SetupError):  # a plugin (re)started during the outage
            envelope_backend(make_backend, ak_env, call_timeout=1.0)
        for _ in range(3):
            b1.refresh()
        assert b1.status().healthy  # serves; the validation age tells the outage
        emu.clear_faults()
        b1.refresh()
        assert b1.validation_age() < 5


class TestRotation:
    def test_new_item_version_gives_new_ik_and_key_id(self, emu: Emulator, ak_env, make_backend):
        b, events = envelope_backend(make_backend, ak_env)
        old = b.wrap(b"a" * 32)
        assert emu.rotate_key(KEY) == 2
        emu.reset_calls()
        assert b.refresh() is True
        st = b.status()
        m = KEY_ID.match(st.key_id)
        assert m and m.group(1) == "2" and st.key_version == "2" and st.key_id != old.key_id
        enc = [r for r in emu.requests if r.endpoint == "encrypt"]
        assert [r.item_version for r in enc] == [2]  # the IK really is wrapped under version 2
        dec = [r for r in emu.requests if r.endpoint == "decrypt"]
        assert 2 in [r.item_version for r in dec]  # and this access id may unwrap it
        new = b.wrap(b"b" * 32)
        assert new.key_id == st.key_id and new.key_version == "2"
        assert b.unwrap(old.ciphertext, old.key_id, {}).plaintext == b"a" * 32
        assert [f["reason"] for n, f in events if n == "intermediate_key_created"] == ["startup", "key_rotation"]

    def test_usage_and_age_bounds_rotate_at_refresh_and_the_hard_limit_refuses(self, emu, ak_env, make_backend):
        b, events = envelope_backend(make_backend, ak_env)
        first = b.status().key_id
        b.refresh()
        assert b.status().key_id == first  # nothing due
        cur = b._iks.current
        assert cur is not None
        cur.wraps = intermediate.ROTATE_WRAPS
        assert b.refresh() is True
        second = b._iks.current
        assert second is not None and second.key_id != first
        second.created -= intermediate.ROTATE_AGE
        assert b.refresh() is True
        assert [f["reason"] for n, f in events if n == "intermediate_key_created"] == ["startup", "usage", "age"]
        third = b._iks.current
        assert third is not None
        third.wraps = intermediate.HARD_WRAPS
        with pytest.raises(KeyUnavailable, match="wrap limit"):
            b.wrap(os.urandom(32))

    def test_rotation_between_ik_wrap_and_check_wraps_it_again(self, emu: Emulator, ak_env, make_backend):
        """Akeyless used version 2 for a new IK labelled 1: it is wrapped again as 2."""
        b, _ = envelope_backend(make_backend, ak_env, refresh_interval=60.0)
        emu.reset_calls()
        emu.fault("describe-item", "latency", delay=0.5, times=1)
        ik = rotated_during_check(emu, b._new_ik, "usage")
        assert ik.version == 2 == emu.encrypt_versions()[result_fingerprint(ik.wrapped)]
        assert b._iks.current is ik and b.state.last_version == 2
        assert (emu.calls["encrypt"], emu.calls["describe-item"]) == (2, 2)

    def test_key_rotating_during_every_ik_check_keeps_the_current_ik(self, emu: Emulator, ak_env, make_backend):
        """Bounded: three wraps that each saw a newer version, then the current IK stays."""
        b, events = envelope_backend(make_backend, ak_env, refresh_interval=60.0)
        before = b._iks.current
        emu.reset_calls()
        emu.fault("describe-item", "latency", delay=0.25)
        err = error_while_rotating(emu, b._new_ik, "usage")
        assert isinstance(err, KeyUnavailable) and "rotated during each of 3" in err.message
        assert emu.calls["encrypt"] == 3 and b._iks.current is before
        assert [f["reason"] for n, f in events if n == "intermediate_key_created"] == ["startup"]


class TestRevocation:
    def test_revoked_credentials_drop_every_ik_at_next_refresh(self, emu: Emulator, ak_env, make_backend):
        b1, _ = envelope_backend(make_backend, ak_env)
        b2, events2 = envelope_backend(make_backend, ak_env)
        w = b1.wrap(os.urandom(32))
        b2.unwrap(w.ciphertext, w.key_id, {})
        assert len(b2.intermediate_keys) == 2
        revoke(emu, ak_env["AKEYLESS_ACCESS_ID"])
        b2.refresh()  # one refresh
        assert b2.intermediate_keys == []
        with pytest.raises(AccessDenied):  # fail closed: re-unwrapping is refused too
            b2.unwrap(w.ciphertext, w.key_id, {})
        with pytest.raises(KeyUnavailable):
            b2.wrap(os.urandom(32))
        st = b2.status()
        assert not st.healthy and "intermediate" in st.reason
        dropped = [f for n, f in events2 if n == "intermediate_key_dropped"]
        assert len(dropped) == 2 and all("access denied" in str(f["reason"]) for f in dropped)

    def test_removed_decrypt_permission_drops(self, emu: Emulator, ak_env, make_backend):
        b, _ = envelope_backend(make_backend, ak_env)
        access_id = ak_env["AKEYLESS_ACCESS_ID"]
        with emu.core.lock:
            ident = emu.core.identities[access_id]
            ident.capabilities = frozenset({"encrypt", "describe-item"})  # 403 on decrypt
        b.refresh()
        assert b.intermediate_keys == []  # and no replacement it could read without Akeyless
        with pytest.raises(KeyUnavailable):
            b.wrap(os.urandom(32))

    def test_disabled_version_drops_only_its_iks(self, emu: Emulator, ak_env, make_backend):
        b, _ = envelope_backend(make_backend, ak_env)
        old = b.wrap(b"o" * 32)
        emu.rotate_key(KEY)
        b.refresh()
        new = b.wrap(b"n" * 32)
        emu.set_version_state(KEY, 1, "Disabled")
        b.refresh()
        assert [ik.version for ik in b.intermediate_keys] == [2]
        assert b.unwrap(new.ciphertext, new.key_id, {}).plaintext == b"n" * 32
        with pytest.raises((KeyUnavailable, CiphertextError)):
            b.unwrap(old.ciphertext, old.key_id, {})


def test_metrics_report_mode_held_and_age(emu, ak_env, make_backend):
    metrics = Metrics()
    b = make_backend(ak_env, metrics=metrics, mode="envelope")
    r = metrics.registry
    assert r.get_sample_value("kms_appliance_akeyless_mode", {"mode": "envelope"}) == 1
    assert r.get_sample_value("kms_appliance_intermediate_keys") == 1
    b.refresh()
    age = r.get_sample_value("kms_appliance_intermediate_key_validation_age_seconds")
    assert age is not None and 0 <= age < 5
    assert r.get_sample_value("kms_appliance_intermediate_key_events_total", {"event": "validated"}) == 1

