"""Sorting SDK failures into the appliance's error classes.

Why one function: the class decides the gRPC code, the metric label and
whether health degrades, so every call site must sort the same way (the
aws-encryption-provider pattern). SDK exception text (headers, bodies) is
never copied: messages are built from the HTTP status and our own words.
"""

from __future__ import annotations

import errno
from typing import Any

from ...errors import (
    AccessDenied,
    BackendCorruption,
    BackendUnavailable,
    CiphertextError,
    KeyUnavailable,
    KmsError,
    Throttled,
)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class TokenRejected(AccessDenied):
    """Akeyless answered 401 for our token: re-authenticate once and retry."""


class CiphertextRejected(CiphertextError):
    """Akeyless refused to decrypt (400): tampered, foreign or wrong-key data.

    User-induced like KMS's InvalidCiphertextException, hence the "user"
    outcome; the gRPC code stays the one of :class:`CiphertextError`.
    """

    outcome = "user"


def http_status(exc: BaseException, api_exception: type[BaseException]) -> int | None:
    """The HTTP status of an SDK ApiException (0 for TLS failures), else None."""
    if isinstance(exc, api_exception):
        status = getattr(exc, "status", None)
        return status if isinstance(status, int) else 0
    return None


def from_status(status: int, op: str, key_name: str) -> KmsError:
    """The typed error for an HTTP status of operation ``op``."""
    where = f"Akeyless {op}"
    item = key_name or "the item"
    special = _SPECIAL.get((status, op))
    if special is not None:
        cls, text = special
        return cls(f"{where}: {text}")
    common = _COMMON.get(status)
    if common is not None:
        cls, text = common
        return cls(f"{where}: {text.format(item=item)}")
    if status >= 500:
        return BackendUnavailable(f"{where}: server error ({status})")
    return BackendUnavailable(f"{where}: unexpected HTTP status {status}")


_SPECIAL: dict[tuple[int, str], tuple[type[KmsError], str]] = {
    (401, "auth"): (AccessDenied, "credentials rejected (401)"),
    (400, "auth"): (AccessDenied, "request rejected (400); check access_id and access_type"),
    (400, "decrypt"): (CiphertextRejected, "ciphertext rejected (400)"),
}
_COMMON: dict[int, tuple[type[KmsError], str]] = {
    0: (BackendUnavailable, "TLS or transport failure"),
    400: (KeyUnavailable, "request rejected for {item} (400)"),
    401: (TokenRejected, "token rejected (401)"),
    403: (AccessDenied, "not permitted on {item} (403)"),
    404: (KeyUnavailable, "{item} not found (404)"),
    429: (Throttled, "rate limited (429)"),
}


def root_cause(exc: BaseException, sdk: Any) -> BaseException:
    """The SDK or urllib3 error behind a secondary failure.

    Example: on a TLS failure the SDK raises ApiException(status=0) and its
    own handler then fails with AttributeError (``None.decode``) while
    processing it; the transport failure is the one that matters.
    """
    wanted: tuple[type[BaseException], ...] = (sdk.ApiException, sdk.urllib3.exceptions.HTTPError)
    seen: BaseException = exc
    for _ in range(5):
        if isinstance(seen, wanted):
            return seen
        nxt = seen.__cause__ or seen.__context__
        if nxt is None:
            break
        seen = nxt
    return exc


def classify(exc: BaseException, op: str, key_name: str, sdk: Any) -> KmsError:
    """Translate any exception raised by one SDK call into a typed error."""
    if isinstance(exc, KmsError):
        return exc
    exc = root_cause(exc, sdk)
    status = http_status(exc, sdk.ApiException)
    if status is not None:
        return from_status(status, op, key_name)
    if isinstance(exc, sdk.urllib3.exceptions.TimeoutError):
        return BackendUnavailable(f"Akeyless {op}: timed out")
    if isinstance(exc, sdk.urllib3.exceptions.HTTPError | OSError):
        return BackendUnavailable(f"Akeyless {op}: connection failed{_transport_why(exc, sdk)}")
    if isinstance(exc, ValueError | TypeError | KeyError | AttributeError | UnicodeError):
        return BackendCorruption(f"Akeyless {op}: malformed answer")
    return BackendUnavailable(f"Akeyless {op}: unexpected client failure ({type(exc).__name__})")


# What an operator reads when this host itself refused the connection: a
# cgroup egress filter (the unit's IPAddressDeny=) or a local firewall answers
# connect() with EPERM, which otherwise looks like any outage.
EGRESS_DENIED = ("not permitted by this host (EPERM): an egress filter blocks it, e.g. a drop-in "
                 "setting IPAddressDeny= on kms-appliance.service or a firewall; allow the "
                 "Akeyless URL's addresses and the DNS resolver (docs/deployment.md, Network)")


def _transport_why(exc: BaseException, sdk: Any) -> str:
    """What an operator can act on in a failed connection, or nothing."""
    if _refused_locally(exc):
        return f": {EGRESS_DENIED}"
    if _caused_by(exc, sdk.urllib3.exceptions.NameResolutionError):
        return ": the host name does not resolve (DNS, or an egress filter blocking the resolver)"
    return ""


def _refused_locally(exc: BaseException) -> bool:
    """True when an OSError with EPERM is behind ``exc``."""
    return any(isinstance(e, OSError) and e.errno == errno.EPERM for e in _chain(exc))


def _caused_by(exc: BaseException, cls: type[BaseException]) -> bool:
    return any(isinstance(e, cls) for e in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what is behind it: causes, contexts and urllib3 ``reason``s (bounded)."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    found: list[BaseException] = []
    while pending and len(seen) < 10:
        cur = pending.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        found.append(cur)
        for nxt in (cur.__cause__, cur.__context__, getattr(cur, "reason", None)):
            if isinstance(nxt, BaseException):
                pending.append(nxt)
    return found
