"""Per-endpoint fault injection.

Why: the plugin's retry, timeout, circuit-breaking and caching logic is only
believable if it has been seen to survive each way a remote KMS misbehaves.
A fault applies to one endpoint (or `*` for all), permanently or for the
next N calls; the first matching fault in insertion order is consumed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

KINDS = ("latency", "status", "reset", "hang", "malformed", "wrong_length")

_DEFAULT_ERRORS = {
    400: ("InvalidParam", "injected bad request"),
    401: ("Unauthorized", "token expired"),
    403: ("Forbidden", "access denied"),
    404: ("NotFound", "item not found"),
    429: ("TooManyRequests", "rate limit exceeded"),
}


@dataclass
class Fault:
    """One injected misbehaviour; each kind: docs/emulator.md, "Fault injection"."""

    endpoint: str
    kind: str
    status: int = 503
    delay: float = 0.0
    times: int | None = None
    retry_after: int | None = None
    extra: bool = False

    def error_body(self) -> dict[str, str]:
        """JSON body for a `status` fault, shaped like the real API's."""
        error, message = _DEFAULT_ERRORS.get(self.status, ("InternalServerError", "injected server error"))
        return {"error": error, "message": message}


class FaultRegistry:
    """Thread-safe list of active faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Activate a fault; validates kind and bounds."""
        if fault.kind not in KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; use one of {', '.join(KINDS)}")
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be >= 1 (or None for permanent)")
        if fault.delay < 0 or fault.delay > 600:
            raise ValueError("delay must be within 0..600 seconds")
        if fault.kind == "status" and not 100 <= fault.status <= 599:
            raise ValueError("status must be an HTTP status code")
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, endpoint: str) -> Fault | None:
        """The fault to apply to this call of `endpoint`, consuming one use."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (endpoint, "*"):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> int:
        """Remove all faults; returns how many."""
        with self._lock:
            cleared, self._faults = len(self._faults), []
            return cleared
