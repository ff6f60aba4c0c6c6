"""The local keyring file: versioned AES-256 KEKs for dev, demos and air-gapped rigs.

The file is JSON so an operator can inspect its structure (``keyring list``
prints everything but the key bytes). It is only ever replaced atomically
(kms_appliance.atomicfile: a random 0600 temp file created O_EXCL in a checked
directory, fsync, rename, fsync the directory, ownership verified), so a crash
during rotation leaves either the old or the new keyring, never a torn one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import atomicfile
from ..errors import SetupError

FORMAT = "kms-appliance-keyring/1"
KEY = "local.keyring"  # the setting an error about the keyring path names
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    """One KEK version. ``material`` never leaves this module except into AESGCM."""

    version: int
    created: str
    material: bytes

    def describe(self) -> dict[str, object]:
        """Everything about the entry except the key bytes."""
        return {"version": self.version, "created": self.created}


@dataclass(frozen=True, slots=True)
class Keyring:
    """A parsed keyring: an id that makes key_ids unique, and its versions."""

    keyring_id: str
    entries: tuple[KeyringEntry, ...]

    @property
    def current(self) -> KeyringEntry:
        return max(self.entries, key=lambda e: e.version)

    def key_id(self, version: int) -> str:
        """The KMS key_id for a version: no secret, never reused across rotations."""
        return f"local/{self.keyring_id}/v{version}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _new_entry(version: int) -> KeyringEntry:
    return KeyringEntry(version, _now(), secrets.token_bytes(KEY_BYTES))


def check_file_safety(path: Path) -> os.stat_result:
    """Refuse a keyring others could read or that another user owns."""
    atomicfile.check_path(KEY, path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise SetupError(f"keyring {path} does not exist "
                           f"(create it: kms-appliance keyring init {path})") from None
    except OSError as exc:
        raise SetupError(f"keyring {atomicfile.show(path)} cannot be read: "
                           f"{exc.strerror or type(exc).__name__}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise SetupError(f"keyring {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SetupError(f"keyring {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
                           "it must be 0600 or stricter")
    if st.st_uid != os.geteuid():
        raise SetupError(f"keyring {path} is owned by uid {st.st_uid}, "
                           f"not by this process (uid {os.geteuid()})")
    return st


def _parse_entry(raw: Any) -> KeyringEntry:
    if not isinstance(raw, dict):
        raise SetupError("keyring entry is not an object")
    version, created, key = raw.get("version"), raw.get("created", ""), raw.get("key")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**31:
        raise SetupError("keyring entry has an invalid version")
    if not isinstance(key, str) or not isinstance(created, str):
        raise SetupError(f"keyring entry v{version} is malformed")
    try:
        material = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise SetupError(f"keyring entry v{version} key is not valid base64") from None
    if len(material) != KEY_BYTES:
        raise SetupError(f"keyring entry v{version} key is not {KEY_BYTES} bytes")
    return KeyringEntry(version, created, material)


def parse(data: bytes) -> Keyring:
    """Parse and validate keyring bytes; errors never quote key material."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SetupError("keyring is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SetupError(f"keyring format is not {FORMAT}")
    keyring_id, raw_entries = doc.get("keyring_id"), doc.get("keys")
    if not isinstance(keyring_id, str) or not keyring_id.isalnum() or not 8 <= len(keyring_id) <= 64:
        raise SetupError("keyring_id is missing or invalid")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise SetupError("keyring holds no keys")
    entries = tuple(_parse_entry(e) for e in raw_entries)
    if len({e.version for e in entries}) != len(entries):
        raise SetupError("keyring has duplicate versions")
    return Keyring(keyring_id, entries)


def load(path: Path) -> Keyring:
    """Load a keyring after checking its ownership and mode."""
    check_file_safety(path)
    return parse(path.read_bytes())


def _serialise(ring: Keyring) -> bytes:
    keys = [
        {**e.describe(), "key": base64.b64encode(e.material).decode()}
        for e in sorted(ring.entries, key=lambda e: e.version)
    ]
    doc = {"format": FORMAT, "keyring_id": ring.keyring_id, "keys": keys}
    return json.dumps(doc, indent=2).encode() + b"\n"


def _write_atomic(path: Path, data: bytes, *, replace: bool = True) -> None:
    """One atomic writer for every secret file (atomicfile.write); errors become one line."""
    try:
        atomicfile.write(path, data, replace=replace)
    except FileExistsError:
        raise SetupError(f"{atomicfile.show(path)} already exists; "
                           "refusing to overwrite a keyring") from None
    except OSError as exc:
        raise SetupError(f"cannot write keyring {atomicfile.show(path)}: "
                           f"{exc.strerror or type(exc).__name__}") from None


def init(path: Path) -> Keyring:
    """Create a new keyring with one key; refuses to overwrite an existing file."""
    path = atomicfile.check_path(KEY, path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot create the keyring's directory {atomicfile.show(path.parent)}: "
                           f"{exc.strerror or type(exc).__name__}") from None
    ring = Keyring(secrets.token_hex(8), (_new_entry(1),))
    _write_atomic(path, _serialise(ring), replace=False)
    return ring


def rotate(path: Path) -> Keyring:
    """Add a new current version; every older version stays for decryption."""
    ring = load(path)
    rotated = Keyring(ring.keyring_id, (*ring.entries, _new_entry(ring.current.version + 1)))
    _write_atomic(path, _serialise(rotated))
    return rotated
