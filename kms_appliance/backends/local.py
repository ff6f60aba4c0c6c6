"""The local keyring backend: AES-256-GCM under versioned keys from a file.

The embedded default for development, demos and tests. Ciphertext layout
after the envelope header: version (uint32, big-endian) | nonce (12) |
AES-GCM ciphertext+tag. The associated data binds the header, the version
and the key_id, so moving a ciphertext to another keyring, version or format
fails authentication instead of decrypting to garbage.
"""

from __future__ import annotations

import calendar
import os
import struct
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import CiphertextError, KeyUnavailable, SetupError
from . import envelope, keyring
from .base import KeyStatus, Unwrapped, Wrapped

_VERSION = struct.Struct(">I")
_NONCE = 12
_HEAD = envelope.HEADER_LEN + _VERSION.size  # envelope header | version: names the key
_MIN_LEN = _HEAD + _NONCE + 16


class _Key(NamedTuple):
    """One key version with everything a call needs besides the nonce, computed once."""

    cipher: AESGCM
    key_id: str
    head: bytes  # what every ciphertext under this version starts with
    aad: bytes
    version: str
    created: float | None  # the keyring entry's "created", Unix time


class _State:
    """An immutable snapshot of the loaded keyring; swapped whole on reload.

    Keys are found by the ciphertext's first bytes in one dict lookup, so an
    unwrap builds no header, AAD or version string per call.
    """

    __slots__ = ("by_head", "current", "stat_key")

    def __init__(self, ring: keyring.Keyring, stat_key: tuple[int, ...]) -> None:
        header = envelope.header(envelope.BACKEND_LOCAL)
        keys = {}
        for e in ring.entries:
            head = header + _VERSION.pack(e.version)
            key_id = ring.key_id(e.version)
            keys[e.version] = _Key(AESGCM(e.material), key_id, head, head + key_id.encode(),
                                   str(e.version), _created(e.created))
        self.by_head = {k.head: k for k in keys.values()}
        self.current = keys[ring.current.version]
        self.stat_key = stat_key


def _created(text: str) -> float | None:
    """The keyring's UTC timestamp (keyring._now's format); None if absent or not that."""
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def _stat_key(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class LocalBackend:
    """KeyBackend over a keyring file; picks up rotations on refresh()."""

    name = "local"
    # wrap, unwrap and status only compute on keys in memory (reload runs on the refresh
    # thread and swaps _state whole): the server may run these calls in its event loop.
    in_memory = True

    def __init__(self, path: Path, refresh_interval: float = 5.0) -> None:
        self._path = path
        self.refresh_interval = refresh_interval
        self._lock = threading.Lock()
        self._state = self._load()

    def _load(self) -> _State:
        ring = keyring.load(self._path)
        return _State(ring, _stat_key(self._path))

    def wrap(self, plaintext: bytes) -> Wrapped:
        key = self._state.current
        nonce = os.urandom(_NONCE)
        sealed = key.cipher.encrypt(nonce, plaintext, key.aad)
        return Wrapped(key.head + nonce + sealed, key.key_id, key.version)

    def unwrap(
        self, ciphertext: bytes, key_id: str | None, annotations: Mapping[str, bytes]
    ) -> Unwrapped:
        key = self._state.by_head.get(ciphertext[:_HEAD])
        if key is None:
            raise self._unknown(ciphertext)
        if len(ciphertext) < _MIN_LEN:
            raise CiphertextError("ciphertext is truncated")
        if key_id is not None and key_id != key.key_id:
            raise CiphertextError("ciphertext does not belong to the given key_id")
        try:
            plain = key.cipher.decrypt(ciphertext[_HEAD : _HEAD + _NONCE],
                                       ciphertext[_HEAD + _NONCE :], key.aad)
        except InvalidTag:
            raise CiphertextError("ciphertext failed authentication") from None
        return Unwrapped(plain, key.key_id, key.version)

    @staticmethod
    def _unknown(ciphertext: bytes) -> Exception:
        """Why no key matches: not ours, another backend or format, too short, or a version we lack."""
        _, payload = envelope.split(ciphertext, envelope.BACKEND_LOCAL)  # raises for the header
        if len(payload) < _MIN_LEN - envelope.HEADER_LEN:
            return CiphertextError("ciphertext is truncated")
        (version,) = _VERSION.unpack_from(payload)
        return KeyUnavailable(f"key version {version} is not in the keyring")

    def status(self) -> KeyStatus:
        key = self._state.current
        return KeyStatus(key.key_id, str(self._path), key.version, True, created=key.created)

    def refresh(self) -> bool:
        """Reload the keyring if the file changed; a bad file keeps the old state."""
        with self._lock:
            try:
                if _stat_key(self._path) == self._state.stat_key:
                    return False
                new = self._load()
            except OSError as exc:  # missing or unreadable for a moment (an edit, a move)
                raise SetupError(f"keyring {self._path} cannot be read: {exc.strerror}") from None
            old, self._state = self._state, new
            return new.current.version != old.current.version

    def close(self) -> None:
        self._state.by_head.clear()
