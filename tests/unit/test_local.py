"""Local backend: AES-GCM with the key_id bound, rotation, clear failures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kms_appliance.backends import envelope, keyring
from kms_appliance.backends.local import LocalBackend
from kms_appliance.errors import CiphertextError, KeyUnavailable


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    path = tmp_path / "k.json"
    keyring.init(path)
    return path


@pytest.fixture
def backend(ring: Path) -> LocalBackend:
    return LocalBackend(ring)


def test_round_trip_and_header(backend: LocalBackend) -> None:
    seed = os.urandom(32)
    w = backend.wrap(seed)
    assert w.ciphertext.startswith(envelope.header(envelope.BACKEND_LOCAL))
    assert seed not in w.ciphertext
    out = backend.unwrap(w.ciphertext, w.key_id, {})
    assert out.plaintext == seed
    assert out.key_id == w.key_id == backend.status().key_id
    assert out.key_version == "1"


def test_nonce_is_fresh(backend: LocalBackend) -> None:
    assert backend.wrap(b"x" * 32).ciphertext != backend.wrap(b"x" * 32).ciphertext


def test_rotation_is_picked_up_and_old_data_still_unwraps(ring: Path, backend: LocalBackend) -> None:
    old = backend.wrap(b"old-dek-" * 4)
    assert backend.refresh() is False
    keyring.rotate(ring)
    assert backend.refresh() is True
    new = backend.wrap(b"new-dek-" * 4)
    assert new.key_id != old.key_id
    assert backend.status().key_id == new.key_id
    assert backend.unwrap(old.ciphertext, old.key_id, {}).plaintext == b"old-dek-" * 4
    assert backend.unwrap(old.ciphertext, None, {}).key_version == "1"


def test_every_tampered_byte_is_detected(backend: LocalBackend) -> None:
    w = backend.wrap(os.urandom(32))
    for i in range(len(w.ciphertext)):
        bad = bytearray(w.ciphertext)
        bad[i] ^= 0x01
        with pytest.raises((CiphertextError, KeyUnavailable)):
            backend.unwrap(bytes(bad), None, {})


def test_truncation_at_every_length_is_detected(backend: LocalBackend) -> None:
    w = backend.wrap(os.urandom(32))
    for n in range(len(w.ciphertext)):
        with pytest.raises(CiphertextError):
            backend.unwrap(w.ciphertext[:n], None, {})


def test_foreign_keyring_ciphertext_fails(tmp_path: Path, backend: LocalBackend) -> None:
    other = tmp_path / "other.json"
    keyring.init(other)
    w = LocalBackend(other).wrap(os.urandom(32))
    with pytest.raises(CiphertextError):
        backend.unwrap(w.ciphertext, None, {})
    with pytest.raises(CiphertextError):
        backend.unwrap(w.ciphertext, backend.status().key_id, {})


def test_wrong_key_id_is_refused(backend: LocalBackend) -> None:
    w = backend.wrap(os.urandom(32))
    with pytest.raises(CiphertextError, match="key_id"):
        backend.unwrap(w.ciphertext, w.key_id + "x", {})


def test_unknown_version_is_key_unavailable(backend: LocalBackend) -> None:
    w = backend.wrap(os.urandom(32))
    bad = w.ciphertext[:5] + (99).to_bytes(4, "big") + w.ciphertext[9:]
    with pytest.raises(KeyUnavailable, match="version 99"):
        backend.unwrap(bad, None, {})


@pytest.mark.parametrize("blob", [b"", b"\x8aKA", b"\x8aKA\x02\x01" + b"\0" * 40,
                                  b"\x8aKA\x01\x02" + b"\0" * 40, b"k8s:enc:aescbc:v1:" + b"\0" * 40])
def test_foreign_formats_are_named(backend: LocalBackend, blob: bytes) -> None:
    with pytest.raises(CiphertextError):
        backend.unwrap(blob, None, {})


def test_errors_carry_no_key_material(ring: Path, backend: LocalBackend) -> None:
    material = keyring.load(ring).entries[0].material
    w = backend.wrap(os.urandom(32))
    with pytest.raises(CiphertextError) as info:
        backend.unwrap(w.ciphertext[:-1] + bytes([w.ciphertext[-1] ^ 1]), None, {})
    assert material.hex() not in str(info.value)
    assert str(material) not in str(info.value)


def test_unparsable_created_is_unknown(ring: Path) -> None:
    """The "key not rotated" alert's source (its value read through the real process:
    tests/integration/test_observability.py::test_key_age_survives_restart_and_follows_rotation)."""
    doc = json.loads(ring.read_text())
    doc["keys"][0]["created"] = "last tuesday"
    ring.write_text(json.dumps(doc))
    assert LocalBackend(ring).status().created is None
