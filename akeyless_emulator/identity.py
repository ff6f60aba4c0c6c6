"""Registered identities (auth methods) and the tokens they are issued.

Why: the plugin's auth logic (re-auth before expiry, UID rotation that must
replace the stored token) can only be tested against a server that really
enforces those rules. Everything is kept in
memory under the emulator's lock; this module holds no lock itself.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, field

from akeyless_emulator.errors import forbidden, unauthorized

ALL_CAPABILITIES = frozenset({"encrypt", "decrypt", "describe-item"})
_ALNUM = string.ascii_letters + string.digits


def new_access_id() -> str:
    """An access id shaped like the real ones: `p-` and 12 alphanumerics."""
    return "p-" + "".join(secrets.choice(_ALNUM) for _ in range(12)).lower()


def new_secret(length: int = 44) -> str:
    """A random access key (base64-ish alphabet, like the real ones)."""
    return "".join(secrets.choice(_ALNUM + "+/") for _ in range(length - 1)) + "="


@dataclass
class Identity:
    """One auth method bound to an access id, with what it may do."""

    access_id: str
    method: str
    access_key: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    jwts: set[str] = field(default_factory=set)
    k8s_config_name: str | None = None
    ca_pems: list[bytes] = field(default_factory=list)
    capabilities: frozenset[str] = ALL_CAPABILITIES

    def check(self, capability: str) -> None:
        """403 unless this identity may run `capability`."""
        if capability not in self.capabilities:
            raise forbidden(f"access denied for {capability}")


@dataclass
class Token:
    """An issued auth token (`t-...`) or Universal Identity token (`u-...`)."""

    value: str
    access_id: str
    kind: str
    ttl: float
    expires_at: float
    revoked: str | None = None

    def status(self, now: float) -> str | None:
        """Why the token is unusable, or None if it is valid."""
        if self.revoked:
            return self.revoked
        if now >= self.expires_at:
            return "token expired"
        return None


class TokenStore:
    """Issues and resolves tokens; callers hold the emulator lock."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}

    def issue(self, access_id: str, kind: str, ttl: float) -> Token:
        """Mint a new token valid for `ttl` seconds."""
        value = f"{kind}-" + secrets.token_hex(16)
        token = Token(value, access_id, kind, ttl, time.time() + ttl)
        self.tokens[value] = token
        return token

    def resolve(self, value: object, kinds: tuple[str, ...] = ("t", "u")) -> Token:
        """The valid token named by `value`, or 401."""
        if not isinstance(value, str) or not value:
            raise unauthorized("missing token")
        token = self.tokens.get(value)
        if token is None or token.kind not in kinds:
            raise unauthorized("unknown token")
        reason = token.status(time.time())
        if reason:
            raise unauthorized(reason)
        return token

    def revoke(self, value: str, reason: str) -> None:
        """Make a token unusable."""
        self.tokens[value].revoked = reason

    def expire_all(self) -> int:
        """Expire every token now (tests of re-authentication)."""
        now = time.time()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now)
        return len(self.tokens)
