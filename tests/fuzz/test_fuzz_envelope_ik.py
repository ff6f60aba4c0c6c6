"""Fuzz the Akeyless envelope-mode ciphertext (intermediate.parse and ModalBackend.unwrap).

Mutations of valid ciphertexts of two IKs go through the backend's real unwrap, with Akeyless
replaced by a stand-in that unwraps exactly the IK blobs it issued (as Akeyless does) and
refuses the rest (400). An accepted input must be byte for byte an original and yield its DEK;
a refused one raises CiphertextError with a fixed message quoting nothing of the input.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_appliance import errors
from kms_appliance.backends import envelope
from kms_appliance.backends.akeyless import intermediate
from kms_appliance.backends.akeyless.classify import CiphertextRejected
from kms_appliance.backends.akeyless.envelope_mode import ModalBackend
from kms_appliance.backends.akeyless.keystate import KeyState
from kms_appliance.metrics import Metrics
from tests.fuzz import engine
from tests.fuzz.harness import EXAMPLES, Tally, no_leak

MESSAGES = re.compile(
    r"^(ciphertext was not produced by kms-appliance|unsupported ciphertext format \d+|"
    r"ciphertext belongs to the (local|akeyless|akeyless-envelope|unknown backend \d+) backend|"
    r"ciphertext is truncated|ciphertext names item version 0|"
    r"ciphertext has an impossible wrapped-key length|ciphertext failed authentication|"
    r"ciphertext names another item version than its key|"
    r"Akeyless decrypt: ciphertext rejected \(400\))$")


class OfflineBackend(ModalBackend):
    """ModalBackend's unwrap logic with Akeyless replaced by a dictionary of issued IKs."""

    def __init__(self) -> None:  # no client, no auth: only what unwrap touches
        self.mode = "envelope"
        self.key_name = "/k"
        self._metrics = Metrics()
        self._sink = None
        self._early = []
        self._local = threading.local()
        self._cache = None
        self._state = KeyState("/k", 7, "AES256GCM", 2, True, {1: "Enabled", 2: "Enabled"})
        self._iks = intermediate.KeyStore(size=4)
        self.issued: dict[tuple[bytes, bytes], bytes] = {}

    def issue(self, version: int) -> intermediate.IntermediateKey:
        """An IK 'wrapped by Akeyless': the blob is random, the stand-in remembers it."""
        ik_id, clear = intermediate.new_material()
        blob = os.urandom(75)
        pre = intermediate.prefix(version, ik_id)
        self.issued[(pre, blob)] = clear
        key_id = intermediate.ik_key_id(7, version, ik_id)
        return intermediate.IntermediateKey(ik_id, version, key_id, blob, AESGCM(clear), b"")

    def _unwrap_remote(self, version: int, pre: bytes, blob: bytes) -> bytes:
        clear = self.issued.get((pre, blob))
        if clear is None:
            raise CiphertextRejected("Akeyless decrypt: ciphertext rejected (400)")
        return clear

    def _decrypt_remote(self, prefix: bytes, blob: bytes, version: int, length: int) -> bytes:
        raise CiphertextRejected("Akeyless decrypt: ciphertext rejected (400)")

    def _explain_rejection(self, version: int) -> None:
        return None

    def _emit(self, name: str, ik: intermediate.IntermediateKey, **fields: object) -> None:
        return None


def _unwrap_ok(b: OfflineBackend, data: bytes, originals: Mapping[bytes, bytes],
               deks: list[bytes], t: Tally) -> None:
    try:
        out = t.timed(lambda: b.unwrap(data, None, {}))
    except errors.CiphertextError as exc:
        assert MESSAGES.match(exc.message), exc.message
        no_leak(exc.message, data, *deks, *b.issued.values())  # no DEK, no clear IK
        t.count("refused")
        return
    except errors.KmsError as exc:  # the direct-format branch may not raise anything else
        raise AssertionError(f"unexpected {type(exc).__name__}: {exc.message}") from None
    assert data in originals, "a modified ciphertext was accepted"
    assert out.plaintext == originals[data]
    t.count("accepted")


def test_envelope_ciphertext_volume() -> None:
    b = OfflineBackend()
    own = b.issue(2)
    b._iks.add(own, current=True)
    foreign = b.issue(1)  # held by "another plugin": first use unwraps it through the stand-in
    originals: dict[bytes, bytes] = {}
    deks: list[bytes] = []
    for ik in (own, foreign):
        for n in (1, 32, 32, 64):
            dek = os.urandom(n)
            originals[ik.seal(dek)] = dek
            deks.append(dek)
    corpus = [*originals, envelope.header(envelope.BACKEND_AKEYLESS) + os.urandom(60), b""]
    assert all(len(c) < 1024 for c in originals)
    t = Tally("parser: akeyless envelope ciphertext")
    m = engine.Mutator(corpus, engine.SEED, 1100)
    engine.campaign(t.target, EXAMPLES, lambda i: m.next(),
                    lambda d: _unwrap_ok(b, d, originals, deks, t))
    t.report(EXAMPLES)
    assert t.codes.get("accepted", 0) > 0 and t.codes.get("refused", 0) > EXAMPLES // 2
    # forged IK ids cost one stand-in call each, never evict the current IK
    assert b._iks.current is own and b._iks.get(own.ik_id) is own


def test_valid_ciphertexts_under_every_bound() -> None:
    """Smallest and largest plaintext, largest wrapped blob: parse round-trips, < 1024 bytes."""
    b = OfflineBackend()
    ik = b.issue(2)
    ik.wrapped = os.urandom(intermediate.MAX_WRAPPED)
    for n in (1, intermediate.MAX_PLAINTEXT):
        dek = os.urandom(n)
        ct = ik.seal(dek)
        assert len(ct) < 1024
        p = intermediate.parse(ct)
        assert (p.version, p.ik_id, p.wrapped) == (2, ik.ik_id, ik.wrapped)
        assert ik.open(p) == dek
