"""What the plugin knows about its KEK item, and the key_id derived from it.

Why a snapshot: Status and health must answer from held state, never a
remote call; the background refresh replaces the whole snapshot at once so
readers never see half an update.

key_id = ``akeyless:<item_id>:<version>``: the item id changes if the key
is deleted and re-created under the same name, the version on every
rotation, so a key_id is never reused for different key material; neither
is secret.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import BackendCorruption

ENABLED = "Enabled"


def make_key_id(item_id: int, version: int) -> str:
    """The key_id of one item version."""
    return f"akeyless:{item_id}:{version}"


@dataclass(frozen=True, slots=True)
class KeyState:
    """One description of the KEK item."""

    name: str
    item_id: int
    item_type: str
    last_version: int
    enabled: bool
    versions: Mapping[int, str] = field(default_factory=dict)
    # Per version: creation time (Unix); the rotation-age metric and alert use the latest's.
    created: Mapping[int, float] = field(default_factory=dict)
    # Item settings `check` reports (None: the answer lacked them).
    delete_protection: bool | None = None
    auto_rotate: bool | None = None
    rotation_interval: int | None = None  # days, as Akeyless states it

    @property
    def key_id(self) -> str:
        """The key_id of the version new data is wrapped under."""
        return make_key_id(self.item_id, self.last_version)

    @property
    def is_aes(self) -> bool:
        """An Akeyless AES item (AES128GCM, AES256GCM, AES256SIV, ...)."""
        return self.item_type.upper().startswith("AES")

    def version_state(self, version: int) -> str | None:
        """Enabled/Disabled/PendingDeletion, or None if the version is unknown."""
        return self.versions.get(version)

    def refusal(self, version: int) -> str | None:
        """Why Akeyless refusing data labelled ``version`` is the key's doing, or None.

        None means the ciphertext is to blame (CiphertextError, INVALID_ARGUMENT):
        a version this key never had (0, or beyond its last version) can only be
        a relabelled or forged header, and an enabled version means tampering.
        A disabled, pending-deletion or deleted version is the key's state
        (KeyUnavailable). A header relabelled to such a version looks the same
        from here: Akeyless's ciphertext, which says what it really used, is opaque.
        """
        if version < 1 or version > self.last_version:
            return None
        state = self.versions.get(version)
        if state is None:
            return "no longer exists" if self.versions else None
        return None if state == ENABLED else f"is {state}"

    def problem(self) -> str | None:
        """Why this key cannot be used as the KEK, or None."""
        if not self.is_aes:
            return f"is a {self.item_type or 'non-AES'} item, not an AES key"
        if not self.enabled:
            return "is disabled"
        state = self.versions.get(self.last_version, ENABLED)
        if state != ENABLED:
            return f"has its latest version {self.last_version} {state}"
        return None


def from_item(item: Any, name: str) -> KeyState:
    """Build a KeyState from the SDK's Item model; impossible answers are corruption."""
    item_id, last = getattr(item, "item_id", None), getattr(item, "last_version", None)
    if not isinstance(item_id, int) or not isinstance(last, int) or last < 1:
        raise BackendCorruption("Akeyless describe-item: answer lacks item_id or last_version")
    state = getattr(item, "item_state", None)
    enabled = getattr(item, "is_enabled", None) is not False and state not in ("Disabled", "Deleted")
    versions: dict[int, str] = {}
    created: dict[int, float] = {}
    for v in getattr(item, "item_versions", None) or []:
        number = getattr(v, "version", None)
        if isinstance(number, int):
            versions[number] = str(getattr(v, "item_version_state", None) or ENABLED)
            when = timestamp(getattr(v, "creation_date", None))
            if when is not None:
                created[number] = when
    interval = getattr(item, "rotation_interval", None)
    return KeyState(name=str(getattr(item, "item_name", None) or name), item_id=item_id,
                    item_type=str(getattr(item, "item_type", None) or ""), last_version=last,
                    enabled=enabled, versions=versions, created=created,
                    delete_protection=_flag(getattr(item, "delete_protection", None)),
                    auto_rotate=_flag(getattr(item, "auto_rotate", None)),
                    rotation_interval=interval if type(interval) is int else None)


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def timestamp(value: object) -> float | None:
    """Unix time of an SDK datetime or, from a partial (frozen) bundle, its ISO 8601 text.

    A naive datetime is UTC (Akeyless answers in UTC); anything else is None:
    a missing date must leave the metric absent, never a made-up age.
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()
