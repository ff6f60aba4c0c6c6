"""Checks on what callers send, mirroring what kube-apiserver itself enforces.

Each check raises :class:`InvalidRequest` with a message naming the field and
the limit, never echoing the field's content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import InvalidRequest

MAX_KEY_ID = 1024
MAX_V2_CIPHERTEXT = 1024
MAX_V1_CIPHERTEXT = 65_535
MAX_V2_PLAINTEXT = 512
MAX_V1_PLAINTEXT = 4_096
MAX_UID = 256
MAX_ANNOTATIONS = 32 * 1024
_FQDN = re.compile(r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def sized(name: str, value: bytes | str, limit: int) -> None:
    """Non-empty and at most ``limit`` bytes."""
    if not value:
        raise InvalidRequest(f"{name} must not be empty")
    size = len(value) if isinstance(value, bytes) else len(value.encode())
    if size > limit:
        raise InvalidRequest(f"{name} is {size} bytes; at most {limit} allowed")


def uid(value: str) -> str:
    if len(value) > MAX_UID:
        raise InvalidRequest(f"uid is longer than {MAX_UID} characters")
    return value


def annotation_map(values: Mapping[str, bytes]) -> None:
    """Keys must be FQDNs; keys plus values at most 32 KiB, as the apiserver requires."""
    total = 0
    for key, value in values.items():
        if not _FQDN.fullmatch(key):
            raise InvalidRequest("annotation keys must be fully qualified domain names")
        total += len(key.encode()) + len(value)
    if total > MAX_ANNOTATIONS:
        raise InvalidRequest(f"annotations are {total} bytes; at most {MAX_ANNOTATIONS} allowed")


def v1_version(value: str) -> None:
    if value != "v1beta1":
        raise InvalidRequest("version must be v1beta1")
