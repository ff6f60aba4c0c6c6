"""The Akeyless KeyBackend: wrap/unwrap through /encrypt and /decrypt.

Ciphertext layout (after the appliance's 5-byte envelope header): the item
version Akeyless used (uint32, big-endian; checked after each encrypt, see
``wrap``), the plaintext length (uint16, big-endian), then Akeyless's own
ciphertext, opaque. The length lets a decrypt that returns the wrong number of bytes be refused as
corruption instead of handed to the apiserver as a DEK. The envelope header and version are bound to
Akeyless's AEAD as the ``encryption-context``, so editing them makes
Akeyless refuse to decrypt. The version gives every Decrypt the
item_version the DEK was wrapped under (audit correlation with Akeyless's
log) and lets a refused decrypt be explained: "version 3 is Disabled".
"""

from __future__ import annotations

import base64
import binascii
import logging
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ...errors import (
    BackendCorruption,
    BackendUnavailable,
    CiphertextError,
    InvalidRequest,
    KeyUnavailable,
    KmsError,
    SetupError,
    shown,
)
from ...inline import may_wait
from ...metrics import Metrics
from .. import envelope
from ..base import KeyStatus, Unwrapped, Wrapped
from ..cache import DecryptCache
from .auth import Authenticator
from .classify import CiphertextRejected, TokenRejected
from .client import AkeylessClient
from .confirm import FreshDescriber
from .health import HealthTracker
from .keystate import KeyState, from_item, make_key_id

log = logging.getLogger("kms_appliance.backends.akeyless")

ANNOTATION = "version.kms-appliance.akeyless.io"
CONTEXT_KEY = "kms-appliance"
_VERSION = struct.Struct(">IH")
MAX_PLAINTEXT = 0xFFFF
# A refused decrypt the held key state blames on the ciphertext is checked against a
# fresh description, made at most once per this many seconds for all callers together.
EXPLAIN_EVERY = 5.0
# Encrypts per wrap at most: each one after the first follows a rotation that landed
# between the previous encrypt and the describe confirming its version.
LABEL_ATTEMPTS = 3
R = TypeVar("R")


