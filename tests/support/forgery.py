"""Forged Akeyless-backend ciphertexts: what a writer of etcd can hand the plugin to decrypt.

The backend's envelope is a 5-byte header, then the Akeyless item version (uint32 BE), then
what Akeyless returned (its GCM tag last). The backend's and the real process's refusal
tests forge the same way, so they prove the same refusals.
"""

from __future__ import annotations


def relabel(ciphertext: bytes, version: int) -> bytes:
    """The same ciphertext claiming item version ``version``."""
    return ciphertext[:5] + version.to_bytes(4, "big") + ciphertext[9:]


def tamper(ciphertext: bytes, i: int) -> bytes:
    """The ``i``-th of distinct one-byte changes inside Akeyless's GCM tag: all refused."""
    bad = bytearray(ciphertext)
    bad[-1 - (i % 16)] ^= 1 + i % 255
    return bytes(bad)


def claimed_key_id(ciphertext: bytes, key_id: str) -> str:
    """``key_id`` naming the version ``ciphertext`` claims (so it passes the plugin's key_id check)."""
    return f"{key_id.rsplit(':', 1)[0]}:{int.from_bytes(ciphertext[5:9], 'big')}"
