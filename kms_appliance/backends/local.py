"""The local keyring backend: AES-256-GCM under versioned keys from a file.

The embedded default for development, demos and tests. Ciphertext layout
after the envelope header: version (uint32, big-endian) | nonce (12) |
AES-GCM ciphertext+tag. The associated data binds the header, the version
and the key_id, so moving a ciphertext to another keyring, version or format
fails authentication instead of decrypting to garbage.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import CiphertextError, KeyUnavailable, StartupError
from . import envelope, keyring
from .base import KeyStatus, Unwrapped, Wrapped

_VERSION = struct.Struct(">I")
_NONCE = 12
_MIN_PAYLOAD = _VERSION.size + _NONCE + 16


class _State:
    """An immutable snapshot of the loaded keyring; swapped whole on reload."""

    __slots__ = ("ciphers", "current", "key_ids", "stat_key")

    def __init__(self, ring: keyring.Keyring, stat_key: tuple[int, ...]) -> None:
        self.ciphers = {e.version: AESGCM(e.material) for e in ring.entries}
        self.key_ids = {e.version: ring.key_id(e.version) for e in ring.entries}
        self.current = ring.current.version
        self.stat_key = stat_key


def _stat_key(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class LocalBackend:
    """KeyBackend over a keyring file; picks up rotations on refresh()."""

    name = "local"

    def __init__(self, path: Path, refresh_interval: float = 5.0) -> None:
        self._path = path
        self.refresh_interval = refresh_interval
        self._lock = threading.Lock()
        self._state = self._load()

    def _load(self) -> _State:
        ring = keyring.load(self._path)
        return _State(ring, _stat_key(self._path))

    def wrap(self, plaintext: bytes) -> Wrapped:
        st = self._state
        version = st.current
        head = envelope.header(envelope.BACKEND_LOCAL) + _VERSION.pack(version)
        nonce = os.urandom(_NONCE)
        key_id = st.key_ids[version]
        sealed = st.ciphers[version].encrypt(nonce, plaintext, head + key_id.encode())
        return Wrapped(head + nonce + sealed, key_id, str(version))

    def unwrap(
        self, ciphertext: bytes, key_id: str | None, annotations: Mapping[str, bytes]
    ) -> Unwrapped:
        head, payload = envelope.split(ciphertext, envelope.BACKEND_LOCAL)
        if len(payload) < _MIN_PAYLOAD:
            raise CiphertextError("ciphertext is truncated")
        (version,) = _VERSION.unpack_from(payload)
        st = self._state
        cipher = st.ciphers.get(version)
        if cipher is None:
            raise KeyUnavailable(f"key version {version} is not in the keyring")
        own_id = st.key_ids[version]
        if key_id is not None and key_id != own_id:
            raise CiphertextError("ciphertext does not belong to the given key_id")
        nonce = payload[_VERSION.size : _VERSION.size + _NONCE]
        aad = head + payload[: _VERSION.size] + own_id.encode()
        try:
            plain = cipher.decrypt(nonce, payload[_VERSION.size + _NONCE :], aad)
        except InvalidTag:
            raise CiphertextError("ciphertext failed authentication") from None
        return Unwrapped(plain, own_id, str(version))

    def status(self) -> KeyStatus:
        st = self._state
        return KeyStatus(st.key_ids[st.current], str(self._path), str(st.current), True)

    def refresh(self) -> bool:
        """Reload the keyring if the file changed; a bad file keeps the old state."""
        with self._lock:
            try:
                if _stat_key(self._path) == self._state.stat_key:
                    return False
                new = self._load()
            except OSError as exc:  # missing or unreadable for a moment (an edit, a move)
                raise StartupError(f"keyring {self._path} cannot be read: {exc.strerror}") from None
            old, self._state = self._state, new
            return new.current != old.current

    def close(self) -> None:
        self._state.ciphers.clear()
