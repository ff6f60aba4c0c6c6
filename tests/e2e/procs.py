"""Child-process lifecycle for the e2e harness: start with a log file, stop
with a bound, and keep every log so a failing test can show its tails.

Why one small class: every component (etcd, kube-apiserver, a KMS plugin) is
started, waited on, restarted and killed the same way, and scenarios such as
"plugin killed with -9" need the exact signal under the test's control.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_S = 15.0
PR_SET_PDEATHSIG = 1
# Resolved once in the parent: the child between fork and exec only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test runner dies, so a
    killed CI job leaves no apiserver or etcd behind (Linux prctl)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ProcessExitedError(RuntimeError):
    """A component exited while the harness was waiting for it."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1.

    Racy by nature (another process may take it before the component binds),
    which is acceptable on a test machine; the component then fails to start
    and its log says why.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
    alive: Callable[[], None] | None = None,
) -> float:
    """Poll ``predicate`` until true or ``timeout_s``; return seconds waited.

    ``alive`` is called every round and should raise if the component died,
    so a crash is reported at once rather than after the whole timeout.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        if alive is not None:
            alive()
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(interval_s)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (bounded read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One component process; each start appends to the same log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    def start(self) -> None:
        """Start (or start again); output goes to ``log_path``."""
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509  (one libc call, no locks)
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} never started")
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise ``ProcessExitedError`` (with the log tail) if it has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessExitedError(
                f"{self.name} exited with {self.proc.returncode}; log tail:\n{tail(self.log_path, 30)}"
            )

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process only (by pid)."""
        if self.running and self.proc is not None:
            self.proc.send_signal(sig)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace_s)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL at once (the crash scenario); return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_GRACE_S)
        return self.proc.returncode


@dataclass
class ProcessRegistry:
    """Every process a test started, so teardown and failure reports see all."""

    processes: list[ManagedProcess] = field(default_factory=list)

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Stop in reverse start order, so the apiserver goes before its plugin and etcd."""
        for process in reversed(self.processes):
            process.stop()

    def tails(self, lines: int = 40) -> list[tuple[str, str]]:
        return [(f"{p.name} ({p.log_path})", tail(p.log_path, lines)) for p in self.processes]
