"""The Akeyless API operations: JSON request body in, JSON response out.

Why: handlers are plain functions over `Core` so the HTTP layer stays a thin
translator (path -> handler, ApiError -> status + body) and each rule of the
real API lives in one short function.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from akeyless_emulator import authn
from akeyless_emulator.core import Core
from akeyless_emulator.errors import bad_request
from akeyless_emulator.keys import HEADER, iso, normalise_name


@dataclass
class CallInfo:
    """What a handler learnt about the call, for the call record."""

    item_version: int | None = None
    result_fp: str | None = None


Handler = Callable[[Core, dict[str, Any], CallInfo], dict[str, Any]]


def result_fingerprint(ciphertext: bytes) -> str:
    """Which encrypt call produced a ciphertext: 16 hex digits of its SHA-256 (not secret)."""
    return hashlib.sha256(ciphertext).hexdigest()[:16]


def _b64decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise bad_request(f"Missing required parameter - {what}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} is not valid base64") from None


def _base64_only(body: dict[str, Any], field: str) -> None:
    """Plaintexts travel base64 (all the plugin sends); text formats are not emulated."""
    if body.get(field) != "base64":
        raise bad_request(f"only {field} base64 is emulated")


def _context(body: dict[str, Any]) -> dict[str, str] | None:
    ctx = body.get("encryption-context")
    if ctx is None:
        return None
    if not isinstance(ctx, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in ctx.items()):
        raise bad_request("encryption-context must map strings to strings")
    return ctx


def auth(core: Core, body: dict[str, Any], info: CallInfo) -> dict[str, Any]:
    """POST /auth: verify the access type's proof and issue a `t-` token."""
    access_type = body.get("access-type") or "access_key"
    verifier = authn.VERIFIERS.get(access_type)
    if verifier is None:
        raise bad_request(f"unsupported access-type {access_type!r}")
    with core.lock:
        ctx = authn.AuthContext(core.identities, core.tokens)
        ident = verifier(ctx, body)
    token = core.issue_auth_token(ident)
    expiration = iso(token.expires_at)
    return {"token": token.value, "expiration": expiration,
            "creds": {"access_id": ident.access_id, "expiry": int(token.expires_at)}}


def encrypt(core: Core, body: dict[str, Any], info: CallInfo) -> dict[str, Any]:
    """POST /encrypt: AES-GCM under the key's latest version."""
    name = normalise_name(body.get("key-name"))
    _base64_only(body, "input-format")
    plaintext = _b64decode(body.get("plaintext"), "Plaintext")
    context = _context(body)
    with core.lock:
        core.caller(body)[0].check("encrypt")
        key = core.key(name)
        info.item_version = key.last_version
        blob = key.encrypt(plaintext, context)
    info.result_fp = result_fingerprint(blob)
    return {"result": base64.b64encode(blob).decode()}


def decrypt(core: Core, body: dict[str, Any], info: CallInfo) -> dict[str, Any]:
    """POST /decrypt: the version is read from the ciphertext header."""
    name = normalise_name(body.get("key-name"))
    _base64_only(body, "output-format")
    blob = _b64decode(body.get("ciphertext"), "Ciphertext")
    context = _context(body)
    with core.lock:
        core.caller(body)[0].check("decrypt")
        key = core.key(name)
        if len(blob) >= HEADER.size:
            info.item_version = struct.unpack_from(">I", blob, 9)[0]
        plaintext = key.decrypt(blob, context)
    return {"result": base64.b64encode(plaintext).decode()}


def describe_item(core: Core, body: dict[str, Any], info: CallInfo) -> dict[str, Any]:
    """POST /describe-item: the Item object, versions if show-versions."""
    name = normalise_name(body.get("name"))
    with core.lock:
        core.caller(body)[0].check("describe-item")
        key = core.key(name)
        info.item_version = key.last_version
        return key.describe(bool(body.get("show-versions")))


def uid_rotate_token(core: Core, body: dict[str, Any], info: CallInfo) -> dict[str, Any]:
    """POST /uid-rotate-token: new `u-` token; the old one dies at once."""
    with core.changing():
        old = core.tokens.resolve(body.get("uid-token") or body.get("token"), kinds=("u",))
        new = core.tokens.issue(old.access_id, "u", old.ttl)
        core.tokens.revoke(old.value, "token was rotated")
    return {"token": new.value}


def validate_token(core: Core, body: dict[str, Any], info: CallInfo) -> dict[str, Any]:
    """POST /validate-token: 200 with is_valid, even for a bad token."""
    value = body.get("token")
    with core.lock:
        token = core.tokens.tokens.get(value) if isinstance(value, str) else None
        if token is None:
            return {"is_valid": False, "reason": "unknown token"}
        now = time.time()  # tokens expire on wall time, like the real service
        reason = token.status(now)
        return {"is_valid": reason is None, "expiration": iso(token.expires_at),
                "ttl": max(0, int(token.expires_at - now)), "reason": reason or ""}


HANDLERS: dict[str, Handler] = {
    "auth": auth,
    "encrypt": encrypt,
    "decrypt": decrypt,
    "describe-item": describe_item,
    "uid-rotate-token": uid_rotate_token,
    "validate-token": validate_token,
}
