"""The JSON audit stream: one object per security-relevant event, one per line.

The schema is documented and versioned in docs/audit-log.md; bump ``SCHEMA``
on any incompatible change. Only identifiers, versions, outcomes and
fingerprints are written: never plaintext, DEKs, KEKs, tokens or access keys.

Cost matters here: an audit record is written for every Encrypt and Decrypt,
and under load the request threads share one GIL with the writer. So the
request path only stamps the time and enqueues the fields (a lock-free
``SimpleQueue``); one writer thread serialises batches with the C JSON
encoder and writes each batch with one ``write`` and one flush. The stream
is separate from the operational log (nothing can drop, duplicate or
reformat it). Memory stays bounded: past ``HIGH_WATER`` queued records a
caller waits for the writer, so a stalled disk slows calls instead of
losing records or growing without limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

SCHEMA = 1
HIGH_WATER = 10_000
BATCH_DELAY = 0.002
log = logging.getLogger("kms_appliance.audit")
_Item = tuple[float, dict[str, Any]] | None


def fingerprint(ciphertext: bytes) -> str:
    """A short, non-reversible id joining an encrypt to its later decrypts."""
    return hashlib.sha256(ciphertext).hexdigest()[:16]


class _Clock:
    """ISO 8601 UTC with milliseconds; the per-second prefix is formatted once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, epoch: float) -> str:
        whole = int(epoch)
        if whole != self._second:
            self._second = whole
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        return f"{self._prefix}.{int((epoch - whole) * 1000):03d}Z"


def utc_ms(epoch: float) -> str:
    """The audit time format (for callers outside the writer thread)."""
    return _Clock().format(epoch)


class AuditLog:
    """Writes audit events from a queue; ``reopen()`` on SIGHUP serves logrotate."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._out = self._open()
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._room = threading.Event()
        self._room.set()
        self._reopen = False
        self._clock = _Clock()
        self._writer = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
        self._writer.start()

    def _open(self) -> TextIO:
        if self._target == "-":
            return sys.stdout
        # Created 0600 and never through a symlink: the trail is for the operator only.
        fd = os.open(Path(self._target), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 16)

    def event(self, **fields: Any) -> None:
        """Queue one event; ``fields`` must hold only non-secret, JSON-able values."""
        if self._queue.qsize() > HIGH_WATER:
            self._room.clear()
            self._room.wait(5)
        self._queue.put((time.time(), fields))

    def reopen(self) -> None:
        """Reopen the file before the next batch (after logrotate moved it)."""
        self._reopen = True

    def close(self) -> None:
        """Write everything queued, then close the file."""
        self._queue.put(None)
        self._writer.join(10)
        if self._out is not sys.stdout:
            self._out.close()

    # ---- the writer thread -------------------------------------------------------

    def _drain(self) -> None:
        running = True
        while running:
            batch = [self._queue.get()]
            time.sleep(BATCH_DELAY)  # let a burst gather: one write for many records
            with contextlib.suppress(queue.Empty):
                while len(batch) < 4096:
                    batch.append(self._queue.get_nowait())
            running = None not in batch
            self._write([item for item in batch if item is not None])
            if self._queue.qsize() <= HIGH_WATER:
                self._room.set()

    def _write(self, batch: list[tuple[float, dict[str, Any]]]) -> None:
        lines = [self._line(created, fields) for created, fields in batch]
        try:
            if self._reopen:
                self._reopen = False
                if self._out is not sys.stdout:
                    self._out.close()
                self._out = self._open()
            self._out.write("".join(lines))
            self._out.flush()
        except (OSError, ValueError) as exc:
            log.error("audit log write failed (%d records lost): %s", len(lines),
                      getattr(exc, "strerror", None) or type(exc).__name__)

    def _line(self, created: float, fields: dict[str, Any]) -> str:
        record = {"ts": self._clock.format(created), "schema": SCHEMA, **fields}
        return json.dumps(record, default=str) + "\n"
