"""Ciphertexts Akeyless refuses: the right error, at about one remote call each (the explaining
describe-item is shared, at most one per EXPLAIN_EVERY, so a flood of forgeries costs no more)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from akeyless_emulator import Emulator
from kms_appliance.errors import CiphertextError, KeyUnavailable
from tests.support.emulator import KEY
from tests.support.forgery import claimed_key_id, relabel, tamper

N = 30


def _calls(emu: Emulator) -> tuple[int, int]:
    return emu.calls["decrypt"], emu.calls["describe-item"]


class TestRemoteCallsPerRefusal:
    def test_forged_ciphertexts_cost_one_decrypt_each(self, emu: Emulator, ak_env, make_backend) -> None:
        emu.rotate_key(KEY)  # versions 1 and 2, both enabled
        b = make_backend(ak_env, cache=False)
        w = b.wrap(os.urandom(32))  # labelled version 2
        forged = [tamper(w.ciphertext, i) for i in range(N - 6)]
        forged += [relabel(w.ciphertext, v) for v in (1, 0, 3, 9, 2**16, 2**32 - 1)]
        before = _calls(emu)
        for ct in forged:
            with pytest.raises(CiphertextError):
                b.unwrap(ct, claimed_key_id(ct, w.key_id), {})
        decrypts, describes = (a - z for a, z in zip(_calls(emu), before, strict=True))
        assert decrypts == N
        assert describes <= 1  # at most one explanation lookup per EXPLAIN_EVERY (5 s)

    def test_concurrent_refusals_share_one_describe(self, emu: Emulator, ak_env, make_backend) -> None:
        b = make_backend(ak_env, cache=False)
        w = b.wrap(os.urandom(32))
        before = _calls(emu)
        with ThreadPoolExecutor(16) as pool:
            calls = [pool.submit(b.unwrap, tamper(w.ciphertext, i), w.key_id, {}) for i in range(16)]
            assert all(isinstance(call.exception(30), CiphertextError) for call in calls)
        decrypts, describes = (a - z for a, z in zip(_calls(emu), before, strict=True))
        assert (decrypts, describes) == (16, 1)


class TestRelabelledVersion:
    """A version the key never had is a forged header: INVALID_ARGUMENT, not FAILED_PRECONDITION."""

    @pytest.mark.parametrize("version", [0, 2, 7, 2**32 - 1])
    def test_never_existing_version_is_a_ciphertext_error(self, emu: Emulator, ak_env,
                                                          make_backend, version: int) -> None:
        b = make_backend(ak_env, cache=False)
        w = b.wrap(os.urandom(32))
        ct = relabel(w.ciphertext, version)
        with pytest.raises(CiphertextError) as err:
            b.unwrap(ct, claimed_key_id(ct, w.key_id), {})
        assert not isinstance(err.value, KeyUnavailable)
        with pytest.raises(CiphertextError):
            b.unwrap(ct, None, {})  # KMS v1: no key_id on the wire


class TestDisabledVersionStillExplained:
    def test_disabled_after_the_last_describe_is_key_unavailable(self, emu: Emulator, ak_env, make_backend) -> None:
        """The first refusal after a quiet spell gets a fresh description."""
        b = make_backend(ak_env, cache=False)
        old = b.wrap(b"a" * 32)
        emu.rotate_key(KEY)
        emu.set_version_state(KEY, 1, "Disabled")  # the held state still says Enabled
        before = _calls(emu)
        with pytest.raises(KeyUnavailable, match="version 1 is Disabled"):
            b.unwrap(old.ciphertext, old.key_id, {})
        for _ in range(5):  # now held: no describe for these
            with pytest.raises(KeyUnavailable, match="version 1 is Disabled"):
                b.unwrap(old.ciphertext, old.key_id, {})
        decrypts, describes = (a - z for a, z in zip(_calls(emu), before, strict=True))
        assert (decrypts, describes) == (6, 1)
