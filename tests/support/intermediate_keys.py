"""Recover the clear intermediate key (IK) inside an envelope-mode ciphertext, for secret scans.

Why this way: the plugin keeps an IK only inside an AESGCM object, and
production has no hook that hands it out (nor should it). A test, though,
plays Akeyless: it holds the emulator's key material, so it can unwrap the
IK blob a ciphertext carries exactly as Akeyless does (same encryption
context). That covers the plugin's own IKs and every foreign one, in-process
or not; the scans then look for the IK's raw, hex and base64 forms.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

from akeyless_emulator.core import STATE_FILE
from akeyless_emulator.keys import Key
from kms_appliance.backends import envelope
from kms_appliance.backends.akeyless import intermediate

_IK_HEAD = envelope.header(envelope.BACKEND_AKEYLESS_IK)


def is_envelope(ciphertext: bytes) -> bool:
    """True for an envelope-mode (IK-wrapped) ciphertext."""
    return ciphertext.startswith(_IK_HEAD)


def ik_of(ciphertext: bytes, key: Key) -> bytes:
    """The clear IK of an envelope-mode ciphertext, unwrapped with the emulator key ``key``."""
    parsed = intermediate.parse(ciphertext)
    context = {intermediate.CONTEXT_KEY: base64.b64encode(parsed.prefix).decode()}
    clear = key.decrypt(parsed.wrapped, context)
    if len(clear) != intermediate.IK_BYTES:
        raise AssertionError(f"unwrapped IK has {len(clear)} bytes")
    return clear


def iks_of(ciphertexts: Iterable[bytes], key: Key) -> set[bytes]:
    """Every distinct IK behind the envelope-mode ciphertexts (others are skipped)."""
    return {ik_of(c, key) for c in ciphertexts if is_envelope(c)}


def key_from_state_dir(state_dir: Path, name: str) -> Key:
    """An emulator key read from a (separate process's) ``--state-dir``."""
    data = json.loads((state_dir / STATE_FILE).read_text())
    wanted = name.strip("/")
    for raw in data.get("keys", []):
        if str(raw["name"]).strip("/") == wanted:
            return Key.from_state(raw)
    raise LookupError(f"no key {name!r} in {state_dir / STATE_FILE}")
