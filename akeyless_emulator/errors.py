"""The one exception type handlers raise to produce an Akeyless-style error.

Why: every non-2xx answer of the real API carries a small JSON body
(`{"error": ..., "message": ...}`); keeping the status, the code and the
message together lets each handler fail in one line and lets the HTTP layer
render every error the same way. Messages never carry secrets.
"""

from __future__ import annotations

from functools import partial
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


# The four errors handlers raise, each called with its message.
bad_request = partial(ApiError, 400, "InvalidParam")  # malformed or missing parameters, bad ciphertext
unauthorized = partial(ApiError, 401, "Unauthorized")  # bad credentials; unknown, revoked or expired token
forbidden = partial(ApiError, 403, "Forbidden")  # authenticated but not allowed (capability, disabled item)
not_found = partial(ApiError, 404, "NotFound")  # unknown item or operation path
