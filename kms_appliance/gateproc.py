"""The peer gate in a process of its own, so a refused peer's flood cannot take the GIL.

Why a process: every refusal (accept, SO_PEERCRED, close) and every relayed
message runs a little Python. In the serving process those threads competed
for the GIL with the event loop that answers kube-apiserver: a refused peer
connecting in a loop (tens of thousands of connects/s from one process) held
the GIL about as often as the loop did, and a real client's call then
waited past a 1 s deadline a few times in ten minutes. Forked, the gate has
its own interpreter lock; the serving process only sees the relayed
connections on its private socket.

The child is forked from the supervised ``peer-gate`` thread and lives as
long as that thread waits on it:

- it dies with its parent (``PR_SET_PDEATHSIG`` SIGKILL, re-checked against
  ``getppid``), so ``kill -9`` of the plugin leaves no gate holding the
  socket; it ignores SIGTERM/SIGINT/SIGHUP (a service manager signals the
  whole group, and the parent must drain first while the child keeps
  relaying the calls in flight), and is stopped by its parent's messages;
- it reports refusals (summed per reason and uid, with the last peer's pid
  and gid) and the open-connection count every REPORT_EVERY seconds over a
  SOCK_SEQPACKET pair; the parent counts and audits them, so the metric
  stays exact and records stay aggregated (refusals.py);
- if it dies, the thread's target returns and the Supervisor forks a new
  one (the public listener stays open in the parent, so the backlog waits);
  one that keeps dying fails /livez, and so does the self-probe, which
  dials the same door.

Forking a process that already runs threads is safe here because the child
touches nothing another thread may have held: logging's locks are reset at
fork by the logging module, the child writes its log lines through a fresh
stream over a duplicate of the same descriptor, and it never calls grpc,
the audit writer or the metrics registry.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import process
from .peercred import Peer, PeerGate
from .refusals import MAX_KEYS, OTHER_UIDS
from .threads import Supervisor

log = logging.getLogger("kms_appliance.peercred")
THREAD = "peer-gate"
REPORT_EVERY = 0.1
STOP_WAIT = 3.0  # seconds for the child to end its relays and exit once told to
_MSG = 64 * 1024
RefusalSink = Callable[[Peer, str, int], None]


class GateProcess:
    """Accepts on ``listener`` in a child process; relays allowed peers to grpc on ``inner``."""

    def __init__(self, listener: socket.socket, inner: Path, allowed: frozenset[int],
                 max_connections: int, on_refuse: RefusalSink,
                 on_count: Callable[[int], None], threads: Supervisor) -> None:
        self._listener = listener
        self._args = (os.fspath(inner), allowed, max_connections)
        self._on_refuse = on_refuse
        self._on_count = on_count
        self._threads = threads
        self._closing = False
        self._pid = 0
        self._ctl: socket.socket | None = None
        self._done = threading.Event()  # the current child's reports are all read

    def start(self) -> None:
        self._threads.start(THREAD, self._run, restart=True)

    def _run(self) -> None:
        """One child's life: fork it, read its reports until it ends, reap it."""
        if self._closing:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._done.clear()
        try:
            pid = self._fork(ours, theirs)
        except BaseException:
            ours.close()
            self._done.set()
            raise  # out of processes or memory: the Supervisor tries again, then fails /livez
        finally:
            theirs.close()
        self._pid, self._ctl = pid, ours
        try:
            self._read_reports(ours)
        finally:
            self._ctl = None
            ours.close()
            status = _reap(pid, STOP_WAIT)
            self._pid = 0
            self._done.set()
        if not self._closing:
            log.error("peer gate process %d ended (%s); starting another", pid, status)

    def _fork(self, ours: socket.socket, theirs: socket.socket) -> int:
        gc.freeze()  # the child's collector then leaves the inherited heap unscanned (and shared)
        # Until the child has its own dispositions, a stop signal sent to it would run the
        # parent's handler there, which writes to the parent's wake-up pipe: held back.
        signal.pthread_sigmask(signal.SIG_BLOCK, process.HANDLED)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child; measured by the tests that run the plugin
                ours.close()  # the parent's end: the child sees EOF once the parent is gone
                os._exit(_child(self._listener, theirs, *self._args, os.getppid()))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, process.HANDLED)
            gc.unfreeze()
        return pid

    def _read_reports(self, ctl: socket.socket) -> None:
        while msg := ctl.recv(_MSG):
            try:
                report = json.loads(msg)
            except ValueError:
                log.warning("unreadable report from the peer gate process: skipped")
                continue
            for reason, uid, pid, gid, count in report.get("refused", ()):
                try:
                    self._on_refuse(Peer(pid, uid, gid), reason, count)
                except Exception as exc:  # a sink's failure must not end the door
                    log.warning("reporting a refusal failed (%s)", type(exc).__name__)
            if "open" in report:
                with contextlib.suppress(Exception):
                    self._on_count(int(report["open"]))

    def _tell(self, word: bytes) -> None:
        ctl = self._ctl
        if ctl is not None:
            with contextlib.suppress(OSError):
                ctl.send(word)

    def stop_accepting(self) -> None:
        """New connections wait in vain from now on; admitted ones keep relaying."""
        self._closing = True
        self._threads.retire(THREAD)
        self._tell(b"stop")
        self._listener.close()

    def close(self) -> None:
        """End the relays still open (after grpc drained its calls) and the child."""
        self._closing = True
        self._threads.retire(THREAD)
        self._tell(b"close")
        if not self._done.wait(STOP_WAIT) and self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._done.wait(STOP_WAIT)


