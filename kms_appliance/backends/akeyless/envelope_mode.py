"""``akeyless.mode``: direct (every DEK through Akeyless) or envelope (DEKs under a local IK).

Why a subclass of :class:`AkeylessBackend` rather than edits to it: the two
modes share authentication, key description, error sorting and the direct
format; envelope mode only changes what ``wrap`` writes and adds the IK
lifecycle. Both modes decrypt both formats, so switching the mode (either
way) never strands data: a direct-mode plugin unwraps an envelope
ciphertext's IK through Akeyless like an envelope-mode one does.

IK lifecycle (docs/akeyless.md, "Envelope mode"):

* created at start-up and at a refresh when the item version moved, the IK
  is older than ``ROTATE_AGE`` or wrapped ``ROTATE_WRAPS`` DEKs; one
  Akeyless /encrypt, then a /describe-item to confirm the version it used;
* unwrapped once via Akeyless when a ciphertext names an IK not held;
* re-validated every refresh: one /decrypt of a held IK's blob per item
  version held. An authoritative refusal drops IKs (AccessDenied: all of
  them; a refused version: that version's); unreachability keeps them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import (
    AccessDenied,
    BackendCorruption,
    CiphertextError,
    KeyUnavailable,
    KmsError,
    SetupError,
)
from .. import envelope
from ..base import KeyStatus, Unwrapped, Wrapped
from .backend import ANNOTATION, AkeylessBackend
from .classify import CiphertextRejected
from .intermediate import (
    CONTEXT_KEY,
    IK_BYTES,
    IntermediateKey,
    KeyStore,
    Parsed,
    ik_key_id,
    new_material,
    parse,
    prefix,
)

WRAP_ATTEMPTS = 3  # encrypts per new IK while the key keeps rotating under it
log = logging.getLogger("kms_appliance.backends.akeyless")

MODES = ("direct", "envelope")
# An event sink: (event name, non-secret fields) -> None; the app turns it into an audit record.
EventSink = Callable[[str, Mapping[str, object]], None]
_IK_HEAD = envelope.header(envelope.BACKEND_AKEYLESS_IK)


class ModalBackend(AkeylessBackend):
    """The Akeyless backend in either mode; decrypts both ciphertext formats."""

    def __init__(self, *args: Any, mode: str = "direct", **kwargs: Any) -> None:
        if mode not in MODES:
            raise SetupError(f"unknown akeyless.mode {mode!r}")
        self.mode = mode
        self._sink: EventSink | None = None
        self._early: list[tuple[str, dict[str, object]]] = []  # events before the sink exists
        self._ik_lock = threading.Lock()  # one IK maintenance round at a time
        self._local = threading.local()  # "explaining a refused decrypt" flag, per thread
        super().__init__(*args, **kwargs)
        self._iks = KeyStore(on_change=self._metrics.intermediate_keys.set)
        self._metrics.akeyless_mode.labels(mode).set(1)
        self._metrics.intermediate_key_validation_age.set_function(self.validation_age)
        if mode == "envelope":
            try:
                self._new_ik("startup")
            except KmsError as exc:
                raise SetupError(f"cannot create the intermediate key: {exc.message}") from None

    # -- events --

    def set_event_sink(self, sink: EventSink) -> None:
        """Where IK creation/unwrap/drop events go (the app's audit); flushes earlier ones."""
        self._sink = sink
        early, self._early = self._early, []
        for name, fields in early:
            sink(name, fields)

    def _emit(self, name: str, ik: IntermediateKey, **fields: object) -> None:
        self._metrics.intermediate_key_events.labels(name.removeprefix("intermediate_key_")).inc()
        record: dict[str, object] = {"key_id": ik.key_id, "key_version": str(ik.version),
                                     "ik_id": ik.ik_id.hex(), "item_version": ik.version,
                                     "mode": self.mode, **fields}
        if self._sink is None:
            self._early.append((name, record))
        else:
            self._sink(name, record)

    # -- KeyBackend --

    def wrap(self, plaintext: bytes) -> Wrapped:
        if self.mode != "envelope":
            return super().wrap(plaintext)
        ik = self._iks.current
        if ik is None:
            raise KeyUnavailable("no usable intermediate key: Akeyless refused it and no new "
                                 "one could be created yet")
        ciphertext = ik.seal(plaintext)
        version = str(ik.version)
        return Wrapped(ciphertext, ik.key_id, version, {ANNOTATION: version.encode()})

    def unwrap(self, ciphertext: bytes, key_id: str | None,
               annotations: Mapping[str, bytes]) -> Unwrapped:
        if not ciphertext.startswith(_IK_HEAD):
            return super().unwrap(ciphertext, key_id, annotations)
        parsed = parse(ciphertext)
        own_id = ik_key_id(self._state.item_id, parsed.version, parsed.ik_id)
        if key_id is not None and key_id != own_id:
            raise CiphertextError("ciphertext does not belong to the given key_id")
        ik, loaded = self._iks.get_or_load(parsed.ik_id, lambda: self._unwrap_ik(parsed, own_id))
        if ik.version != parsed.version:
            raise CiphertextError("ciphertext names another item version than its key")
        return Unwrapped(ik.open(parsed), ik.key_id, str(ik.version), not loaded)

    def status(self) -> KeyStatus:
        st = super().status()
        if self.mode != "envelope":
            return st
        ik = self._iks.current
        if ik is None:
            return dataclasses.replace(st, healthy=False, reason="no usable intermediate key")
        healthy, reason = st.healthy, st.reason
        if not healthy and reason == "akeyless unavailable":  # ride through: Encrypt is local
            healthy, reason = True, "ok"
        return dataclasses.replace(st, key_id=ik.key_id, key_version=str(ik.version),
                                   healthy=healthy, reason=reason)

    def refresh(self) -> bool:
        """Describe the key (as direct mode), then re-validate held IKs and rotate if due.

        A refused decrypt's explanation also describes the key through here;
        it skips the IK round, so a forged ciphertext never costs more remote
        calls than in direct mode.
        """
        before = self.status().key_id
        super().refresh()
        if getattr(self._local, "explaining", False):
            return self.status().key_id != before
        if self._ik_lock.acquire(blocking=False):  # a round already running covers this one
            try:
                self._maintain()
            finally:
                self._ik_lock.release()
        return self.status().key_id != before

    def _explain_rejection(self, version: int) -> None:
        self._local.explaining = True
        try:
            super()._explain_rejection(version)
        finally:
            self._local.explaining = False

    def close(self) -> None:
        self._iks.clear()
        super().close()

    # -- for check and /metrics --

    @property
    def intermediate_keys(self) -> list[IntermediateKey]:
        """Held IKs (no key material is reachable through their public fields)."""
        return self._iks.held()

    def validation_age(self) -> float:
        """Seconds since the least recently validated held IK was vouched for (0: none held)."""
        oldest = self._iks.oldest_validation()
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    # -- IK lifecycle --

    def _maintain(self) -> None:
        state = self._state
        dead = {v for v, s in state.versions.items() if s != "Enabled"}
        held = self._iks.held()
        self._drop([ik for ik in held if not state.enabled or ik.version in dead],
                   "key or version not enabled")
        self._validate()
        if self.mode == "envelope":
            self._rotate_if_due()

    def _rotate_if_due(self) -> None:
        state, cur = self._state, self._iks.current
        if cur is None:
            reason: str | None = "replace"
        elif state.last_version > cur.version:
            reason = "key_rotation"
        else:
            reason = cur.due(time.monotonic())
        if reason is None or state.problem() is not None:
            return
        try:
            self._new_ik(reason)
        except KmsError as exc:
            log.warning("new intermediate key (%s) not created, keeping the current one: %s",
                        reason, exc.message)

    def _new_ik(self, reason: str) -> IntermediateKey:
        """Create, wrap (one /encrypt) and install a new current IK.

        The version is confirmed by a describe after the encrypt: if the key
        rotated in between, Akeyless may have used the newer version, so the IK
        is wrapped again under the newer label (at most WRAP_ATTEMPTS encrypts,
        then KeyUnavailable: the current IK stays in use), and every record
        names the version Akeyless really used. A failed describe fails the
        creation for the same reason. One /decrypt then proves this access id
        may unwrap it. Three calls per IK: at start-up, rotation, or ROTATE_AGE.
        """
        for _ in range(WRAP_ATTEMPTS):
            version = self._state.last_version
            ik_id, clear = new_material()
            blob = self._wrap_remote(prefix(version, ik_id), clear)
            # held as the direct mode's wrap holds it: an older answer never takes back a rotation
            if self._follow_rotation(time.monotonic() + self._timeout).last_version == version:
                break
        else:
            raise KeyUnavailable(f"the Akeyless key rotated during each of {WRAP_ATTEMPTS} "
                                 "intermediate key wraps; trying again later")
        # Proof that Akeyless would unwrap it for us too: without decrypt permission the
        # plugin must not hold a key that reads what it wraps.
        pre = prefix(version, ik_id)
        if not hmac.compare_digest(self._unwrap_remote(version, pre, blob), clear):
            raise BackendCorruption("Akeyless unwrapped the new intermediate key to other bytes")
        key_id = ik_key_id(self._state.item_id, version, ik_id)
        ik = IntermediateKey(ik_id, version, key_id, blob, AESGCM(clear),
                             hashlib.sha256(clear).digest(), own=True)
        self._iks.add(ik, current=True)
        self._emit("intermediate_key_created", ik, reason=reason)
        log.info("new intermediate key %s (%s)", key_id, reason)
        return ik

    def _wrap_remote(self, pre: bytes, clear: bytes) -> bytes:
        deadline = time.monotonic() + self._timeout
        blob: bytes = self._tracked(lambda: self._authed(
            "encrypt", deadline, key_name=self.key_name, input_format="base64",
            plaintext=base64.b64encode(clear).decode(), encryption_context=_context(pre),
            validate=lambda answer: _result(answer, "encrypt", None)))
        return blob

    def _unwrap_remote(self, version: int, pre: bytes, blob: bytes) -> bytes:
        deadline = time.monotonic() + self._timeout
        try:
            clear: bytes = self._tracked(lambda: self._authed(
                "decrypt", deadline, key_name=self.key_name, output_format="base64",
                ciphertext=base64.b64encode(blob).decode(), encryption_context=_context(pre),
                validate=lambda answer: _result(answer, "decrypt", IK_BYTES)))
        except CiphertextRejected:
            self._explain_rejection(version)
            raise
        return clear

    def _unwrap_ik(self, parsed: Parsed, key_id: str) -> IntermediateKey:
        clear = self._unwrap_remote(parsed.version, parsed.prefix, parsed.wrapped)
        ik = IntermediateKey(parsed.ik_id, parsed.version, key_id, parsed.wrapped, AESGCM(clear),
                             hashlib.sha256(clear).digest())
        self._emit("intermediate_key_unwrapped", ik)
        return ik

    def _validate(self) -> None:
        """One Akeyless /decrypt per item version held (its least recently validated IK).

        Why per version, not per IK: what Akeyless authorises is this access
        id decrypting with this item version; every IK of the version stands
        or falls with it, so the cost per refresh is the number of versions held.
        The first unreachable answer ends the round: everything is kept.
        """
        for version, iks in sorted(self._iks.by_version().items()):
            ik = min(iks, key=lambda k: k.validated)
            try:
                clear = self._unwrap_remote(version, ik.prefix, ik.wrapped)
            except AccessDenied as exc:
                self._drop(self._iks.held(), f"access denied: {exc.message}")
                return
            except (KeyUnavailable, CiphertextError) as exc:
                self._drop(iks, f"refused: {exc.message}")
                continue
            except KmsError as exc:  # unreachable, throttled, corrupt answer: ride through
                self._metrics.intermediate_key_events.labels("validation_failed").inc()
                log.warning("intermediate keys kept, Akeyless did not answer: %s", exc.message)
                return
            if not hmac.compare_digest(hashlib.sha256(clear).digest(), ik.digest):
                self._metrics.intermediate_key_events.labels("validation_failed").inc()
                log.error("Akeyless unwrapped intermediate key %s to different bytes", ik.key_id)
                continue
            now = time.monotonic()
            for k in iks:
                k.validated = now
            self._metrics.intermediate_key_events.labels("validated").inc()

    def _drop(self, doomed: Iterable[IntermediateKey], why: str) -> None:
        for ik in self._iks.drop(doomed):
            log.warning("intermediate key %s dropped: %s", ik.key_id, why)
            self._emit("intermediate_key_dropped", ik, outcome="user", reason=why)


def _context(pre: bytes) -> dict[str, str]:
    return {CONTEXT_KEY: base64.b64encode(pre).decode()}


def _result(answer: object, op: str, length: int | None) -> bytes:
    value = getattr(answer, "result", None)
    if not isinstance(value, str) or not value:
        raise BackendCorruption(f"Akeyless {op}: answer has no result")
    try:
        out = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BackendCorruption(f"Akeyless {op}: result is not base64") from None
    if length is not None and len(out) != length:
        raise BackendCorruption(f"Akeyless {op}: plaintext has the wrong length")
    return out
