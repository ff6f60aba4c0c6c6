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
    """An immutable snapshot of the loaded keyring; swapped whole on reload.

    Everything a call needs besides the nonce is computed here once, so a
    wrap or unwrap builds no header, AAD or version string per call.
    """

    __slots__ = ("aads", "ciphers", "current", "heads", "key_ids", "stat_key", "versions")

    def __init__(self, ring: keyring.Keyring, stat_key: tuple[int, ...]) -> None:
        header = envelope.header(envelope.BACKEND_LOCAL)
        self.ciphers = {e.version: AESGCM(e.material) for e in ring.entries}
        self.key_ids = {e.version: ring.key_id(e.version) for e in ring.entries}
        self.heads = {v: header + _VERSION.pack(v) for v in self.ciphers}
        self.aads = {v: self.heads[v] + self.key_ids[v].encode() for v in self.ciphers}
        self.versions = {v: str(v) for v in self.ciphers}
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
        v = st.current
        nonce = os.urandom(_NONCE)
        sealed = st.ciphers[v].encrypt(nonce, plaintext, st.aads[v])
        return Wrapped(st.heads[v] + nonce + sealed, st.key_ids[v], st.versions[v])

    def unwrap(
        self, ciphertext: bytes, key_id: str | None, annotations: Mapping[str, bytes]
    ) -> Unwrapped:
        _, payload = envelope.split(ciphertext, envelope.BACKEND_LOCAL)  # header is the canonical one
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
        try:
            plain = cipher.decrypt(nonce, payload[_VERSION.size + _NONCE :], st.aads[version])
        except InvalidTag:
            raise CiphertextError("ciphertext failed authentication") from None
        return Unwrapped(plain, own_id, st.versions[version])

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
