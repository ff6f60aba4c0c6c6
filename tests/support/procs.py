"""Child-process lifecycle for every suite: start with log files, stop with a bound, prove
nothing of the process is left, and keep every log so a failing test can show its tails.

Why one small class: every process a test starts (the plugin from source or frozen, the
emulator, etcd, kube-apiserver, kubelet) is started, waited on and killed the same way, and
scenarios such as "plugin killed with -9" need the exact signal under the test's control.
Each process leads a session of its own, so its process group is everything it started (the
frozen binary is three processes): a stop is only done when that group is empty.
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

REPO = Path(__file__).resolve().parents[2]
STOP_GRACE_S = 15.0
GROUP_GONE_S = 5.0  # after the leader exits, its group's members must follow within this
PR_SET_PDEATHSIG = 1
# Resolved once in the parent: the child between fork and exec only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test runner dies, so a
    killed CI job leaves no apiserver or etcd behind (Linux prctl)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ProcessExitedError(RuntimeError):
    """A component exited while the harness was waiting for it."""


class LeftoverProcessError(AssertionError):
    """A stopped process left members of its process group running (they were killed)."""


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of all of ``pid``'s threads so far (``/proc/PID/stat``)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_fields(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict (Name, Uid, CapEff, CapBnd, NoNewPrivs...)."""
    return parse_status(Path(f"/proc/{pid}/status").read_text())


def parse_status(text: str) -> dict[str, str]:
    """The text of a ``/proc/<pid>/status`` (also one read inside a container) as a dict."""
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def alive(pid: int) -> bool:
    """In /proc and not a zombie (a zombie serves nothing and holds no socket)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (those of every thread)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid``, recursively."""
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = _stat_fields(int(entry.name))
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (racy: a component that loses the race fails to
    start and its log says why)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2,
               alive: Callable[[], None] | None = None) -> float:
    """Poll ``predicate`` until true or ``timeout_s``; return seconds waited. ``alive`` is called
    every round and raises if the component died, so a crash is reported at once."""
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


def eventually(cond: Callable[[], bool], timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Whether ``cond`` holds within ``timeout`` (for ``assert eventually(...)``); unlike
    ``wait_until`` an exception from ``cond`` is not retried but fails the test."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def only_child(pid: int, timeout: float = 10.0) -> int:
    """The one live descendant of ``pid`` (a plugin's peer gate process), waiting while
    there is none yet or an ended one has not been reaped; fails if there stay several."""
    found: list[int] = []

    def one() -> bool:
        found[:] = [p for p in descendants(pid) if alive(p)]
        return len(found) == 1

    assert eventually(one, timeout, 0.05), f"pid {pid}: expected one live child, found {found}"
    return found[0]


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
    err_path: Path | None = None  # stderr's own file; None: into log_path
    banner: bool = True  # a "===== start #N" line before each start's output
    # False: a process group of its own but the caller's session, and so the caller's scheduler
    # autogroup (a new session is a new autogroup, which the kernel weighs as much as all of the
    # caller's processes together): the bench's servers share the CPU as its load generator does.
    own_session: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    def start(self) -> None:
        """Start (or start again); output goes to ``log_path`` (and ``err_path``)."""
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with contextlib.ExitStack() as files:
            log = files.enter_context(self.log_path.open("ab"))
            err = files.enter_context(self.err_path.open("ab")) if self.err_path else None
            if self.banner:
                log.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
                log.flush()
            self.proc = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=log, stderr=err or subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=self.own_session,
                process_group=None if self.own_session else 0,
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

    def output(self) -> bytes:
        """Everything it wrote so far (its log, and its stderr file if separate)."""
        files = [f for f in (self.log_path, self.err_path) if f is not None and f.exists()]
        return b"".join(f.read_bytes() for f in files)

    def check_alive(self) -> None:
        """Raise ``ProcessExitedError`` (with the log tail) if it has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessExitedError(f"{self.name} exited with {self.proc.returncode}; log tail:\n"
                                     f"{tail(self.log_path, 30)}")

    def stop(self, grace_s: float = STOP_GRACE_S, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` (SIGTERM) to the process, SIGKILL to its group after ``grace_s``; then
        prove the group empty (``LeftoverProcessError`` if not). Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._killpg()
                self.proc.wait(timeout=grace_s)
        self.prove_gone()
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL to this process only (the crash scenario: the rest of its group must
        follow by itself, which ``stop``/``prove_gone`` checks); return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_GRACE_S)
        return self.proc.returncode

    def prove_gone(self) -> None:
        """After the process exited: its group must empty within ``GROUP_GONE_S``;
        whatever is left is killed and reported."""
        if self.proc is None:
            return
        deadline = time.monotonic() + GROUP_GONE_S
        while (left := group_members(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if left:
            self._killpg()
            raise LeftoverProcessError(f"{self.name}: processes {left} outlived it (killed)")

    def _killpg(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class ProcessRegistry:
    """Every process a test started, so teardown and failure reports see all."""

    processes: list[ManagedProcess] = field(default_factory=list)

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Stop in reverse start order, so the apiserver goes before its plugin and etcd;
        every process is stopped before a leftover is reported."""
        leftovers: list[LeftoverProcessError] = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except LeftoverProcessError as exc:
                leftovers.append(exc)
        if leftovers:
            raise leftovers[0]

    def tails(self, lines: int = 40) -> list[tuple[str, str]]:
        logs = [(p.name, f) for p in self.processes for f in (p.log_path, p.err_path) if f is not None]
        return [(f"{name} ({path})", tail(path, lines)) for name, path in logs]
