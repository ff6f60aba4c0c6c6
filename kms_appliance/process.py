"""Process-level hardening for ``serve``: no core dumps, a chain that dies together, safe signals.

Why each piece:

- **Core dumps**: a core of this process holds the KEK (local backend) and
  recent DEKs. ``RLIMIT_CORE`` 0 stops the kernel writing one, and
  ``PR_SET_DUMPABLE`` 0 also stops ptrace attach and ``/proc/<pid>/mem`` or
  ``environ`` reads by other processes of the same uid. Our own
  ``/proc/self/fd/<n>`` paths (the socket directory, socketfs.py) keep
  working: the kernel always lets a process reach its own ``/proc`` entries.
- **The frozen chain**: the static binary is three processes (staticx's
  bootloader -> PyInstaller's bootloader -> Python). SIGKILL of an ancestor
  used to orphan Python, which kept serving on the socket. Python therefore
  asks for SIGKILL when its direct parent dies (``PR_SET_PDEATHSIG``) and
  watches the top one with a pidfd (:func:`watch_top`). Both bootloaders exit
  when their child exits, so Python's exit ends the whole chain.
- **Signals**: a Python-level handler runs in the main thread between two
  bytecodes, possibly while that thread holds a lock (``Event.set()`` there
  deadlocked on a burst of SIGHUPs). :class:`Wakeup` installs handlers that
  take no lock and do no I/O; the C-level handler writes the signal number to
  a pipe (``signal.set_wakeup_fd``) that the maintenance loop polls.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import select
import shutil
import signal
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("kms_appliance.process")

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
ORPHAN_GRACE = 0.4  # seconds of graceful stop once the top process died, then a hard exit
ORPHAN_EXIT = 137  # as if SIGKILLed with the top process
STOP = 0xF0  # the wake-up code of request_stop() (not a signal number)
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# A second SIGINT forces exit, but not one within this many seconds of the first: a Ctrl-C
# reaches all three processes of the binary, and the bootloaders forward theirs too.
SAME_SIGNAL = 0.5


@dataclass(frozen=True)
class Chain:
    """Our ancestors inside the frozen binary (None: not frozen / not under staticx)."""

    parent: int | None  # PyInstaller's bootloader: PR_SET_PDEATHSIG covers it
    top: int | None  # staticx's bootloader, the pid the operator sees: watched by a pidfd


def harden() -> Chain:
    """Turn core dumps off and tie this process's life to the frozen chain; call first in ``serve``."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    chain = frozen_chain()  # read /proc links while we are still dumpable (no difference for self)
    _prctl(PR_SET_DUMPABLE, 0)
    if chain.parent is not None:
        die_with_parent(chain.parent)
    return chain


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` (the thread that forked or started it) ends."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the prctl: nobody sends the signal now
        os._exit(ORPHAN_EXIT)


def dumpable() -> bool:
    """What ``PR_GET_DUMPABLE`` says about this process."""
    return bool(_prctl(PR_GET_DUMPABLE, 0))


def frozen_chain() -> Chain:
    """Identify our bootloaders when running as the frozen binary; empty otherwise.

    Only the frozen build gets a parent death signal: run from a source tree,
    the parent is a shell or a service manager whose exit must not kill us.
    """
    if not getattr(sys, "frozen", False):
        return Chain(None, None)
    parent = os.getppid()
    if _exe(parent) != _exe(os.getpid()):  # the onefile bootloader runs the same executable
        return Chain(None, None)
    bundle, prog = os.environ.get("STATICX_BUNDLE_DIR"), os.environ.get("STATICX_PROG_PATH")
    top = _ppid(parent)
    if not bundle or not prog or top is None or top <= 1:
        return Chain(parent, None)
    if not (_exe(parent) or "").startswith(bundle.rstrip("/") + "/"):
        return Chain(parent, None)
    if (_exe(top) or "").removesuffix(" (deleted)") != os.path.realpath(prog):
        return Chain(parent, None)
    return Chain(parent, top)


def watch_top(chain: Chain, stopping: Callable[[float], bool], on_gone: Callable[[], None]) -> None:
    """Thread target: when the top process dies, ``on_gone()``, then a hard exit after ORPHAN_GRACE.

    ``stopping(timeout)`` waits for the plugin's own stop and returns True
    once it began (the supervisor's ``stopping.wait``). A pidfd cannot be
    fooled by pid reuse; the race between reading the pid and opening the
    pidfd is closed by re-checking that the top is still our parent's parent.
    """
    if chain.top is None or chain.parent is None:
        return
    fd = _pidfd(chain.top)
    try:
        if fd is not None and _ppid(chain.parent) == chain.top:
            while not _readable(fd, 1.0):
                if stopping(0):
                    return
    finally:
        if fd is not None:
            os.close(fd)
    log.warning("the binary's top process (pid %d) is gone: stopping now", chain.top)
    _remove_bundle()
    on_gone()
    time.sleep(ORPHAN_GRACE)  # a quick graceful stop ends the process (exit_now) before this
    _flush_logs()
    os._exit(ORPHAN_EXIT)


def _remove_bundle() -> None:
    """Remove staticx's unpack directory, which its killed owner can no longer remove.

    The running bootloader and this process keep their mapped files; nothing
    reads the directory again (PyInstaller's own ``_MEI`` directory is removed
    by its bootloader once we exit).
    """
    bundle = os.environ.get("STATICX_BUNDLE_DIR", "")
    if os.path.basename(bundle.rstrip("/")).startswith("staticx-"):
        shutil.rmtree(bundle, ignore_errors=True)


def exit_now(code: int) -> None:
    """Leave without interpreter finalisation, once ``stop()`` has drained everything.

    Daemon threads (grpc's, the HTTP server's) may still run at exit; a daemon
    thread writing to stderr while the interpreter finalises aborts it
    ("Fatal Python error ... at interpreter shutdown"): SIGABRT, a core. By
    now every record is written and the socket removed, so nothing is lost.
    """
    _flush_logs()
    os._exit(code)


class Wakeup:
    """Signals and cross-thread requests, delivered to the maintenance loop without locks.

    ``notify()`` is safe from any thread; :meth:`signals` installs the
    handlers (main thread only) and restores the previous ones after.
    """

    def __init__(self) -> None:
        # A pipe, not a socketpair: 64 KiB of one-byte codes (a socket buffer counts ~1 KiB per
        # send and fills after a few hundred). Closed when the object goes, never before.
        self._rx, self._tx = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        weakref.finalize(self, _close, self._rx, self._tx)
        self._stop_signal = 0  # set by the handler itself: never lost, even with a full pipe
        self._stop_at = 0.0

    def notify(self, code: int) -> None:
        """Wake the loop with ``code``; a full pipe already holds a pending wake-up (callers that
        must not be lost, like a stop request, also set a flag the loop reads)."""
        with contextlib.suppress(OSError):
            os.write(self._tx, bytes([code]))

    def wait(self, timeout: float) -> set[int]:
        """Every code received within ``timeout`` (at once if some are pending), bursts coalesced.

        A SIGTERM/SIGINT is reported even if its byte found the pipe full.
        """
        codes: set[int] = set()
        if _readable(self._rx, timeout):
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while chunk := os.read(self._rx, 65536):
                    codes.update(chunk)
        if self._stop_signal:
            codes.add(self._stop_signal)
        return codes

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT/SIGHUP go to the wake-up pipe; a second SIGINT while stopping exits at once."""
        old = {sig: signal.signal(sig, self._handler) for sig in HANDLED}
        old_fd = signal.set_wakeup_fd(self._tx, warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread, maybe inside a held lock: no lock, no
        # logging, no I/O. The C-level handler has already written ``signum`` to the pipe.
        now = time.monotonic()
        if signum == signal.SIGINT and self._stop_signal and now - self._stop_at > SAME_SIGNAL:
            os._exit(130)
        if signum != signal.SIGHUP and not self._stop_signal:
            self._stop_signal, self._stop_at = signum, now


# ---- helpers ---------------------------------------------------------------------------------

def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _prctl(option: int, arg: int) -> int:
    libc: Any = ctypes.CDLL(None, use_errno=True)
    rc = int(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return rc


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _ppid(pid: int) -> int | None:
    """The parent of ``pid`` from /proc/<pid>/stat (the command name may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else None


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))


def _flush_logs() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