def _reap(pid: int, wait: float) -> str:
    """Collect the child; SIGKILL it if it is still there after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _describe(status)
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return _describe(os.waitpid(pid, 0)[1])
        time.sleep(0.02)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


# ---- the child --------------------------------------------------------------------------------

class _Tally:
    """Refusals and the connection count since the last report (the accept loops add to it)."""

    def __init__(self) -> None:
        self._refused: dict[tuple[str, int], list[int]] = {}
        self._open: int | None = None
        self._lock = threading.Lock()

    def refused(self, peer: Peer, reason: str) -> None:
        key = (reason, peer.uid)
        with self._lock:
            if key not in self._refused and len(self._refused) >= MAX_KEYS:
                key = (reason, OTHER_UIDS)  # a report stays far below one message's size
            entry = self._refused.setdefault(key, [0, 0, 0])
            entry[0] += 1
            entry[1], entry[2] = peer.pid, peer.gid

    def count(self, open_connections: int) -> None:
        with self._lock:
            self._open = open_connections

    def drain(self) -> bytes:
        with self._lock:
            refused, self._refused = self._refused, {}
            count, self._open = self._open, None
        report: dict[str, Any] = {}
        if refused:
            report["refused"] = [[reason, uid, pid, gid, n]
                                 for (reason, uid), (n, pid, gid) in refused.items()]
        if count is not None:
            report["open"] = count
        return json.dumps(report).encode() if report else b""


def _child(listener: socket.socket, ctl: socket.socket, inner: str, allowed: frozenset[int],
           max_connections: int, parent: int) -> int:  # pragma: no cover - runs after fork
    """The gate's whole life in the child; returns its exit status. Never returns to the caller's code."""
    try:
        _detach(parent)
        tally, threads = _Tally(), Supervisor()
        gate = PeerGate(listener, Path(inner), allowed, max_connections, tally.refused,
                        tally.count, threads, own_pid=parent)
        gate.start()
        return _serve(gate, ctl, tally, threads)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            log.critical("peer gate process failed (%s)", type(exc).__name__)
        return 70


def _detach(parent: int) -> None:  # pragma: no cover - runs after fork
    """Die with the parent, leave signals to it, and log through a stream of our own."""
    process.die_with_parent(parent)
    signal.set_wakeup_fd(-1)
    for sig in process.HANDLED:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, process.HANDLED)  # pending ones are now ignored
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            # The parent's stream object may have been locked by another thread at fork time.
            handler.stream = os.fdopen(os.dup(handler.stream.fileno()), "w", buffering=1)


def _serve(gate: PeerGate, ctl: socket.socket, tally: _Tally,
           threads: Supervisor) -> int:  # pragma: no cover - runs after fork
    """Report every REPORT_EVERY seconds; follow the parent's words; end on ``close`` or its end."""
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    status = None
    while status is None:
        word = ctl.recv(_MSG) if poller.poll(REPORT_EVERY * 1000) else None
        if word == b"stop":
            gate.stop_accepting()
        elif word is not None:  # b"close", or b"" when the parent is gone
            gate.close()
            status = 0
        elif problem := threads.problem():
            log.critical("peer gate process: %s", problem)
            status = 1
        with contextlib.suppress(OSError):
            if report := tally.drain():
                ctl.send(report)
    return status
