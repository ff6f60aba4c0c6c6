"""Fake-but-structured JWTs for the cloud and Kubernetes auth methods.

Why: the emulator cannot ask Azure, GCP or a kube-apiserver about an identity token,
so a test registers the exact token it will present: registration is the trust
anchor, and only the token's shape, `exp` and `aud` are checked. The signature is
random bytes that only make it look like a JWT; nobody verifies it.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

from akeyless_emulator.errors import unauthorized


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(claims: dict[str, Any], ttl: float = 3600.0) -> str:
    """An HS256-shaped JWT with `iat`/`exp` filled in unless given."""
    now = int(time.time())
    body = {"iat": now, "exp": now + int(ttl), **claims}
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(body, sort_keys=True).encode())
    return f"{head}.{payload}.{_b64url(os.urandom(32))}"


def jwt_claims(token: str) -> dict[str, Any]:
    """Parse a JWT's claims, checking shape and expiry (no signature check)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise unauthorized("identity token is not a JWT")
    try:
        json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
    except ValueError:
        raise unauthorized("identity token is not a JWT") from None
    if not isinstance(claims, dict):
        raise unauthorized("identity token is not a JWT")
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and exp < time.time():
        raise unauthorized("identity token has expired")
    return claims


def audiences(claims: dict[str, Any]) -> list[str]:
    """The `aud` claim as a list (JWT allows a string or a list)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []
