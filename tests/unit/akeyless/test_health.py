"""The backend's health tracker."""

from __future__ import annotations

from kms_appliance.backends.akeyless.health import HealthTracker
from kms_appliance.errors import AccessDenied, BackendUnavailable, Throttled


class TestHealth:
    """Only sustained unavailability makes the backend unhealthy."""

    def test_streak_and_grace(self):
        h = HealthTracker(failures=3, grace=0.0)
        for _ in range(2):
            h.failure(BackendUnavailable("x"))
        assert h.verdict()[0] is True
        h.failure(Throttled("x"))
        h.failure(AccessDenied("x"))
        assert h.verdict()[0] is True
        h.failure(BackendUnavailable("x"))
        assert h.verdict() == (False, "akeyless unavailable")
        h.success()
        assert h.verdict()[0] is True
