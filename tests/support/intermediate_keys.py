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


def iks_of(ciphertexts: Iterable[bytes], key: Key) -> set[bytes]:
    """Every distinct clear IK behind the envelope-mode ciphertexts (others are skipped),
    unwrapped with the emulator key ``key``."""
    iks = set()
    for ciphertext in filter(is_envelope, ciphertexts):
        parsed = intermediate.parse(ciphertext)
        clear = key.decrypt(parsed.wrapped, {intermediate.CONTEXT_KEY: base64.b64encode(parsed.prefix).decode()})
        assert len(clear) == intermediate.IK_BYTES, f"unwrapped IK has {len(clear)} bytes"
        iks.add(clear)
    return iks


def key_from_state_dir(state_dir: Path, name: str) -> Key:
    """An emulator key read from a (separate process's) ``--state-dir``."""
    data = json.loads((state_dir / STATE_FILE).read_text())
    wanted = name.strip("/")
    for raw in data.get("keys", []):
        if str(raw["name"]).strip("/") == wanted:
            return Key.from_state(raw)
    raise LookupError(f"no key {name!r} in {state_dir / STATE_FILE}")
