"""Envelope mode's intermediate keys (IKs): format, local wrapping, the bounded store.

Why an IK: under KMS v2 a restarted kube-apiserver needs one successful
Encrypt before it serves any read, and in direct mode every Encrypt reaches
Akeyless. In envelope mode the plugin generates a random AES-256 key, has
Akeyless wrap it once, and wraps DEKs locally with it: Encrypt (and Decrypt
under a held IK) keep working while Akeyless is unreachable.

Ciphertext layout after the appliance's 5-byte header (backend id
``BACKEND_AKEYLESS_IK``)::

    item_version  uint32 BE   Akeyless item version that wrapped the IK
    ik_id         16 bytes    random; names the IK (and the key_id)
    wrapped_len   uint16 BE   1..MAX_WRAPPED
    wrapped       bytes       Akeyless's ciphertext of the IK, opaque
    nonce         12 bytes    random, AES-GCM
    sealed        n + 16      AES-GCM(IK) of the DEK, tag last

The "IK prefix" (header + item_version + ik_id) is Akeyless's encryption
context for the IK: Akeyless refuses to unwrap an IK under another id or
version. Everything before the nonce (prefix, wrapped_len, wrapped) is the
AES-GCM associated data of the DEK: no byte of a ciphertext can change
without failing authentication, on a plugin that holds the IK as on one
that must unwrap it first. The prefix differs in length and backend byte
from a direct-mode context, so an IK blob is never unwrapped as a DEK
(domain separation) nor the reverse.

Nothing here touches the SDK or the network: this module is pure, so the
fuzzer and unit tests exercise it without an emulator.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import CiphertextError, InvalidRequest, KeyUnavailable
from .. import envelope
from ..cache import SingleFlight
from .keystate import make_key_id

IK_BYTES = 32  # AES-256
IK_ID_BYTES = 16  # random ids: collisions are out of reach (2^-64 after 2^32 IKs)
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_WRAPPED = 512  # an Akeyless ciphertext of 32 bytes is ~75 bytes; the KMS limit is 1024
MAX_PLAINTEXT = 256  # DEKs and v2 seeds are 32 bytes; keeps every ciphertext < 1024 bytes
_HEAD = struct.Struct(">I16sH")
MIN_LEN = envelope.HEADER_LEN + _HEAD.size + 1 + NONCE_BYTES + TAG_BYTES + 1
CONTEXT_KEY = "kms-appliance-ik"

# Rotation bounds (docs/akeyless.md, "Envelope mode"). NIST SP 800-38D caps a key used with
# random 96-bit nonces at 2^32 encryptions; the nonce-collision probability after n wraps is
# about n^2 / 2^97, so 2^20 wraps (soft: a new IK at the next refresh) leave it below 2^-57
# and the hard stop at 2^28 (Encrypt refused until a new IK exists) below 2^-41.
ROTATE_WRAPS = 1 << 20
HARD_WRAPS = 1 << 28
ROTATE_AGE = 24 * 3600.0  # seconds: bounds what one IK protects and how long it is held
MAX_HELD = 256  # IKs held in memory (own and others'); LRU beyond


def ik_key_id(item_id: int, version: int, ik_id: bytes) -> str:
    """The key_id of one IK: the Akeyless item version that wraps it, then its id."""
    return f"{make_key_id(item_id, version)}:ik:{ik_id.hex()}"


def prefix(version: int, ik_id: bytes) -> bytes:
    """Header + item version + IK id: the IK's encryption context and the DEK's AAD."""
    return envelope.header(envelope.BACKEND_AKEYLESS_IK) + struct.pack(">I", version) + ik_id


class Parsed(NamedTuple):
    """An envelope-mode ciphertext taken apart (nothing checked cryptographically yet)."""

    prefix: bytes
    aad: bytes  # everything before the nonce
    version: int
    ik_id: bytes
    wrapped: bytes
    nonce: bytes
    sealed: bytes


def parse(ciphertext: bytes) -> Parsed:
    """Split a ciphertext; CiphertextError says which part is malformed, never its content."""
    head, payload = envelope.split(ciphertext, envelope.BACKEND_AKEYLESS_IK)
    if len(ciphertext) < MIN_LEN:
        raise CiphertextError("ciphertext is truncated")
    version, ik_id, wlen = _HEAD.unpack_from(payload)
    if version < 1:
        raise CiphertextError("ciphertext names item version 0")
    if not 1 <= wlen <= MAX_WRAPPED:
        raise CiphertextError("ciphertext has an impossible wrapped-key length")
    start = _HEAD.size
    wrapped = payload[start : start + wlen]
    rest = payload[start + wlen :]
    if len(wrapped) != wlen or len(rest) < NONCE_BYTES + TAG_BYTES + 1:
        raise CiphertextError("ciphertext is truncated")
    return Parsed(head + payload[:4 + IK_ID_BYTES], head + payload[:start + wlen], version,
                  ik_id, wrapped, rest[:NONCE_BYTES], rest[NONCE_BYTES:])


@dataclass(eq=False)
class IntermediateKey:
    """One IK held in memory: its AEAD, where it came from, when Akeyless last vouched for it.

    The clear key lives only inside the AESGCM object (which copies it); Python
    cannot reliably zero memory, so "forgetting" means dropping every reference.
    """

    ik_id: bytes
    version: int
    key_id: str
    wrapped: bytes
    aead: AESGCM = field(repr=False)
    digest: bytes = field(repr=False)  # SHA-256 of the clear IK, to compare a re-unwrap
    created: float = field(default_factory=time.monotonic)  # local: age bound for own IKs
    validated: float = field(default_factory=time.monotonic)  # last Akeyless success
    own: bool = False  # created by this process (the one new data is wrapped under)
    wraps: int = 0

    @property
    def prefix(self) -> bytes:
        return prefix(self.version, self.ik_id)

    def seal(self, plaintext: bytes) -> bytes:
        """A whole ciphertext of ``plaintext`` under this IK."""
        if not plaintext or len(plaintext) > MAX_PLAINTEXT:
            raise InvalidRequest(f"plaintext must be 1..{MAX_PLAINTEXT} bytes")
        self.wraps += 1  # under the GIL; a lost increment under a race only delays rotation
        if self.wraps > HARD_WRAPS:
            raise KeyUnavailable("intermediate key reached its wrap limit; waiting for a new one")
        nonce = os.urandom(NONCE_BYTES)
        aad = self.prefix + struct.pack(">H", len(self.wrapped)) + self.wrapped
        return aad + nonce + self.aead.encrypt(nonce, plaintext, aad)

    def open(self, parsed: Parsed) -> bytes:
        """The DEK, or CiphertextError if the tag does not verify."""
        try:
            return self.aead.decrypt(parsed.nonce, parsed.sealed, parsed.aad)
        except InvalidTag:
            raise CiphertextError("ciphertext failed authentication") from None

    def due(self, now: float) -> str | None:
        """Why this (own) IK should be replaced at the next refresh, or None."""
        if self.wraps >= ROTATE_WRAPS:
            return "usage"
        if now - self.created >= ROTATE_AGE:
            return "age"
        return None


def new_material() -> tuple[bytes, bytes]:
    """(ik_id, clear IK) from the OS CSPRNG."""
    return os.urandom(IK_ID_BYTES), os.urandom(IK_BYTES)


class KeyStore:
    """Held IKs: bounded LRU by IK id, single-flight loading, thread-safe.

    The current own IK is never evicted by LRU pressure (forged ids cannot
    push it out); it leaves only when replaced or dropped by validation.
    """

    def __init__(self, size: int = MAX_HELD,
                 on_change: Callable[[int], None] | None = None) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._keys: OrderedDict[bytes, IntermediateKey] = OrderedDict()
        self._flights: SingleFlight[IntermediateKey] = SingleFlight(self._lock)
        self._current: IntermediateKey | None = None
        self._on_change = on_change

    @property
    def current(self) -> IntermediateKey | None:
        return self._current

    def get(self, ik_id: bytes) -> IntermediateKey | None:
        with self._lock:
            return self._touch(ik_id)

    def get_or_load(self, ik_id: bytes, load: Callable[[], IntermediateKey]
                    ) -> tuple[IntermediateKey, bool]:
        """(IK, loaded_now); concurrent misses of one id share a single ``load``."""
        held = self.get(ik_id)  # the hit path, without building the miss path's closure
        if held is not None:
            return held, False
        ik, how = self._flights.get(ik_id, lambda: self._touch(ik_id), load, self.add)
        return ik, how == "loaded"

    def _touch(self, ik_id: bytes) -> IntermediateKey | None:
        ik = self._keys.get(ik_id)
        if ik is not None:
            self._keys.move_to_end(ik_id)
        return ik

    def add(self, ik: IntermediateKey, current: bool = False) -> None:
        with self._lock:
            self._keys[ik.ik_id] = ik
            self._keys.move_to_end(ik.ik_id)
            if current:
                self._current = ik
            for old in list(self._keys):
                if len(self._keys) <= self._size:
                    break
                if self._current is not None and old == self._current.ik_id:
                    continue
                del self._keys[old]
            count = len(self._keys)
        self._changed(count)

    def held(self) -> list[IntermediateKey]:
        with self._lock:
            return list(self._keys.values())

    def by_version(self) -> Mapping[int, list[IntermediateKey]]:
        groups: dict[int, list[IntermediateKey]] = {}
        for ik in self.held():
            groups.setdefault(ik.version, []).append(ik)
        return groups

    def drop(self, doomed: Iterable[IntermediateKey]) -> list[IntermediateKey]:
        """Forget these IKs (and the current one if among them); returns those removed."""
        removed: list[IntermediateKey] = []
        with self._lock:
            for ik in doomed:
                if self._keys.get(ik.ik_id) is ik:
                    del self._keys[ik.ik_id]
                    removed.append(ik)
                if self._current is ik:
                    self._current = None
            count = len(self._keys)
        self._changed(count)
        return removed

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._current = None
        self._changed(0)

    def oldest_validation(self) -> float | None:
        """Monotonic time of the least recent Akeyless validation among held IKs."""
        with self._lock:
            return min((ik.validated for ik in self._keys.values()), default=None)

    def __len__(self) -> int:
        return len(self._keys)

    def _changed(self, count: int) -> None:
        if self._on_change is not None:
            self._on_change(count)
