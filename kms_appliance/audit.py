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

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import atomicfile
from .backends.base import KeyStatus, Unwrapped, Wrapped
from .errors import BackendUnavailable, ConfigError, KmsError, SetupError

if TYPE_CHECKING:
    from .backends.base import KeyBackend
    from .metrics import Metrics
    from .threads import Supervisor

KEY = "observability.audit_log"
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


@dataclass(frozen=True, slots=True)
class Site:
    """Where a call came in: its API (``v2``, ``v1beta1``) and method (``encrypt``, ...).

    One constant per servicer method, so a call carries one reference, not two strings.
    """

    api: str
    method: str


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a call failed, as the record and the metrics say it."""

    outcome: str  # the bounded error class (errors.KmsError.outcome, or "internal")
    code: str  # the gRPC status code name returned
    message: str  # the operator-safe message also returned to the caller


@dataclass(slots=True)
class CallRecord:
    """One finished Encrypt, Decrypt (or refused request), as the audit trail records it.

    Built on the request path and turned into metrics and a line later
    (:class:`kms_appliance.kms.calls.Calls`); a slots dataclass is the
    cheapest named record to build there (positional arguments, no freezing).
    Holds the ciphertext, to fingerprint it off the request path; never a plaintext.
    """

    ts: float  # when the call finished (time.time())
    elapsed: float  # seconds it took
    site: Site
    uid: str  # validated (at most MAX_UID characters), or the bounded head of an invalid one
    key_id: str
    key_version: str
    ciphertext: bytes
    cached: bool | None = None  # decrypts: answered from the DEK cache
    failure: Failure | None = None  # None: the call succeeded


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

    def ok(self, rec: CallRecord, ct_fp: str) -> str:
        """The line of a successful call; ``ct_fp`` is its ciphertext's fingerprint."""
        site, cached = rec.site, rec.cached
        key = (site.method, site.api, rec.key_id, rec.key_version, cached)
        parts = self._parts.get(key) or self._cache(key)
        head, mid, tail = parts
        return (f'{{"ts":"{_clock.format(rec.ts)}",{head}{_quote(rec.uid)}{mid}'
                f'{round(rec.elapsed * 1000, 3)!r},"ct_fp":"{ct_fp}"{tail}}}\n')

    def failed(self, rec: CallRecord, failure: Failure, ct_fp: str) -> str:
        """The line of a failed call (rare: built field by field)."""
        fields: dict[str, Any] = {
            "event": rec.site.method, "api": rec.site.api, "uid": rec.uid,
            "backend": self._backend, "key_name": self._key_name, "key_id": rec.key_id,
            "key_version": rec.key_version, "outcome": failure.outcome, "code": failure.code,
            "duration_ms": round(rec.elapsed * 1000, 3), "ct_fp": ct_fp,
        }
        if rec.cached is not None:
            fields["cached"] = rec.cached
        if failure.message:
            fields["error"] = failure.message
        return line(fields, rec.ts)

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
    """Appends audit records; ``reopen()`` on SIGHUP takes effect at the next ``flush()``.

    The trail must never be lost silently. A failed open or write is
    counted (``kms_appliance_audit_write_failures_total``), every record it
    cannot keep is counted (``kms_appliance_audit_records_dropped_total``),
    :meth:`problem` says why (it fails /readyz), the error is logged when it
    starts and then at most once per ``LOG_EVERY``, and the reopen is
    retried on every SIGHUP and every ``RETRY_EVERY`` seconds until it works.
    When a reopen fails but the previous file is still linked (logrotate
    renamed it), records keep going there: nothing is lost meanwhile.
    ``lost`` is True while records are being dropped; with
    ``observability.audit_required`` the servicers then refuse calls
    (:class:`AuditGate`).
    """

    RETRY_EVERY = 2.0
    LOG_EVERY = 60.0

    def __init__(self, target: str, flush_interval: float = 0.0, *, metrics: Metrics | None = None,
                 threads: Supervisor | None = None) -> None:
        self._target = target
        self._path = None if target == "-" else atomicfile.check_path(KEY, target)
        self._interval = flush_interval
        self._lock = threading.Lock()
        self._pending = threading.Event()  # set while a record waits in the buffer
        self._closed = False
        self._reopen = False
        self._failures = metrics.audit_write_failures if metrics is not None else None
        self._dropped = metrics.audit_records_dropped if metrics is not None else None
        self._problem: str | None = None
        self._retry_at = 0.0
        self._logged_at = -LOG_NEVER
        self._current = True  # the open file is the one at the path (not a kept previous one)
        self._unflushed = 0  # records written to the buffer since the last good flush
        self._dropped_since = 0
        self.lost = False  # records are being dropped (no file open): read by AuditGate per call
        self._out: TextIO | None = self._open()  # at start an unsafe path is a refusal
        self._producers: list[Callable[[], None]] = []
        self._drain_lock = threading.Lock()  # one drainer at a time keeps records in order
        self._flusher: threading.Thread | None = None
        if flush_interval > 0:
            if threads is not None:
                self._flusher = threads.start("audit-flush", self._flush_loop)
            else:
                self._flusher = threading.Thread(target=self._flush_loop, name="audit-flush",
                                                 daemon=True)
                self._flusher.start()

    def _open(self) -> TextIO:
        if self._path is None:
            return sys.stdout
        fd = open_file(self._path)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=BUFFER_BYTES)

    @property
    def deferred(self) -> bool:
        """True when records may wait (``flush_interval`` > 0) and producers may defer theirs."""
        return self._flusher is not None

    def problem(self) -> str | None:
        """A readiness check (Health.watch): None while the trail is written, else why not."""
        return self._problem

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
        with self._lock:
            out = self._out
            if out is None:
                self._drop(lines.count("\n"))
            elif self._flusher is None:  # written through at once: counted only if lost
                try:
                    out.write(lines)
                    out.flush()
                except (OSError, ValueError) as exc:
                    self._unflushed += lines.count("\n")
                    self._write_failed(exc)
            else:
                self._unflushed += lines.count("\n")  # what a failed flush would lose
                try:
                    out.write(lines)
                except (OSError, ValueError) as exc:
                    self._write_failed(exc)
        if self._flusher is not None and threading.current_thread() is not self._flusher:
            self.arm()  # the flusher's own writes (producers' batches) are flushed right after

    def _flush_loop(self) -> None:
        """Sleep until a record is buffered, let more arrive for one interval, write them.

        While the trail is broken it also wakes every ``RETRY_EVERY`` to retry the reopen.
        """
        while not self._closed:
            if not self._pending.wait(self.RETRY_EVERY if self._problem is not None else None):
                self.flush()  # nothing buffered: only the retry is due
                continue
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
        """Push buffered records to the file; reopen it first if SIGHUP asked for it or a retry is due."""
        with self._lock:
            retry = self._problem is not None and time.monotonic() >= self._retry_at
            if self._reopen or retry:
                self._reopen = False
                self._reopen_now()
            out = self._out
            if out is None:
                self._remind()
                return
            try:
                out.flush()
            except (OSError, ValueError) as exc:
                self._write_failed(exc)
                return
            self._unflushed = 0
            if self._problem is not None and self._current:
                self._recovered()
            else:
                self._remind()

    def _reopen_now(self) -> None:
        """Open the path afresh (lock held); on failure keep a still-linked previous file."""
        old = self._out
        if old is not None:
            try:
                old.flush()
            except (OSError, ValueError) as exc:
                self._write_failed(exc)
                old = None
        if self._path is None:
            self._current = True
            return
        try:
            new = self._open()
        except KmsError as exc:
            self._open_failed(exc.message, old)
            return
        if old is not None:
            _close_quietly(old)
        self._out = new
        self._current = True
        self.lost = False

    def _open_failed(self, reason: str, old: TextIO | None) -> None:
        self._count_failure()
        self._current = False
        if old is not None and _still_linked(old):
            reason += "; records still go to the previous file"
        else:
            if old is not None:
                _close_quietly(old)
            self._out = None
            self.lost = True
        self._broken(reason)

    def _write_failed(self, exc: BaseException) -> None:
        """A write or flush failed (lock held): what the buffer held is lost; reopen later."""
        self._count_failure()
        self._drop(self._unflushed)
        self._unflushed = 0
        what = "stdout" if self._path is None else atomicfile.show(self._path)
        reason = f"cannot write {what}: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        out = self._out
        if self._path is not None and out is not None:
            _close_quietly(out)
            self._out = None
            self.lost = True
        self._current = False
        self._broken(reason)

    def _broken(self, reason: str) -> None:
        first = self._problem is None
        self._problem = reason
        self._retry_at = time.monotonic() + self.RETRY_EVERY
        if first:
            self._logged_at = time.monotonic()
            log.error("audit log: %s; retrying every %gs and on SIGHUP", reason, self.RETRY_EVERY)

    def _remind(self) -> None:
        """While broken: one line per LOG_EVERY, not one per record or per retry."""
        if self._problem is not None and time.monotonic() - self._logged_at >= self.LOG_EVERY:
            self._logged_at = time.monotonic()
            log.error("audit log still failing: %s; %d records dropped so far",
                      self._problem, self._dropped_since)

    def _recovered(self) -> None:
        log.warning("audit log writable again (%d records were dropped meanwhile)", self._dropped_since)
        self._problem = None
        self._dropped_since = 0
        self.lost = False

    def _count_failure(self) -> None:
        if self._failures is not None:
            self._failures.inc()

    def _drop(self, records: int) -> None:
        if records:
            self._dropped_since += records
            if self._dropped is not None:
                self._dropped.inc(records)

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
            out, self._out = self._out, None
            if out is not None and out is not sys.stdout:
                try:
                    out.close()
                except (OSError, ValueError) as exc:  # what the final flush could not write is lost
                    self._write_failed(exc)