class AkeylessBackend:
    """KeyBackend over one Akeyless AES key; thread-safe."""

    name = "akeyless"
    # A cached DEK (or, in envelope mode, a held intermediate key) is answered from memory;
    # everything remote first calls may_wait(), so the server may try calls in its event loop.
    in_memory = True

    def __init__(self, client: AkeylessClient, auth: Authenticator, key_name: str,
                 call_timeout: float, refresh_interval: float, metrics: Metrics,
                 cache: DecryptCache[tuple[bytes, int]] | None) -> None:
        self.refresh_interval = refresh_interval
        self.key_name = key_name
        self._client = client
        self._auth = auth
        self._timeout = call_timeout
        self._metrics = metrics
        self._cache = cache
        self._health = HealthTracker()
        self._refresh_lock = threading.Lock()
        self._adopt_lock = threading.Lock()
        self._confirm = FreshDescriber(self._latest_version)
        self._explain_lock = threading.Lock()
        self._explain_next = 0.0  # monotonic time before which held state explains refusals
        self._state = self._startup_state()

    # -- start-up --

    def _startup_state(self) -> KeyState:
        try:
            state = self.describe()
        except KeyUnavailable as exc:
            raise SetupError(f"Akeyless key {shown(self.key_name)} does not exist or cannot be "
                               f"described: {exc.message}") from None
        except KmsError as exc:
            raise SetupError(f"cannot describe Akeyless key {shown(self.key_name)}: "
                               f"{exc.message}") from None
        problem = state.problem()
        if problem:
            raise SetupError(f"Akeyless key {shown(self.key_name)} {problem}")
        return state

    # -- remote calls with the token --

    def _authed(self, op: str, deadline: float, /, **fields: Any) -> Any:
        """One call with our token; on 401, log in again once and retry."""
        may_wait()  # remote: never in the event loop (kms_appliance/inline.py)
        for attempt in (1, 2):
            token = self._auth.token(deadline)
            try:
                return self._client.call(op, deadline, token=token, **fields)
            except TokenRejected:
                if attempt == 2:
                    raise
                self._auth.rejected(token)
        raise AssertionError("unreachable")

    def _tracked(self, fn: Callable[[], R]) -> R:
        try:
            result = fn()
        except KmsError as exc:
            self._health.failure(exc)
            raise
        self._health.success()
        return result

    def describe(self) -> KeyState:
        """Describe the key now (remote)."""
        deadline = time.monotonic() + self._timeout
        item = self._authed("describe-item", deadline, name=self.key_name, show_versions=True)
        return from_item(item, self.key_name)

    # -- KeyBackend --

    def wrap(self, plaintext: bytes) -> Wrapped:
        """Wrap under the latest version, labelled with the version Akeyless really used.

        Why the describe after the encrypt: /encrypt does not say which version
        it used, and the held state may predate a rotation. The held state
        (described before this encrypt was sent) and a describe started after it
        answered bound the version used; when they agree the label is exact.
        When the key rotated in between, the key is described in full (held from
        then on) and the DEK wrapped again under the new label, at most
        LABEL_ATTEMPTS encrypts in all. Cost: one /describe-item (without the
        version list) per encrypt, shared by all encrypts that answered before
        it started (confirm.py); see docs/akeyless.md, "Keys, versions, key_id".
        Each remote call has its own deadline (server.call_timeout), as elsewhere.
        """
        if not plaintext or len(plaintext) > MAX_PLAINTEXT:
            raise InvalidRequest(f"plaintext must be 1..{MAX_PLAINTEXT} bytes")
        st = self._state
        for _ in range(LABEL_ATTEMPTS):
            head = envelope.header(envelope.BACKEND_AKEYLESS) + _VERSION.pack(st.last_version,
                                                                              len(plaintext))
            blob = self._encrypt_remote(head, plaintext, time.monotonic() + self._timeout)
            after = self._confirm.after_now(self._timeout)
            if after.item_id == st.item_id and after.last_version == st.last_version:
                version = str(st.last_version)
                return Wrapped(head + blob, st.key_id, version, {ANNOTATION: version.encode()})
            st = self._follow_rotation(time.monotonic() + self._timeout)
        raise BackendUnavailable(f"Akeyless key {shown(self.key_name)} rotated during each of "
                                 f"{LABEL_ATTEMPTS} encrypts; try again")

    def _encrypt_remote(self, head: bytes, plaintext: bytes, deadline: float) -> bytes:
        out: bytes = self._tracked(lambda: self._authed(
            "encrypt", deadline, key_name=self.key_name, input_format="base64",
            plaintext=base64.b64encode(plaintext).decode(), encryption_context=_context(head),
            validate=lambda answer: _b64_result(answer, "encrypt")))
        return out

    def _latest_version(self, deadline: float) -> KeyState:
        """A describe without the version list: item id and last_version, for comparing only.

        Why without versions: half the cost of a describe is the SDK building
        the version list (dates included); the check after each encrypt needs
        only the latest version. Never held: held state keeps versions and dates.
        """
        return self._describe_at(deadline, versions=False)

    def _follow_rotation(self, deadline: float) -> KeyState:
        """A full describe, held; the state the next encrypt is labelled from."""
        self._adopt(self._describe_at(deadline, versions=True))
        return self._state

    def _describe_at(self, deadline: float, versions: bool) -> KeyState:
        item = self._tracked(lambda: self._authed("describe-item", deadline, name=self.key_name,
                                                  show_versions=versions))
        return from_item(item, self.key_name)

    def unwrap(self, ciphertext: bytes, key_id: str | None,
               annotations: Mapping[str, bytes]) -> Unwrapped:
        head, payload = envelope.split(ciphertext, envelope.BACKEND_AKEYLESS)
        if len(payload) <= _VERSION.size:
            raise CiphertextError("ciphertext is truncated")
        version, length = _VERSION.unpack_from(payload)
        own_id = make_key_id(self._state.item_id, version)
        if key_id is not None and key_id != own_id:
            raise CiphertextError("ciphertext does not belong to the given key_id")
        prefix = head + payload[: _VERSION.size]
        blob = payload[_VERSION.size :]

        def load() -> tuple[bytes, int]:
            return self._decrypt_remote(prefix, blob, version, length), version

        if self._cache is None:
            (plain, _), cached = load(), False
        else:
            (plain, _), cached = self._cache.get_or_load(ciphertext, load)
        return Unwrapped(plain, own_id, str(version), cached)

    def _decrypt_remote(self, prefix: bytes, blob: bytes, version: int, length: int) -> bytes:
        deadline = time.monotonic() + self._timeout
        try:
            out = self._tracked(lambda: self._authed(
                "decrypt", deadline, key_name=self.key_name, output_format="base64",
                ciphertext=base64.b64encode(blob).decode(), encryption_context=_context(prefix),
                validate=lambda answer: _plaintext(answer, length)))
        except CiphertextRejected:
            self._explain_rejection(version)
            raise
        plain: bytes = out
        return plain

    def _explain_rejection(self, version: int) -> None:
        """A refused decrypt of a disabled/deleted version is KeyUnavailable, not tampering.

        Why bounded: every forged ciphertext is refused by Akeyless, and a
        describe per refusal would double the remote calls a flood of them
        costs (and eat the rate limit real calls need). The held state
        explains most refusals; when it does not, it is described again at
        most once per EXPLAIN_EVERY seconds, shared by all callers.
        """
        problem = self._state.refusal(version)
        if problem is None:  # the held state blames the ciphertext: make sure it is recent
            problem = self._recent_state().refusal(version)
        if problem is not None:
            raise KeyUnavailable(f"key {shown(self.key_name)} version {version} {problem}") from None

    def _recent_state(self) -> KeyState:
        """The held state, described again unless that was done less than EXPLAIN_EVERY ago.

        The first refusal after a quiet spell always gets a fresh description
        (a version disabled a second ago is reported as such); a flood gets at
        most one per interval. Single-flight: callers arriving during the
        describe wait for it and use its result instead of making their own.
        """
        if time.monotonic() < self._explain_next:
            return self._state
        with self._explain_lock:
            if time.monotonic() >= self._explain_next:
                try:
                    self.refresh()
                finally:  # a failed describe counts too: no retry per refusal
                    self._explain_next = time.monotonic() + EXPLAIN_EVERY
        return self._state

    def status(self) -> KeyStatus:
        st = self._state
        healthy, reason = self._health.verdict()
        if healthy and not st.enabled:
            healthy, reason = False, "key disabled"
        return KeyStatus(st.key_id, self.key_name, str(st.last_version), healthy, reason,
                         created=st.created.get(st.last_version))

    def refresh(self) -> bool:
        """Re-describe the key; True if key_id changed. Failures keep the old state."""
        with self._refresh_lock:
            old = self._state
            try:
                new = self._tracked(self.describe)
            except KeyUnavailable as exc:
                log.warning("Akeyless key refresh: %s", exc.message)
                self._health.key_problem(exc.message)
                return False
            except KmsError as exc:
                log.warning("Akeyless key refresh failed: %s", exc.message)
                return False
            self._adopt(new)
            return self._state.key_id != old.key_id

    def _adopt(self, new: KeyState) -> None:
        """Hold ``new`` unless the held state is newer (versions of one item only grow).

        Why the check: an encrypt's describe and a refresh may finish in either
        order; the older answer must not take back a rotation already seen.
        """
        with self._adopt_lock:
            old = self._state
            if new.item_id == old.item_id and new.last_version < old.last_version:
                return
            if new.item_id != old.item_id:
                log.error("Akeyless key %s was re-created (item id changed)", self.key_name)
            self._state = new
            problem = new.problem()
            self._health.key_problem(problem)
            self._drop_unusable(new)

    def _drop_unusable(self, state: KeyState) -> None:
        if self._cache is None:
            return
        dead = {v for v, s in state.versions.items() if s != "Enabled"}
        if dead or not state.enabled:
            self._cache.discard_if(lambda entry: not state.enabled or entry[1] in dead)

    def close(self) -> None:
        self._auth.close()
        if self._cache is not None:
            self._cache.clear()
        self._client.close()

    # -- for `check` --

    @property
    def auth(self) -> Authenticator:
        """The authenticator (method, token expiry) for the preflight."""
        return self._auth

    @property
    def state(self) -> KeyState:
        """The held key description."""
        return self._state


def _context(prefix: bytes) -> dict[str, str]:
    return {CONTEXT_KEY: base64.b64encode(prefix).decode()}


def _plaintext(answer: object, length: int) -> bytes:
    plain = _b64_result(answer, "decrypt")
    if len(plain) != length:
        raise BackendCorruption("Akeyless decrypt: plaintext has the wrong length")
    return plain


def _b64_result(answer: object, op: str) -> bytes:
    value = getattr(answer, "result", None)
    if not isinstance(value, str) or not value:
        raise BackendCorruption(f"Akeyless {op}: answer has no result")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BackendCorruption(f"Akeyless {op}: result is not base64") from None


__all__ = ["ANNOTATION", "AkeylessBackend", "BackendUnavailable"]
