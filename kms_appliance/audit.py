"""The JSON audit stream: one object per security-relevant event, one per line.

The schema is documented and versioned in docs/audit-log.md; bump ``SCHEMA``
on any incompatible change. Only identifiers, versions, outcomes and
fingerprints are written: never plaintext, DEKs, KEKs, tokens or access keys.

Cost matters here: a record is written for every Encrypt and Decrypt, and
the request threads share one GIL. Profiles showed one write syscall per
record costing ~20% of the throughput at 16 calls in flight (each syscall
drops the GIL, and every drop is a thread hand-off), and any Python on the
request path costing several times its own time. So records go to a
buffer, and a flusher thread writes it at most ``flush_interval`` after the
first record waiting: one syscall per interval under load. Producers
registered with :meth:`AuditLog.before_flush` (the gRPC call accounting)
hand their queued records over on the flusher's thread just before each
write. A ``kill -9`` can lose only the last interval; ``flush_interval=0``
writes each record before the answer leaves, for operators who want that
guarantee at that price. The stream is separate from the operational log,
so no log setting can drop, duplicate or reformat it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

SCHEMA = 1
BUFFER_BYTES = 1 << 16
log = logging.getLogger("kms_appliance.audit")
# Built once (json.dumps(default=...) builds one per call); compact: the trail is for machines.
_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring_ascii  # a str as _encode writes it, quotes included


def fingerprint(ciphertext: bytes) -> str:
    """A short, non-reversible id joining an encrypt to its later decrypts."""
    return hashlib.sha256(ciphertext).hexdigest()[:16]


class _Clock:
    """ISO 8601 UTC with milliseconds, formatted once per second and reused per millisecond.

    Under load several records share a millisecond; each cache is one
    attribute holding a tuple, swapped whole, so threads never see half of one.
    """

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")
        self._milli: tuple[int, str] = (-1, "")

    def format(self, epoch: float) -> str:
        ms = int(epoch * 1000)
        last, text = self._milli
        if ms != last:
            whole, frac = divmod(ms, 1000)
            second, prefix = self._second
            if whole != second:
                prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
                self._second = (whole, prefix)
            text = f"{prefix}.{frac:03d}Z"
            self._milli = (ms, text)
        return text


_clock = _Clock()


def line(fields: dict[str, Any], ts: float) -> str:
    """One record as a JSON line; ``ts`` is when the event happened."""
    return _encode({"ts": _clock.format(ts), "schema": SCHEMA, **fields}) + "\n"


class CallLines:
    """Formats successful call records with the unchanging part of each line cached.

    Why: of a call record's fields only ts, uid, duration and fingerprint
    change from one successful call to the next, and encoding the whole dict
    cost ~5 us a call on the audit flusher's thread, whose time is the
    request threads' time on a busy CPU (cached, the line costs ~1.3 us).
    The line is byte-for-byte what :func:`line` writes.
    """

    MAX_CACHED = 1024  # key_id/version combinations; a Decrypt's key_id comes from the caller

    def __init__(self, backend: str, key_name: str) -> None:
        self._backend = backend
        self._key_name = key_name
        self._parts: dict[tuple[str, str, str, str, bool | None], tuple[str, str, str]] = {}

    def ok(self, ts: float, elapsed: float, api: str, method: str, uid: str, key_id: str,
           key_version: str, ct_fp: str, cached: bool | None) -> str:
        key = (method, api, key_id, key_version, cached)
        parts = self._parts.get(key) or self._cache(key)
        head, mid, tail = parts
        return (f'{{"ts":"{_clock.format(ts)}",{head}{_quote(uid)}{mid}'
                f'{round(elapsed * 1000, 3)!r},"ct_fp":"{ct_fp}"{tail}}}\n')

    def _cache(self, key: tuple[str, str, str, str, bool | None]) -> tuple[str, str, str]:
        method, api, key_id, key_version, cached = key
        head = _encode({"schema": SCHEMA, "event": method, "api": api})[1:-1] + ',"uid":'
        mid = "," + _encode({"backend": self._backend, "key_name": self._key_name,
                             "key_id": key_id, "key_version": key_version, "outcome": "ok",
                             "code": "OK"})[1:-1] + ',"duration_ms":'
        tail = "" if cached is None else "," + _encode({"cached": cached})[1:-1]
        if len(self._parts) >= self.MAX_CACHED:
            self._parts.clear()
        self._parts[key] = (head, mid, tail)
        return head, mid, tail


class AuditLog:
    """Appends audit records; ``reopen()`` on SIGHUP takes effect at the next ``flush()``."""

    def __init__(self, target: str, flush_interval: float = 0.0) -> None:
        self._target = target
        self._interval = flush_interval
        self._lock = threading.Lock()
        self._pending = threading.Event()  # set while a record waits in the buffer
        self._closed = False
        self._reopen = False
        self._failed = False
        self._out = self._open()
        self._producers: list[Callable[[], None]] = []
        self._drain_lock = threading.Lock()  # one drainer at a time keeps records in order
        self._flusher: threading.Thread | None = None
        if flush_interval > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="audit-flush",
                                             daemon=True)
            self._flusher.start()

    def _open(self) -> TextIO:
        if self._target == "-":
            return sys.stdout
        # Created 0600 and never through a symlink: the trail is for the operator only.
        fd = os.open(Path(self._target), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=BUFFER_BYTES)

    @property
    def deferred(self) -> bool:
        """True when records may wait (``flush_interval`` > 0) and producers may defer theirs."""
        return self._flusher is not None

    def before_flush(self, producer: Callable[[], None]) -> None:
        """Have the flusher call ``producer`` (which appends its queued records) before each write."""
        self._producers.append(producer)

    def arm(self) -> None:
        """Make sure the flusher runs within one interval (an attribute read when already armed)."""
        if not self._pending.is_set():
            self._pending.set()

    def event(self, **fields: Any) -> None:
        """Write one record; ``fields`` must hold only non-secret, JSON-able values."""
        self.append(fields)

    def append(self, fields: dict[str, Any], ts: float | None = None) -> None:
        """:meth:`event` for a dict already built; ``ts`` is when it happened (default: now)."""
        self.write(line(fields, time.time() if ts is None else ts))

    def write(self, lines: str) -> None:
        """Append whole, already formatted lines (one buffer write for a batch)."""
        try:
            with self._lock:
                self._out.write(lines)
                if self._flusher is None:
                    self._out.flush()
        except (OSError, ValueError) as exc:
            self._report(exc)
        if self._flusher is not None and threading.current_thread() is not self._flusher:
            self.arm()  # the flusher's own writes (producers' batches) are flushed right after

    def _flush_loop(self) -> None:
        """Sleep until a record is buffered, let more arrive for one interval, write them."""
        while not self._closed:
            self._pending.wait()
            time.sleep(self._interval)
            self._pending.clear()  # before draining: a record queued after this re-arms it
            self._drain()
            self.flush()

    def _drain(self) -> None:
        with self._drain_lock:
            for produce in self._producers:
                try:
                    produce()
                except Exception:  # a producer bug must not stop the audit trail
                    log.exception("audit producer failed")

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
        self._closed = True
        self._pending.set()
        if self._flusher is not None:
            self._flusher.join(timeout=max(1.0, 2 * self._interval))
        self._drain()
        self.flush()
        with self._lock:
            if self._out is not sys.stdout:
                try:
                    self._out.close()
                except OSError as exc:  # what the final flush could not write is lost, said once
                    self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if not self._failed:  # once per failure streak, not once per call
            self._failed = True
            log.error("audit log write failed: %s",
                      getattr(exc, "strerror", None) or type(exc).__name__)
