"""The appliance's own ciphertext header.

Every ciphertext the plugin hands to kube-apiserver starts with five bytes:
a 3-byte magic, a format version and a backend id. They let a later release
(or another backend) recognise whose ciphertext it holds before touching any
key, and refuse foreign data with a clear error instead of a failed tag check
deep in some SDK. The header is also bound into each backend's AEAD
associated data, so it cannot be swapped.
"""

from __future__ import annotations

from ..errors import CiphertextError

MAGIC = b"\x8aKA"
FORMAT_V1 = 1
HEADER_LEN = len(MAGIC) + 2

BACKEND_LOCAL = 1
BACKEND_AKEYLESS = 2
BACKEND_AKEYLESS_IK = 3  # Akeyless envelope mode: DEK under a local IK that Akeyless wraps
BACKEND_NAMES = {BACKEND_LOCAL: "local", BACKEND_AKEYLESS: "akeyless",
                 BACKEND_AKEYLESS_IK: "akeyless-envelope"}


def header(backend_id: int) -> bytes:
    """The header for a new ciphertext of the given backend, current format."""
    return MAGIC + bytes((FORMAT_V1, backend_id))


def split(ciphertext: bytes, expected_backend: int) -> tuple[bytes, bytes]:
    """Return (header, payload) after checking magic, format and backend.

    The error says which of the three is off but nothing about the payload.
    """
    if len(ciphertext) <= HEADER_LEN or ciphertext[: len(MAGIC)] != MAGIC:
        raise CiphertextError("ciphertext was not produced by kms-appliance")
    fmt, backend = ciphertext[3], ciphertext[4]
    if fmt != FORMAT_V1:
        raise CiphertextError(f"unsupported ciphertext format {fmt}")
    if backend != expected_backend:
        name = BACKEND_NAMES.get(backend, f"unknown backend {backend}")
        raise CiphertextError(f"ciphertext belongs to the {name} backend")
    return ciphertext[:HEADER_LEN], ciphertext[HEADER_LEN:]
