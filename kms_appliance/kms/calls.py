"""The one place where a call becomes a gRPC status, an audit record and metrics.

Servicers report each call to :meth:`Calls.ok` or :meth:`Calls.failed`,
naming where it came in with a :class:`~kms_appliance.audit.Site` constant;
everything around the work (error mapping, metrics, the audit record)
happens here exactly once, so no method can get it differently and the hot
path stays short.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import grpc

from .. import errors
from ..audit import AuditLog, CallLines, CallRecord, Failure, Site, fingerprint
from ..metrics import Metrics
from .validate import MAX_UID
from .wire import MalformedRequests

log = logging.getLogger("kms_appliance.calls")

_CODES: dict[type[errors.KmsError], grpc.StatusCode] = {
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.CiphertextError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.KeyUnavailable: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AccessDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Throttled: grpc.StatusCode.RESOURCE_EXHAUSTED,
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


MAX_PENDING = 10_000  # beyond this a call accounts for itself: memory stays bounded
CHUNK = 64  # calls accounted between two GIL releases of the flusher


class Calls:
    """Error mapping, metrics and audit for every Encrypt and Decrypt.

    A servicer times its call from its first line, then reports it with
    :meth:`ok` or :meth:`failed`; nothing else about a call is its business.

    Why accounting is deferred: the request threads share one GIL, and a
    microsecond of Python on the request path costs several under load (a
    thread just woken for a call runs with cold caches; co-run against the
    bare servicer, the ~0.8 us left here cost ~2% of the throughput, the
    ~3.7 us of batched accounting on the flusher ~5%). So a call only queues
    a :class:`~kms_appliance.audit.CallRecord`; the audit flusher's thread turns
    the queue into metrics and audit records just before each write, at most one
    ``audit_flush_interval`` later. With an interval of 0 (records written
    before the answer leaves) the accounting happens inline instead.
    """

    def __init__(self, metrics: Metrics, audit: AuditLog, backend: str, key_name: str) -> None:
        self._metrics = metrics
        self._audit = audit
        self._lines = CallLines(backend, key_name)
        self.malformed = MalformedRequests(metrics.malformed)  # decoders for the servicers
        self._done: deque[CallRecord] = deque()
        self._defer = audit.deferred
        if self._defer:
            audit.before_flush(self.drain)

    def ok(self, start: float, site: Site, *, uid: str = "", key_id: str, key_version: str,
           ciphertext: bytes, cached: bool | None = None) -> None:
        """Account for a successful call that began at ``start`` (``time.perf_counter()``).

        ``uid`` has passed validation (at most ``MAX_UID`` characters); v1 calls have none.
        The fields are keyword-only so a call site reads as the record it makes (they cost
        ~15 ns a call over positional arguments).
        """
        rec = CallRecord(time.time(), time.perf_counter() - start, site, uid, key_id, key_version,
                         ciphertext, cached)
        if self._defer and len(self._done) < MAX_PENDING:  # _queue() inlined: the common case
            self._done.append(rec)
            self._audit.arm()
        else:
            self._audit.write(self.account(rec))

    def failed(self, context: grpc.ServicerContext, start: float, site: Site, exc: Exception, *,
               uid: str = "", key_id: str = "", ciphertext: bytes = b"") -> None:
        """Set the gRPC status for ``exc`` on ``context`` and account for the call."""
        code, message, outcome = grpc_code(exc)
        if outcome == "internal":
            log.error("internal error in %s/%s: %s", site.api, site.method, type(exc).__name__)
        context.set_code(code)
        context.set_details(message)
        # An invalid uid may be as long as the request: only its bounded head waits in the queue.
        self._queue(CallRecord(time.time(), time.perf_counter() - start, site, uid[:MAX_UID], key_id,
                               "", ciphertext, None, Failure(outcome, code.name, message)))

    def _queue(self, rec: CallRecord) -> None:
        if self._defer and len(self._done) < MAX_PENDING:
            self._done.append(rec)
            self._audit.arm()
        else:
            self._audit.write(self.account(rec))

    def drain(self) -> None:
        """Account for every queued call (the audit flusher runs this before each write).

        In chunks, releasing the GIL between them: the request threads wait
        at most one chunk's accounting, never the whole backlog's.
        """
        done = self._done
        while done:
            chunk = [self.account(done.popleft()) for _ in range(min(len(done), CHUNK))]
            self._audit.write("".join(chunk))
            if done:
                time.sleep(0)

    def account(self, rec: CallRecord) -> str:
        """Count the call in the metrics and return its audit line.

        Runs on the audit flusher's thread (:meth:`drain`), or on the request thread when
        records are written per call; bench/plugin_variant.py replaces it to show its cost.
        """
        failure = rec.failure
        counter, hist = self._metrics.bound(rec.site.method, rec.site.api,
                                            "ok" if failure is None else failure.outcome)
        counter.inc()
        hist.observe(rec.elapsed)
        ct_fp = fingerprint(rec.ciphertext) if rec.ciphertext else ""
        if failure is None:
            return self._lines.ok(rec, ct_fp)
        return self._lines.failed(rec, failure, ct_fp)
