"""Versioned AES-GCM keys and the emulator's ciphertext layout (docs/emulator.md,
"Keys and the ciphertext layout").

Why: the plugin's correctness depends on rotation semantics (old ciphertext
stays decryptable while its version is enabled, fails once the version is
disabled or deleted) and on the encryption context being bound to the
ciphertext. So this is real AES-GCM, not a mock.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from akeyless_emulator.errors import bad_request, forbidden, not_found

HEADER = struct.Struct(">BQIH")
FORMAT_MARKER = 0x01
NONCE_LEN = 12
TAG_LEN = 16
KEY_SIZES = {"AES128GCM": 16, "AES256GCM": 32}
VERSION_STATES = ("Enabled", "Disabled", "PendingDeletion")


def utcnow() -> dt.datetime:
    """Timezone-aware now (UTC)."""
    return dt.datetime.now(dt.UTC)


def iso(ts: dt.datetime | float | None) -> str | None:
    """RFC 3339 UTC timestamp of a datetime or an epoch, as the SDK's datetime deserialiser accepts
    (for token expirations the real format is unconfirmed: docs/emulator.md)."""
    if ts is None:
        return None
    if not isinstance(ts, dt.datetime):
        ts = dt.datetime.fromtimestamp(ts, dt.UTC)
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def context_aad(context: dict[str, str] | None) -> bytes:
    """Canonical bytes of an encryption context (bound into the AAD)."""
    if not context:
        return b""
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class KeyVersion:
    """One version of a key: material and lifecycle state."""

    version: int
    material: bytes
    state: str = "Enabled"
    creation_date: dt.datetime = field(default_factory=utcnow)
    deletion_date: dt.datetime | None = None

    def describe(self) -> dict[str, Any]:
        """The `ItemVersion` JSON object of /describe-item."""
        return {
            "version": self.version,
            "item_version_state": self.state,
            "creation_date": iso(self.creation_date),
            "deletion_date": iso(self.deletion_date),
            "with_customer_fragment": False,
        }


@dataclass
class Key:
    """A DFC AES-GCM key item with its versions."""

    name: str
    item_id: int
    alg: str
    versions: dict[int, KeyVersion] = field(default_factory=dict)
    enabled: bool = True
    creation_date: dt.datetime = field(default_factory=utcnow)
    modification_date: dt.datetime = field(default_factory=utcnow)
    # Item settings describe-item reports (Akeyless defaults: all off); no effect here.
    delete_protection: bool = False
    auto_rotate: bool = False
    rotation_interval: int = 0  # days

    @property
    def last_version(self) -> int:
        """Highest version number (the one encrypt uses)."""
        return max(self.versions)

    def add_version(self, material: bytes | None = None) -> int:
        """Create the next version with fresh random material."""
        number = (max(self.versions) + 1) if self.versions else 1
        self.versions[number] = KeyVersion(number, material or os.urandom(KEY_SIZES[self.alg]))
        self.modification_date = utcnow()
        return number

    def encrypt(self, plaintext: bytes, context: dict[str, str] | None) -> bytes:
        """Encrypt with the latest version; fails if the key or version is off."""
        if not self.enabled:
            raise forbidden("item is disabled")
        current = self.versions[self.last_version]
        if current.state != "Enabled":
            raise forbidden("the latest item version is not enabled")
        header = HEADER.pack(FORMAT_MARKER, self.item_id, current.version, 0)
        nonce = os.urandom(NONCE_LEN)
        sealed = AESGCM(current.material).encrypt(nonce, plaintext, header + context_aad(context))
        return header + nonce + sealed

    def decrypt(self, blob: bytes, context: dict[str, str] | None) -> bytes:
        """Decrypt a ciphertext produced by any enabled version of this key."""
        if not self.enabled:
            raise forbidden("item is disabled")
        if len(blob) < HEADER.size + NONCE_LEN + TAG_LEN:
            raise bad_request("ciphertext is too short")
        marker, item_id, version, _ = HEADER.unpack_from(blob)
        if marker != FORMAT_MARKER or item_id != self.item_id:
            raise bad_request("ciphertext does not belong to this key")
        found = self.versions.get(version)
        if found is None or found.state != "Enabled":
            raise bad_request("the item version of this ciphertext is not enabled")
        nonce = blob[HEADER.size : HEADER.size + NONCE_LEN]
        aad = blob[: HEADER.size] + context_aad(context)
        try:
            return AESGCM(found.material).decrypt(nonce, blob[HEADER.size + NONCE_LEN :], aad)
        except InvalidTag:
            raise bad_request("decryption failed") from None

    def set_version_state(self, version: int, state: str) -> None:
        """Enable, disable or schedule deletion of one version."""
        if state not in VERSION_STATES:
            raise bad_request(f"unknown version state {state!r}")
        found = self.versions.get(version)
        if found is None:
            raise not_found("item version not found")
        found.state = state
        found.deletion_date = utcnow() + dt.timedelta(days=7) if state == "PendingDeletion" else None
        self.modification_date = utcnow()

    def describe(self, show_versions: bool) -> dict[str, Any]:
        """The `Item` JSON object of /describe-item."""
        out: dict[str, Any] = {
            "item_name": self.name,
            "item_id": self.item_id,
            "display_id": f"{self.item_id:x}-emu",
            "item_type": self.alg,
            "item_sub_type": "",
            "item_size": KEY_SIZES[self.alg] * 8,
            "last_version": self.last_version,
            "is_enabled": self.enabled,
            "item_state": "Enabled" if self.enabled else "Disabled",
            "creation_date": iso(self.creation_date),
            "modification_date": iso(self.modification_date),
            "with_customer_fragment": False,
            "auto_rotate": self.auto_rotate,
            "rotation_interval": self.rotation_interval,
            "item_tags": [],
            "delete_protection": self.delete_protection,
        }
        if show_versions:
            out["item_versions"] = [self.versions[v].describe() for v in sorted(self.versions)]
        return out

    def to_state(self) -> dict[str, Any]:
        """Serialisable form for the state directory (test material only)."""
        versions = [{"version": v.version, "material": v.material.hex(), "state": v.state}
                    for v in self.versions.values()]
        return {"name": self.name, "item_id": self.item_id, "alg": self.alg, "enabled": self.enabled,
                "versions": versions}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Key:
        """Rebuild a key saved by `to_state`."""
        key = cls(data["name"], int(data["item_id"]), data["alg"], enabled=bool(data["enabled"]))
        for v in data["versions"]:
            version = int(v["version"])
            key.versions[version] = KeyVersion(version, bytes.fromhex(v["material"]), v["state"])
        return key


def new_key(name: str) -> Key:
    """A fresh AES256GCM key with version 1."""
    key = Key(name, secrets.randbits(62) | 1, "AES256GCM")
    key.add_version()
    return key


def normalise_name(name: object) -> str:
    """Akeyless item names are paths; `k` and `/k` name the same item."""
    if not isinstance(name, str) or not name.strip():
        raise bad_request("Missing required parameter - Name")
    text = name.strip()
    return text if text.startswith("/") else "/" + text
