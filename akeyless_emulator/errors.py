"""The one exception type handlers raise to produce an Akeyless-style error.

Why: every non-2xx answer of the real API carries a small JSON body
(`{"error": ..., "message": ...}`); keeping the status, the code and the
message together lets each handler fail in one line and lets the HTTP layer
render every error the same way. Messages never carry secrets.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status, short error code and a human message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return {"error": self.error, "message": self.message}


def bad_request(message: str) -> ApiError:
    """400: malformed or missing parameters, undecryptable ciphertext."""
    return ApiError(400, "InvalidParam", message)


def unauthorized(message: str) -> ApiError:
    """401: bad credentials, unknown, revoked or expired token."""
    return ApiError(401, "Unauthorized", message)


def forbidden(message: str) -> ApiError:
    """403: authenticated but not allowed (capability, disabled item)."""
    return ApiError(403, "Forbidden", message)


def not_found(message: str) -> ApiError:
    """404: unknown item or unknown operation path."""
    return ApiError(404, "NotFound", message)
