"""The Akeyless backend with the real SDK against the emulator over HTTPS."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from akeyless_emulator import Emulator
from kms_appliance.backends.akeyless.backend import ANNOTATION
from kms_appliance.backends.akeyless.health import HealthTracker
from kms_appliance.errors import (
    AccessDenied,
    BackendCorruption,
    BackendUnavailable,
    CiphertextError,
    KeyUnavailable,
    KmsError,
    Throttled,
)
from kms_appliance.metrics import Metrics
from tests.support.emulator import KEY
from tests.support.procs import eventually


class TestRoundTrip:
    """A key_id not this ciphertext's is refused (a relabelled version: test_rejected_ciphertext.py)."""

    def test_foreign_key_id_is_refused(self, emu, ak_env, make_backend):
        b = make_backend(ak_env, cache=False)
        w = b.wrap(os.urandom(32))
        with pytest.raises(CiphertextError):
            b.unwrap(w.ciphertext, w.key_id.replace(":1", ":9"), {})


def _whole_seconds(when: dt.datetime) -> float:
    return float(int(when.timestamp()))  # describe-item states whole seconds


class TestRotation:
    """A rotation in Akeyless is picked up by refresh(); old data keeps decrypting."""

    def test_refresh_picks_up_rotation(self, emu: Emulator, ak_env, make_backend):
        """Also: the KEK version's creation date travels from describe-item into the backend's state
        and status (the item's protection and rotation settings: test_akeyless_check.py)."""
        b = make_backend(ak_env, cache=False)
        v1 = _whole_seconds(emu.key(KEY).versions[1].creation_date)
        assert b.status().created == v1
        old = b.wrap(b"a" * 32)
        assert b.refresh() is False
        emu.key(KEY).versions[1].creation_date = emu.key(KEY).versions[1].creation_date.replace(year=2020)
        emu.rotate_key(KEY)
        assert b.refresh() is True
        key = emu.key(KEY)
        assert b.status().key_version == "2"
        assert b.status().created == _whole_seconds(key.versions[2].creation_date)
        assert b.state.created[1] == _whole_seconds(key.versions[1].creation_date) < v1
        new = b.wrap(b"b" * 32)
        assert new.key_id != old.key_id
        assert new.key_id == b.status().key_id
        assert new.annotations[ANNOTATION] == b"2"
        u = b.unwrap(old.ciphertext, old.key_id, old.annotations)
        assert (u.plaintext, u.key_version, u.key_id) == (b"a" * 32, "1", old.key_id)

    def test_disabled_version_is_key_unavailable(self, emu: Emulator, ak_env, make_backend):
        b = make_backend(ak_env)
        old = b.wrap(b"a" * 32)
        b.unwrap(old.ciphertext, old.key_id, {})  # now cached
        emu.rotate_key(KEY)
        emu.set_version_state(KEY, 1, "Disabled")
        b.refresh()  # drops cached DEKs of the disabled version
        with pytest.raises(KeyUnavailable, match="version 1 is Disabled"):
            b.unwrap(old.ciphertext, old.key_id, {})


class TestTokens:
    """Tokens are cached, renewed once on 401, never per call."""

    def test_token_expiry_mid_run_reauthenticates_once(self, emu: Emulator, ak_env, make_backend):
        b = make_backend(ak_env, cache=False)
        w = b.wrap(os.urandom(32))
        auths = emu.calls["auth"]
        for _ in range(3):
            b.unwrap(w.ciphertext, w.key_id, {})
        assert emu.calls["auth"] == auths  # cached token, no auth per call
        emu.expire_tokens()
        b.unwrap(w.ciphertext, w.key_id, {})
        assert emu.calls["auth"] == auths + 1

    def test_short_lived_token_is_renewed_in_background(self, emu: Emulator, ak_env, make_backend):
        emu.set_token_ttl(2.0)
        m = Metrics()
        b = make_backend(ak_env, metrics=m)
        auths = emu.calls["auth"]
        assert eventually(lambda: emu.calls["auth"] > auths, 10, 0.1)
        assert 0 < m.registry.get_sample_value("kms_appliance_token_expiry_seconds") <= 2.0
        b.wrap(os.urandom(32))


FAULTS = [
    ({"status": 403}, AccessDenied, "user"),
    ({"status": 404}, KeyUnavailable, "user"),
    ({"status": 400}, CiphertextError, "user"),
    ({"status": 429}, Throttled, "throttled"),
    ({"status": 503}, BackendUnavailable, "unavailable"),
    ({"status": 500}, BackendUnavailable, "unavailable"),
    ({"kind": "reset"}, BackendUnavailable, "unavailable"),
    ({"kind": "hang", "delay": 5.0}, BackendUnavailable, "unavailable"),
    ({"kind": "malformed"}, BackendCorruption, "corrupt"),
    ({"kind": "wrong_length"}, BackendCorruption, "corrupt"),
]