LOG_NEVER = 1e9


def _close_quietly(out: TextIO) -> None:
    """Close a file whose buffer may not be writable: the descriptor is released either way."""
    if out is sys.stdout:
        return
    with contextlib.suppress(OSError, ValueError):
        out.close()


def _still_linked(out: TextIO) -> bool:
    """True if ``out`` is a file that still has a name (renamed by logrotate, not deleted)."""
    if out is sys.stdout:
        return True
    try:
        return os.fstat(out.fileno()).st_nlink > 0
    except (OSError, ValueError):
        return False


# ---- the path: opened like the socket's, never through a symlink ---------------------------


def open_file(path: Path) -> int:
    """Open the audit file for appending; one-line ``KmsError`` naming the setting otherwise.

    ConfigError (exit 2) for an operator mistake (missing directory, a
    directory at the path); SetupError (exit 1) for a refusal: a symlinked
    directory component, a directory other users can write, a file that is
    not a regular file (a FIFO would hang start-up or, after a rotation,
    every call), not ours, or writable by others (forged records).
    """
    dfd = _open_dir(path)
    try:
        return _open_in(dfd, path)
    finally:
        os.close(dfd)


def check(target: str) -> str:
    """``kms-appliance check``: what ``open_file`` would refuse, without creating anything.

    (Creating the file here, perhaps as root, would leave one the plugin's
    own user is then refused.)
    """
    if target == "-":
        return "stdout"
    path = atomicfile.check_path(KEY, target)
    dfd = _open_dir(path)
    try:
        if not path.name:
            raise ConfigError(KEY, f"{atomicfile.show(path)} is a directory; give a file path")
        try:
            _check_file(atomicfile.show(path), os.stat(path.name, dir_fd=dfd, follow_symlinks=False))
        except FileNotFoundError:
            return f"{atomicfile.show(path)} does not exist yet; serve creates it (0600)"
    finally:
        os.close(dfd)
    return f"{atomicfile.show(path)} is a regular file of ours in a safe directory"


