"""The seam between the gRPC servicers and whatever holds the KEK.

Servicers only translate protobuf to these plain types and back; a backend
never sees a protobuf or a gRPC context. Keeping the protocol this small is
what lets the local keyring, Akeyless and test fakes be swapped freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable

_NO_ANNOTATIONS: Mapping[str, bytes] = MappingProxyType({})


class Wrapped(NamedTuple):
    """The result of wrapping a DEK (or a v2 DEK seed) under the current KEK.

    A NamedTuple rather than a frozen dataclass: one is built per call, and
    that costs a third of a frozen dataclass's construction.
    """

    ciphertext: bytes
    key_id: str
    key_version: str
    annotations: Mapping[str, bytes] = _NO_ANNOTATIONS


class Unwrapped(NamedTuple):
    """The result of unwrapping: the DEK and which KEK version it was under."""

    plaintext: bytes
    key_id: str
    key_version: str
    cached: bool = False


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What Status and the health endpoints report, from state already held.

    ``healthy`` reflects sustained ability to serve, not the last call:
    one failed or throttled call must not flip it.
    """

    key_id: str
    key_name: str
    key_version: str
    healthy: bool
    reason: str = "ok"
    # When the current key version was created (Unix time) as its holder says (Akeyless
    # describe-item, the keyring's "created"); None if unknown. Feeds the rotation-age metric.
    created: float | None = None


@runtime_checkable
class KeyBackend(Protocol):
    """What a KEK holder must do. Implementations must be thread-safe."""

    name: str
    refresh_interval: float  # how often the app calls refresh(); seconds

    def wrap(self, plaintext: bytes) -> Wrapped:
        """Encrypt a DEK under the current key version."""

    def unwrap(
        self, ciphertext: bytes, key_id: str | None, annotations: Mapping[str, bytes]
    ) -> Unwrapped:
        """Decrypt a DEK wrapped under this or any older, still-usable version.

        ``key_id`` is what the apiserver stored with the object (None for v1);
        when given it must match the key the ciphertext names.
        """

    def status(self) -> KeyStatus:
        """Current key and health; must never make a remote call."""

    def refresh(self) -> bool:
        """Re-read the key state (file or remote); return True if key_id changed."""

    def close(self) -> None:
        """Release resources and forget key material held in memory."""
