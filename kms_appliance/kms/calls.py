"""The one place where a call becomes a gRPC status, an audit record and metrics.

Servicers hand their work to :meth:`Calls.run`; everything around the work
(timing, error mapping, metrics, the audit record) happens here exactly once,
so no method can forget it and the hot path stays short.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from .. import errors
from ..audit import AuditLog, CallLines, fingerprint, line
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

    __slots__ = ("cached", "ciphertext", "key_id", "key_version", "uid")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.key_id = ""
        self.key_version = ""
        self.ciphertext = b""  # fingerprinted when the record is written, off the request path
        self.cached: bool | None = None


# (finished at, seconds taken, api, method, record, outcome, code, client-safe message)
_Done = tuple[float, float, str, str, Record, str, grpc.StatusCode, str]
MAX_PENDING = 10_000  # beyond this a call accounts for itself: memory stays bounded
CHUNK = 64  # calls accounted between two GIL releases of the flusher


class Calls:
    """Runs servicer work with error mapping, metrics and audit.

    Why accounting is deferred: the request threads share one GIL, and
    profiles showed every microsecond of Python on the request path costs
    several more in thread hand-offs under load (8 us of bookkeeping took
    10-25% of the throughput at 16 calls in flight). So a call only times
    itself and queues a tuple; the audit flusher's thread turns the queue
    into metrics and audit records just before each write, at most one
    ``audit_flush_interval`` later. With an interval of 0 (records written
    before the answer leaves) the accounting happens inline instead.
    """

    def __init__(self, metrics: Metrics, audit: AuditLog, backend: str, key_name: str) -> None:
        self._metrics = metrics
        self._audit = audit
        self._backend = backend
        self._key_name = key_name
        self._lines = CallLines(backend, key_name)
        self._done: deque[_Done] = deque()
        self._defer = audit.deferred
        if self._defer:
            audit.before_flush(self.drain)

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
        done = (time.time(), time.perf_counter() - start, api, method, rec, outcome, code, message)
        if self._defer and len(self._done) < MAX_PENDING:
            self._done.append(done)
            self._audit.arm()
        else:
            self._audit.write(self._account(done))
        return result

    def drain(self) -> None:
        """Account for every queued call (the audit flusher runs this before each write).

        In chunks, releasing the GIL between them: the request threads wait
        at most one chunk's accounting, never the whole backlog's.
        """
        done = self._done
        while done:
            chunk = [self._account(done.popleft()) for _ in range(min(len(done), CHUNK))]
            self._audit.write("".join(chunk))
            if done:
                time.sleep(0)

    def _account(self, done: _Done) -> str:
        """Count the call in the metrics and return its audit line."""
        ts, elapsed, api, method, rec, outcome, code, message = done
        counter, hist = self._metrics.bound(method, api, outcome)
        counter.inc()
        hist.observe(elapsed)
        ct_fp = fingerprint(rec.ciphertext) if rec.ciphertext else ""
        if code is grpc.StatusCode.OK:
            return self._lines.ok(ts, elapsed, api, method, rec.uid, rec.key_id,
                                  rec.key_version, ct_fp, rec.cached)
        fields: dict[str, Any] = {
            "event": method, "api": api, "uid": rec.uid, "backend": self._backend,
            "key_name": self._key_name, "key_id": rec.key_id, "key_version": rec.key_version,
            "outcome": outcome, "code": code.name, "duration_ms": round(elapsed * 1000, 3),
            "ct_fp": ct_fp,
        }
        if rec.cached is not None:
            fields["cached"] = rec.cached
        if message:
            fields["error"] = message
        return line(fields, ts)
