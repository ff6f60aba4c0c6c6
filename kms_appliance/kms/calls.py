"""The one place where a call becomes a gRPC status, an audit record and metrics.

Servicers hand their work to :meth:`Calls.run`; everything around the work
(timing, error mapping, metrics, the audit record) happens here exactly once,
so no method can forget it and the hot path stays short.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from .. import errors
from ..audit import AuditLog
from ..metrics import Metrics

log = logging.getLogger("kms_appliance.calls")
R = TypeVar("R")

_CODES: dict[type[errors.KmsError], grpc.StatusCode] = {
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.CiphertextError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.KeyUnavailable: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AccessDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Throttled: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.BackendUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.BackendCorruption: grpc.StatusCode.INTERNAL,
}


def grpc_code(exc: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """Map any exception to (code, client-safe message, outcome label).

    Our typed errors carry operator-safe messages; anything else is a bug and
    becomes INTERNAL with no detail at all.
    """
    if isinstance(exc, errors.KmsError):
        for cls in type(exc).__mro__:
            code = _CODES.get(cls)
            if code is not None:
                return code, exc.message, exc.outcome
    return grpc.StatusCode.INTERNAL, "internal error", "internal"


class Record:
    """Fields a call fills in for its audit record (plain attributes: cheap)."""

    __slots__ = ("cached", "fingerprint", "key_id", "key_version", "uid")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.key_id = ""
        self.key_version = ""
        self.fingerprint = ""
        self.cached: bool | None = None


class Calls:
    """Runs servicer work with error mapping, metrics and audit."""

    def __init__(self, metrics: Metrics, audit: AuditLog, backend: str, key_name: str) -> None:
        self._metrics = metrics
        self._audit = audit
        self._backend = backend
        self._key_name = key_name

    def run(self, context: grpc.ServicerContext, api: str, method: str, uid: str,
            work: Callable[[Record], R], empty: Callable[[], R]) -> R:
        """Do ``work``; on error set the gRPC status on ``context`` and return ``empty()``."""
        start = time.perf_counter()
        rec = Record(uid)
        code = grpc.StatusCode.OK
        outcome, message = "ok", ""
        try:
            result = work(rec)
        except Exception as exc:
            code, message, outcome = grpc_code(exc)
            if outcome == "internal":
                log.error("internal error in %s/%s: %s", api, method, type(exc).__name__)
            context.set_code(code)
            context.set_details(message)
            result = empty()
        elapsed = time.perf_counter() - start
        counter, hist = self._metrics.bound(method, api, outcome)
        counter.inc()
        hist.observe(elapsed)
        self._write(api, method, rec, outcome, code, message, elapsed)
        return result

    def _write(self, api: str, method: str, rec: Record, outcome: str, code: grpc.StatusCode,
               message: str, elapsed: float) -> None:
        fields: dict[str, Any] = {
            "event": method, "api": api, "uid": rec.uid, "backend": self._backend,
            "key_name": self._key_name, "key_id": rec.key_id, "key_version": rec.key_version,
            "outcome": outcome, "code": code.name, "duration_ms": round(elapsed * 1000, 3),
            "ct_fp": rec.fingerprint,
        }
        if rec.cached is not None:
            fields["cached"] = rec.cached
        if message:
            fields["error"] = message
        self._audit.event(**fields)
