"""intermediate.py without Akeyless: the envelope format, the IK's seal/open, the held-IK store."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_appliance.backends import envelope
from kms_appliance.backends.akeyless import intermediate as im
from kms_appliance.errors import CiphertextError, InvalidRequest, KeyUnavailable


def make_ik(version: int = 1) -> im.IntermediateKey:
    ik_id, clear = im.new_material()
    return im.IntermediateKey(ik_id, version, im.ik_key_id(9, version, ik_id), os.urandom(75),
                              AESGCM(clear), hashlib.sha256(clear).digest())


def test_seal_parse_open_round_trip_and_layout() -> None:
    ik = make_ik(3)
    dek = os.urandom(32)
    ct = ik.seal(dek)
    assert ct.startswith(envelope.header(envelope.BACKEND_AKEYLESS_IK))
    p = im.parse(ct)
    assert (p.version, p.ik_id, p.wrapped) == (3, ik.ik_id, ik.wrapped)
    assert p.prefix == ik.prefix and p.aad == ct[: len(ct) - 12 - 48]
    assert ik.open(p) == dek and dek not in ct
    assert ik.key_id == f"akeyless:9:3:ik:{ik.ik_id.hex()}"


def test_every_byte_is_authenticated() -> None:
    ik = make_ik()
    ct = ik.seal(b"d" * 32)
    for i in range(envelope.HEADER_LEN, len(ct)):
        bad = bytearray(ct)
        bad[i] ^= 0x80
        with pytest.raises(CiphertextError):
            ik.open(im.parse(bytes(bad)))


@pytest.mark.parametrize("cut", [1, 12, 30, 100])
def test_truncation_is_refused(cut: int) -> None:
    ct = make_ik().seal(b"x" * 32)
    with pytest.raises(CiphertextError):
        make_ik().open(im.parse(ct[:-cut]))


def test_plaintext_bounds() -> None:
    """The hard wrap limit is refused through the backend: tests/integration/akeyless/
    test_akeyless_envelope.py::TestRotation::test_usage_and_age_bounds_rotate_at_refresh_and_the_hard_limit_refuses."""
    ik = make_ik()
    with pytest.raises(InvalidRequest):
        ik.seal(b"")
    with pytest.raises(InvalidRequest):
        ik.seal(b"x" * (im.MAX_PLAINTEXT + 1))


def test_rotation_due_at_exactly_its_age() -> None:
    """Usage at ROTATE_WRAPS, and either bound through refresh: test_akeyless_envelope.py as above."""
    ik = make_ik()
    # A whole-second creation time: with monotonic()'s, (created + age) - created can round to
    # just under the age, and the boundary check below would depend on the clock's value.
    ik.created = 1000.0
    assert ik.due(ik.created) is None
    assert ik.due(ik.created + im.ROTATE_AGE) == "age"


def test_store_lru_never_evicts_the_current_key() -> None:
    counts: list[int] = []
    store = im.KeyStore(size=3, on_change=counts.append)
    own = make_ik()
    store.add(own, current=True)
    others = [make_ik() for _ in range(10)]
    for ik in others:
        store.add(ik)
    assert store.current is own and store.get(own.ik_id) is own
    assert len(store) == 3 and counts[-1] == 3
    assert {ik.ik_id for ik in store.held()} == {own.ik_id, others[-1].ik_id, others[-2].ik_id}
    store.drop([own])
    assert store.current is None and len(store) == 2
    store.clear()
    assert len(store) == 0 and counts[-1] == 0


def test_store_single_flight() -> None:
    store = im.KeyStore()
    ik = make_ik()
    started, release = threading.Event(), threading.Event()
    calls = []

    def load() -> im.IntermediateKey:
        calls.append(1)
        started.set()
        release.wait(5)
        return ik

    results: list[tuple[im.IntermediateKey, bool]] = []
    first = threading.Thread(target=lambda: results.append(store.get_or_load(ik.ik_id, load)))
    first.start()
    assert started.wait(5)
    followers = [threading.Thread(target=lambda: results.append(store.get_or_load(ik.ik_id, load)))
                 for _ in range(5)]
    for t in followers:
        t.start()
    release.set()
    for t in (first, *followers):
        t.join(5)
    assert len(calls) == 1 and len(results) == 6
    assert all(r[0] is ik for r in results) and sum(r[1] for r in results) == 1


def test_store_failed_load_is_not_kept() -> None:
    store = im.KeyStore()

    def boom() -> im.IntermediateKey:
        raise KeyUnavailable("refused")

    with pytest.raises(KeyUnavailable):
        store.get_or_load(b"i" * 16, boom)
    assert len(store) == 0
    ik = make_ik()
    assert store.get_or_load(b"i" * 16, lambda: ik) == (ik, True)


def test_oldest_validation() -> None:
    store = im.KeyStore()
    assert store.oldest_validation() is None
    a, b = make_ik(), make_ik()
    a.validated, b.validated = 10.0, 5.0
    store.add(a)
    store.add(b)
    assert store.oldest_validation() == 5.0
