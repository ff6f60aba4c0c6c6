"""Backend health from call outcomes: sustained trouble only.

Why: one failed or throttled call must not fail readiness (the apiserver
retries), but minutes of unreachability should. Unhealthy means at least
``FAILURES`` consecutive "unavailable"-class failures and no success for
``GRACE`` seconds, or the key itself unusable (disabled, deleted).
Throttling and user-induced errors never count.
"""

from __future__ import annotations

import threading
import time

from ...errors import BackendCorruption, BackendUnavailable, KmsError

FAILURES = 3
GRACE = 30.0


class HealthTracker:
    """Thread-safe success/failure bookkeeping."""

    def __init__(self, failures: int = FAILURES, grace: float = GRACE) -> None:
        self._lock = threading.Lock()
        self._limit = failures
        self._grace = grace
        self._streak = 0
        self._last_ok = time.monotonic()
        self._key_problem: str | None = None

    def success(self) -> None:
        with self._lock:
            self._streak = 0
            self._last_ok = time.monotonic()

    def failure(self, exc: KmsError) -> None:
        if isinstance(exc, BackendUnavailable | BackendCorruption):
            with self._lock:
                self._streak += 1

    def key_problem(self, problem: str | None) -> None:
        with self._lock:
            self._key_problem = problem

    def verdict(self) -> tuple[bool, str]:
        """(healthy, reason) from held state only."""
        with self._lock:
            if self._key_problem:
                return False, f"key {self._key_problem}"
            stale = time.monotonic() - self._last_ok >= self._grace
            if self._streak >= self._limit and stale:
                return False, "akeyless unavailable"
            return True, "ok"