def _open_dir(path: Path) -> int:
    """The file's directory, opened after atomicfile's checks; a missing one is the operator's
    mistake (ConfigError), anything else a refusal (SetupError)."""
    try:
        return atomicfile.open_checked_dir(path.parent)
    except FileNotFoundError:
        raise ConfigError(KEY, f"directory {atomicfile.show(path.parent)} does not exist") from None
    except atomicfile.UnsafePath as exc:
        raise SetupError(f"{KEY}: {exc.strerror}") from None
    except OSError as exc:
        raise SetupError(f"{KEY}: cannot open directory {atomicfile.show(path.parent)}: "
                         f"{exc.strerror}") from None


def _open_in(dfd: int, path: Path) -> int:
    shown = atomicfile.show(path)
    if not path.name:
        raise ConfigError(KEY, f"{shown} is a directory; give a file path")
    with contextlib.suppress(FileNotFoundError):  # absent: created below, 0600
        _check_file(shown, os.stat(path.name, dir_fd=dfd, follow_symlinks=False))
    flags = (os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
             | os.O_NOCTTY)
    try:
        fd = os.open(path.name, flags, 0o600, dir_fd=dfd)
    except OSError as exc:  # a swap between the stat and here
        if exc.errno == errno.EISDIR:
            raise ConfigError(KEY, f"{shown} is a directory; give a file path") from None
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise SetupError(f"{KEY}: {shown} is a symlink or a FIFO; refusing to open it") from None
        raise SetupError(f"{KEY}: cannot open {shown}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        _check_file(shown, st)
        os.set_blocking(fd, True)
        _end_with_newline(dfd, path.name, fd, st)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _end_with_newline(dfd: int, name: str, fd: int, st: os.stat_result) -> None:
    """A line torn by a failed write (disk full) or a kill -9 is ended before the next record.

    Otherwise the first record after the reopen or restart would be glued
    to the torn tail and both lost to a line-by-line reader.
    """
    if st.st_size == 0:
        return
    try:
        rfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return  # write-only for us: leave the tail as it is
    try:
        rst = os.fstat(rfd)
        same = (rst.st_dev, rst.st_ino) == (st.st_dev, st.st_ino)
        if same and os.pread(rfd, 1, st.st_size - 1) not in (b"\n", b""):
            os.write(fd, b"\n")
    finally:
        os.close(rfd)


def _check_file(shown: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(KEY, f"{shown} is a directory; give a file path")
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else \
            "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise SetupError(f"{KEY}: {shown} is {kind}; refusing to open it")
    if st.st_uid != os.geteuid():
        raise SetupError(f"{KEY}: {shown} is owned by uid {st.st_uid}, "
                           f"not by this process (uid {os.geteuid()})")
    if st.st_mode & 0o022:
        raise SetupError(f"{KEY}: {shown} is writable by other users "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}); they could forge records")


class AuditGate:
    """``observability.audit_required``: the servicers' backend refuses calls while records are lost.

    Wraps only what the servicers use (the health probe keeps the real
    backend); the per-call cost is one attribute read. Status turns
    unhealthy meanwhile, so kube-apiserver's own health check shows it.
    """

    def __init__(self, backend: KeyBackend, audit: AuditLog) -> None:
        self._backend = backend
        self._audit = audit
        self.name = backend.name
        self.refresh_interval = backend.refresh_interval

    def wrap(self, plaintext: bytes) -> Wrapped:
        if self._audit.lost:
            raise BackendUnavailable(REFUSED)
        return self._backend.wrap(plaintext)

    def unwrap(self, ciphertext: bytes, key_id: str | None,
               annotations: Mapping[str, bytes]) -> Unwrapped:
        if self._audit.lost:
            raise BackendUnavailable(REFUSED)
        return self._backend.unwrap(ciphertext, key_id, annotations)

    def status(self) -> KeyStatus:
        st = self._backend.status()
        if self._audit.lost and st.healthy:
            return dataclasses.replace(st, healthy=False, reason=REFUSED)
        return st

    def refresh(self) -> bool:
        return self._backend.refresh()

    def close(self) -> None:
        self._backend.close()


REFUSED = "the audit trail cannot be written (observability.audit_required)"
