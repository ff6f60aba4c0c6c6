"""Auth tokens: expiry parsing, the renewal point, and the UID token file.

Why: the expiry format of `/auth` is not documented, and a token file that
is half-written at a crash would lock the plugin out at its next start; both
deserve small, separately tested functions.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from ... import atomicfile

RENEW_MARGIN = 300.0
DEFAULT_LIFETIME = 900.0
MIN_LIFETIME = 0.5


@dataclass(frozen=True, slots=True)
class Token:
    """An auth token and when it stops working (wall clock, from Akeyless)."""

    value: str
    expires_at: float
    issued_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at:.0f})"

    @property
    def skewed(self) -> bool:
        """A fresh token that looks (nearly) expired: our clock is ahead of Akeyless's."""
        return self.expires_at - self.issued_at < MIN_LIFETIME

    @property
    def valid_until(self) -> float:
        """When we stop using it. With a skewed clock the reported expiry is useless
        (Akeyless checks its own clock), so assume a conservative lifetime instead of
        logging in again on every call."""
        return self.issued_at + DEFAULT_LIFETIME if self.skewed else self.expires_at

    @property
    def renew_at(self) -> float:
        """Five minutes before the end, or at three quarters of a shorter lifetime."""
        lifetime = max(self.valid_until - self.issued_at, 1.0)
        return self.valid_until - min(RENEW_MARGIN, lifetime / 4)


_GO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.\d+)? ([+-]\d{4})")


def parse_expiration(text: object, fallback_epoch: object, now: float) -> float:
    """Epoch seconds of a token's expiry (ISO 8601 or Go's time format).

    The real format is not documented; an unparseable value falls back to
    ``creds.expiry`` and then to a conservative lifetime.
    """
    if isinstance(text, str) and text:
        match = _GO_TIME.match(text)
        candidate = f"{match[1]}T{match[2]}{match[3]}" if match else text.replace("Z", "+00:00")
        try:
            parsed = dt.datetime.fromisoformat(candidate)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
        except ValueError:
            pass
    if isinstance(fallback_epoch, int) and fallback_epoch > 0:
        return float(fallback_epoch)
    return now + DEFAULT_LIFETIME


def write_token_file(path: Path, token: str) -> None:
    """Replace ``path`` atomically with ``token`` (mode 0600, fsync'ed, ownership verified).

    Through the one atomic writer (kms_appliance.atomicfile): the temporary
    name is random and created O_EXCL|O_NOFOLLOW in a checked directory, so
    a user who can write the directory can neither read a rotated token nor
    end up owning the token file. Raises OSError on any failure.
    """
    atomicfile.write(path, token.encode() + b"\n")
