"""Typed errors of the appliance.

Every failure a caller can see is one of these classes. Messages are written
for operators and are safe to return over gRPC and to log: they never carry
plaintext, key material, tokens or the raw text of an SDK exception (whose
``str()`` holds HTTP headers and bodies). The gRPC status code for each class
is decided in one place, :func:`kms_appliance.kms.calls.grpc_code`, and the
``outcome`` string is the bounded label used by metrics, audit and health.
"""

from __future__ import annotations

MAX_SHOWN = 64
SECRET_SHOWN = "(a secret value, not shown)"  # noqa: S105 - the placeholder, not a secret


def shown(value: object, *, secret: bool = False, limit: int = MAX_SHOWN) -> str:
    """How every error message quotes a value an operator (or attacker) supplied.

    Why one helper: a message is printed to a terminal, logged and kept by
    journald. It must never carry a secret (an access key pasted in the wrong
    setting is still a secret), never be a 10 kB value that floods the log,
    and never pass a control character that rewrites the terminal or forges
    a log line. Secrets are not shown at all; anything else is cut to
    ``limit`` characters and escaped like ``repr``.
    """
    if secret:
        return SECRET_SHOWN
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"(an integer of {value.bit_length()} bits)"  # str() of it may even raise
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters, cut)"


class KmsError(Exception):
    """Base of every error the appliance raises on purpose."""

    outcome = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(KmsError, ValueError):
    """A setting is missing or invalid; names the setting and what is allowed."""

    outcome = "config"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


class SetupError(KmsError, RuntimeError):
    """What the plugin runs on is unsafe or unusable: the socket or its directory, the keyring
    or audit file, the backend's preconditions (credentials, the key).

    Raised at start (exit status 1) and at a reload, which then keeps the previous state.
    """

    outcome = "setup"


class InvalidRequest(KmsError, ValueError):
    """The caller sent something the contract does not allow (size, empty, version)."""

    outcome = "invalid"


class CiphertextError(KmsError, ValueError):
    """A ciphertext is tampered, truncated, foreign or for another key.

    Deliberately detail-free, like cryptography's ``InvalidTag``: telling an
    attacker *why* a forged ciphertext failed would help them forge the next.
    """

    outcome = "corrupt"


class KeyUnavailable(KmsError):
    """The key or the key version the data needs is missing, disabled or deleted."""

    outcome = "user"


class AccessDenied(KmsError, PermissionError):
    """The backend refused our credentials or the operation (user-induced)."""

    outcome = "user"


class Throttled(KmsError):
    """The backend rate-limited us; retry later. Never a liveness failure."""

    outcome = "throttled"


class BackendUnavailable(KmsError, ConnectionError):
    """The backend could not be reached or answered 5xx, or a timeout hit."""

    outcome = "unavailable"


class BackendCorruption(KmsError):
    """The backend answered something impossible (malformed body, wrong length)."""

    outcome = "corrupt"


__all__ = [
    "AccessDenied",
    "BackendCorruption",
    "BackendUnavailable",
    "CiphertextError",
    "ConfigError",
    "InvalidRequest",
    "KeyUnavailable",
    "KmsError",
    "SetupError",
    "Throttled",
    "shown",
]