class TestFaults:
    """Each fault class maps to its typed error and metric label, and the backend recovers."""

    @pytest.mark.parametrize(("fault", "error", "outcome"), FAULTS, ids=[str(f[0]) for f in FAULTS])
    def test_decrypt_fault(self, emu: Emulator, ak_env, make_backend, fault, error, outcome):
        m = Metrics()
        b = make_backend(ak_env, metrics=m, cache=False, call_timeout=1.0)
        w = b.wrap(os.urandom(32))
        emu.fault("decrypt", **fault)
        with pytest.raises(error) as info:
            b.unwrap(w.ciphertext, w.key_id, {})
        assert info.value.outcome == outcome
        labels = {"backend": "akeyless", "operation": "decrypt", "outcome": outcome}
        assert (m.registry.get_sample_value("kms_appliance_backend_calls_total", labels) or 0) >= 1
        assert b.status().healthy  # one failed call never flips health
        emu.clear_faults()
        assert b.unwrap(w.ciphertext, w.key_id, {}).plaintext  # recovered

    def test_one_503_is_retried_within_the_deadline(self, emu: Emulator, ak_env, make_backend):
        b = make_backend(ak_env, cache=False)
        w = b.wrap(os.urandom(32))
        emu.reset_calls()
        emu.fault("decrypt", status=503, times=1)
        assert b.unwrap(w.ciphertext, w.key_id, {}).plaintext
        assert emu.calls["decrypt"] == 2

    @pytest.mark.parametrize(("fault", "calls"), [({"status": 503}, 3), ({"kind": "reset"}, 3),
                                                   ({"status": 403}, 1), ({"status": 400}, 1)])
    def test_retries_are_bounded_and_only_where_safe(self, emu: Emulator, ak_env, make_backend, fault, calls):
        b = make_backend(ak_env, cache=False)
        w = b.wrap(os.urandom(32))
        emu.reset_calls()
        emu.fault("decrypt", **fault)
        with pytest.raises(KmsError):
            b.unwrap(w.ciphertext, w.key_id, {})
        assert emu.calls["decrypt"] == calls

    def test_a_hanging_server_is_cut_at_the_call_deadline(self, emu: Emulator, ak_env, make_backend):
        b = make_backend(ak_env, cache=False, call_timeout=1.0)
        w = b.wrap(os.urandom(32))
        emu.fault("decrypt", kind="hang", delay=10.0)
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            b.unwrap(w.ciphertext, w.key_id, {})
        assert time.monotonic() - start < 1.6


class TestCache:
    """The decrypt cache serves through an outage, and coalesces concurrent misses."""

    def test_cache_serves_during_outage_and_coalesces_50_concurrent_misses(self, emu: Emulator, ak_env,
                                                                           make_backend):
        b = make_backend(ak_env)
        deks = [os.urandom(32) for _ in range(5)]
        wrapped = [b.wrap(d) for d in deks]
        for w in wrapped:
            assert not b.unwrap(w.ciphertext, w.key_id, {}).cached
        emu.fault("*", kind="reset")
        for w, d in zip(wrapped, deks, strict=True):
            u = b.unwrap(w.ciphertext, None, {})
            assert u.cached
            assert u.plaintext == d
        emu.clear_faults()
        fresh = b.wrap(os.urandom(32))
        emu.fault("*", status=503)
        with pytest.raises(BackendUnavailable):
            b.unwrap(fresh.ciphertext, None, {})
        emu.clear_faults()
        emu.reset_calls()
        emu.fault("decrypt", kind="latency", delay=0.3)
        barrier = threading.Barrier(50)

        def worker() -> bytes:
            barrier.wait(timeout=10)
            return b.unwrap(fresh.ciphertext, fresh.key_id, {}).plaintext

        with ThreadPoolExecutor(50) as pool:
            calls = [pool.submit(worker) for _ in range(50)]
            results = [call.result(20) for call in calls]
        assert len(set(results)) == 1
        assert emu.calls["decrypt"] == 1


class TestHealth:
    """Sustained unavailability (not one failure, not throttling or a refusal) or an unusable key makes
    status unhealthy."""

    def test_outage_then_recovery_then_a_disabled_key(self, emu: Emulator, ak_env, make_backend):
        b = make_backend(ak_env)
        b._health = HealthTracker(failures=3, grace=0.0)  # production grace is 30 s
        emu.fault("describe-item", status=429)
        for _ in range(4):
            assert b.refresh() is False
        assert b.status().healthy  # throttling never counts
        emu.clear_faults()
        emu.fault("*", kind="reset")
        b.refresh()
        b.refresh()
        assert b.status().healthy  # two failures are not sustained
        emu.clear_faults()
        for status in (429, 403):  # neither counts, nor ends the streak of unavailability
            emu.fault("describe-item", status=status)
            b.refresh()
            emu.clear_faults()
        assert b.status().healthy
        emu.fault("*", kind="reset")
        b.refresh()
        assert not b.status().healthy
        assert b.status().reason == "akeyless unavailable"
        emu.clear_faults()
        b.refresh()
        assert b.status().healthy
        emu.set_key_enabled(KEY, False)  # the key itself unusable: unhealthy at the next refresh
        b.refresh()
        st = b.status()
        assert not st.healthy
        assert "disabled" in st.reason
