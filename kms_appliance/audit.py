"""The JSON audit stream: one object per security-relevant event.

It has its own logger (``kms_appliance.audit``) that does not propagate, so
operational log settings can never drop, duplicate or reformat it. The schema
is documented and versioned in docs/audit-log.md; bump ``SCHEMA`` on any
incompatible change. Only identifiers, versions, outcomes and fingerprints
are written: never plaintext, DEKs, KEKs, tokens or access keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

SCHEMA = 1
LOGGER = "kms_appliance.audit"


def fingerprint(ciphertext: bytes) -> str:
    """A short, non-reversible id joining an encrypt to its later decrypts."""
    return hashlib.sha256(ciphertext).hexdigest()[:16]


def utc_ms(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, the audit time format."""
    whole = int(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((epoch - whole) * 1000):03d}Z"


class _Formatter(JsonFormatter):
    """Only the record's own fields: no logger name, level or message noise."""

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_record["ts"] = utc_ms(record.created)
        log_record["schema"] = SCHEMA
        log_record.update(record.__dict__["audit"])


class _Batching:
    """Mixin: write without flushing per record; the writer flushes when idle."""

    def emit(self, record: logging.LogRecord) -> None:
        handler: Any = self
        try:
            if handler.stream is None:
                handler.stream = handler._open()
            handler.stream.write(handler.format(record) + "\n")
        except Exception:  # logging's own contract: report, never raise
            handler.handleError(record)


class _FileHandler(_Batching, logging.FileHandler):
    pass


class _StreamHandler(_Batching, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class AuditLog:
    """Writes audit events; ``reopen()`` is called on SIGHUP for logrotate.

    The request path only enqueues the event's fields (a few microseconds);
    one writer thread formats and writes them in order. The queue is bounded
    and ``put`` blocks when it is full, so a stalled disk slows calls down
    rather than losing records or growing memory without bound. ``close()``
    drains the queue before returning.
    """

    QUEUE_SIZE = 10_000

    def __init__(self, target: str) -> None:
        self._target = target
        self._logger = logging.getLogger(LOGGER)
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        for old in list(self._logger.handlers):
            self._logger.removeHandler(old)
            old.close()
        self._handler = self._make_handler(target)
        self._handler.setFormatter(_Formatter())
        self._logger.addHandler(self._handler)
        self._queue: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue(self.QUEUE_SIZE)
        self._writer = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
        self._writer.start()

    @staticmethod
    def _make_handler(target: str) -> logging.Handler:
        if target == "-":
            return _StreamHandler(sys.stdout)
        _precreate(Path(target))
        return _FileHandler(target, encoding="utf-8")

    def event(self, **fields: Any) -> None:
        """Queue one event; ``fields`` must hold only non-secret values."""
        self._queue.put((time.time(), fields))

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            created, fields = item
            record = logging.LogRecord(LOGGER, logging.INFO, __file__, 0, "", None, None)
            record.created = created
            record.__dict__["audit"] = fields
            self._logger.handle(record)
            if self._queue.empty():
                self._handler.flush()

    def reopen(self) -> None:
        """Close the file so the next event reopens it (after logrotate moved it)."""
        if isinstance(self._handler, logging.FileHandler):
            self._handler.acquire()
            try:
                self._handler.close()
                _precreate(Path(self._target))
            finally:
                self._handler.release()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(10)
        self._handler.flush()
        self._logger.removeHandler(self._handler)
        self._handler.close()


def _precreate(path: Path) -> None:
    """Create the file 0600 before logging opens it, so it is never world-readable."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))
