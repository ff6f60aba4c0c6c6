"""The JSON audit stream: one object per security-relevant event, one per line.

The schema is documented and versioned in docs/audit-log.md; bump ``SCHEMA``
on any incompatible change. Only identifiers, versions, outcomes and
fingerprints are written: never plaintext, DEKs, KEKs, tokens or access keys.

Cost matters here: a record is written for every Encrypt and Decrypt, and the
request threads share one GIL. Profiles showed that a logging-framework
record plus a writer thread cost more than the gRPC call's own Python work
(GIL hand-offs on every call), so a record is serialised with the C JSON
encoder and written (one write syscall) under a lock in the calling thread:
it is on disk when the call returns, and a stalled disk slows calls rather
than growing a queue. ``flush()`` (each maintenance tick) only handles a
pending SIGHUP reopen. The stream is separate from the operational log, so no log setting
can drop, duplicate or reformat it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

SCHEMA = 1
BUFFER_BYTES = 1 << 16
log = logging.getLogger("kms_appliance.audit")


def fingerprint(ciphertext: bytes) -> str:
    """A short, non-reversible id joining an encrypt to its later decrypts."""
    return hashlib.sha256(ciphertext).hexdigest()[:16]


class _Clock:
    """ISO 8601 UTC with milliseconds; the per-second prefix is formatted once."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")  # one attribute: swapped atomically

    def format(self, epoch: float) -> str:
        whole = int(epoch)
        second, prefix = self._cached
        if whole != second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._cached = (whole, prefix)
        return f"{prefix}.{int((epoch - whole) * 1000):03d}Z"


_clock = _Clock()


def utc_ms(epoch: float) -> str:
    """The audit time format."""
    return _clock.format(epoch)


class AuditLog:
    """Appends audit records; ``reopen()`` on SIGHUP takes effect at the next ``flush()``."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._reopen = False
        self._failed = False
        self._out = self._open()

    def _open(self) -> TextIO:
        if self._target == "-":
            return sys.stdout
        # Created 0600 and never through a symlink: the trail is for the operator only.
        fd = os.open(Path(self._target), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=BUFFER_BYTES)

    def event(self, **fields: Any) -> None:
        """Write one record; ``fields`` must hold only non-secret, JSON-able values."""
        record = {"ts": _clock.format(time.time()), "schema": SCHEMA, **fields}
        line = json.dumps(record, default=str) + "\n"
        try:
            with self._lock:
                self._out.write(line)
                self._out.flush()
        except (OSError, ValueError) as exc:
            self._report(exc)

    def flush(self) -> None:
        """Push buffered records to the file; reopen it first if SIGHUP asked for it."""
        try:
            with self._lock:
                if self._reopen:
                    self._reopen = False
                    self._out.flush()
                    if self._out is not sys.stdout:
                        self._out.close()
                    self._out = self._open()
                self._out.flush()
            self._failed = False
        except (OSError, ValueError) as exc:
            self._report(exc)

    def reopen(self) -> None:
        """Safe from a signal handler: only sets a flag the next flush() acts on."""
        self._reopen = True

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._out is not sys.stdout:
                self._out.close()

    def _report(self, exc: BaseException) -> None:
        if not self._failed:  # once per failure streak, not once per call
            self._failed = True
            log.error("audit log write failed: %s",
                      getattr(exc, "strerror", None) or type(exc).__name__)
