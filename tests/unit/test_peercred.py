"""The peer gate's door stays open: exhaustion, broken connections and failing sinks end one
connection at most, never the accept loop; a broken listener is reported, not hidden."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import socketserver
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kms_appliance import peercred, threads
from kms_appliance.peercred import Peer, PeerGate
from tests.support.procs import eventually

WAIT = 5.0


class _Echo(socketserver.BaseRequestHandler):
    """Stands in for grpc on the inner socket."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.request.recv(4096):
                self.request.sendall(data)


class _Gate:
    def __init__(self, tmp: Path, allowed: frozenset[int], **kw: Any) -> None:
        self.public = tmp / "public.sock"
        inner = tmp / "inner.sock"
        self.echo = socketserver.ThreadingUnixStreamServer(os.fspath(inner), _Echo)
        self.echo.daemon_threads = True
        threading.Thread(target=self.echo.serve_forever, daemon=True).start()
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(os.fspath(self.public))
        listener.listen(64)
        self.refused: list[tuple[Peer, str]] = []
        self.counts: list[int] = []
        self.gate = PeerGate(listener, inner, allowed, kw.pop("max_connections", 8),
                             kw.pop("on_refuse", lambda p, r: self.refused.append((p, r))),
                             self.counts.append, **kw)

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(WAIT)
        s.connect(os.fspath(self.public))
        return s

    def served(self) -> bool:
        """A round trip through the gate (echoed), or False if the connection was dropped."""
        with self.connect() as s:
            try:
                s.sendall(b"ping")
                return s.recv(16) == b"ping"
            except OSError:
                return False

    def close(self) -> None:
        self.gate.stop_accepting()
        self.gate.close()
        self.echo.shutdown()
        self.echo.server_close()


@pytest.fixture
def gate_of(tmp_path: Path) -> Iterator[Callable[..., _Gate]]:
    made: list[_Gate] = []

    def make(allowed: frozenset[int] = frozenset({os.getuid()}), **kw: Any) -> _Gate:
        g = _Gate(tmp_path, allowed, **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


def test_no_descriptor_for_the_grpc_leg_drops_that_connection_only(
        gate_of: Callable[..., _Gate], monkeypatch: pytest.MonkeyPatch) -> None:
    """EMFILE at socket() right after accept() used to raise UnboundLocalError and end the loop."""
    real = socket.socket
    fail = {"left": 3}

    def socket_or_emfile(*args: Any, **kw: Any) -> socket.socket:
        if fail["left"]:
            fail["left"] -= 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real(*args, **kw)

    monkeypatch.setattr(peercred, "socket", types.SimpleNamespace(**{**vars(socket), "socket": socket_or_emfile}))
    g = gate_of()
    g.gate.start()
    assert [g.served() for _ in range(3)] == [False, False, False]
    assert g.served(), "the accept loop must survive a failed admission"
    assert eventually(lambda: g.counts[-1:] == [0], WAIT), "every slot released"


def test_accept_exhaustion_backs_off_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """accept() failing with EMFILE must not spin a core nor log per attempt."""
    calls: list[float] = []

    class Exhausted:
        def accept(self) -> tuple[socket.socket, Any]:
            calls.append(time.monotonic())
            raise OSError(errno.EMFILE, "Too many open files")

        def shutdown(self, how: int) -> None:
            pass

        def close(self) -> None:
            pass

    gate = PeerGate(Exhausted(), Path("/nonexistent"), frozenset(), 8,  # type: ignore[arg-type]
                    lambda p, r: None, lambda n: None)
    gate.start()
    time.sleep(1.0)
    assert eventually(lambda: len(calls) >= 3, WAIT), "it stopped trying"
    gate.stop_accepting()
    rate = (len(calls) - 1) / (calls[-1] - calls[0])  # a late-scheduled thread only lowers it
    assert rate < 60, f"{len(calls)} accept() calls, {rate:.0f}/s"
    lines = [r for r in caplog.records if r.name == "kms_appliance.peercred"]
    assert len(lines) == 1, [r.getMessage() for r in lines]


def test_a_broken_listener_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """An accept() that can never work again ends in a dead thread that fails liveness."""
    monkeypatch.setattr(threads, "BACKOFF", 0.0)
    listener = socket.socket(socket.AF_UNIX)  # never bound nor listening: EINVAL
    sup = threads.Supervisor()
    gate = PeerGate(listener, Path("/nonexistent"), frozenset(), 8, lambda p, r: None, lambda n: None, sup)
    gate.start()
    try:
        assert eventually(lambda: sup.problem() is not None, WAIT)
        assert "peer-gate" in (sup.problem() or "")
    finally:
        listener.close()


def test_own_process_is_admitted_without_being_allowlisted(gate_of: Callable[..., _Gate]) -> None:
    """The self-probe connects from this pid: admitted whatever allowed_uids says."""
    g = gate_of(allowed=frozenset({os.getuid() + 4242}))
    g.gate.start()
    assert g.served()
    assert g.refused == []


def test_refused_peer_is_closed_at_once_and_a_failing_sink_ends_nothing(
        gate_of: Callable[..., _Gate]) -> None:
    seen: list[str] = []

    def sink(peer: Peer, reason: str) -> None:
        seen.append(reason)
        raise RuntimeError("the audit file is gone")

    g = gate_of(allowed=frozenset({os.getuid() + 4242}), on_refuse=sink)
    g.gate._own_pid = -1
    g.gate.start()
    for _ in range(3):
        assert not g.served()
    assert eventually(lambda: seen == ["uid_not_allowed"] * 3, WAIT)
    g.gate._own_pid = os.getpid()
    assert g.served(), "the accept loop outlived the failing sink"


class _Boom:
    """A socket end whose recv raises something a pump does not expect."""

    def __init__(self) -> None:
        self.shut: list[int] = []
        self.closed = False

    def recv(self, n: int) -> bytes:
        raise ValueError("unexpected")

    def sendall(self, data: bytes) -> None:
        pass

    def shutdown(self, how: int) -> None:
        self.shut.append(how)

    def close(self) -> None:
        self.closed = True


def test_a_pump_failure_closes_both_ends_and_releases_the_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = socket.socketpair()
    boom = _Boom()
    done: list[object] = []
    hook_calls: list[object] = []
    monkeypatch.setattr(threading, "excepthook", hook_calls.append)
    relay = peercred._Relay(a, boom, done.append)  # type: ignore[arg-type]
    relay.start()
    assert eventually(lambda: done == [relay], WAIT)
    b.close()
    assert hook_calls == [], "no traceback from a relay pump"
    assert boom.closed and a.fileno() == -1
    assert socket.SHUT_RDWR in boom.shut


def test_no_thread_for_a_pump_releases_the_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    real = threading.Thread
    started: list[int] = []

    def thread_or_limit(*args: Any, **kw: Any) -> threading.Thread:
        if started:
            raise RuntimeError("can't start new thread")
        started.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(threading, "Thread", thread_or_limit)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    done: list[object] = []
    relay = peercred._Relay(a, c, done.append)
    relay.start()
    assert eventually(lambda: done == [relay], WAIT)
    assert a.fileno() == -1 and c.fileno() == -1
    b.close()
    d.close()


def test_parallel_accept_loops_never_admit_beyond_the_limit(gate_of: Callable[..., _Gate]) -> None:
    """Every connection past the limit refused as connection_limit, every slot released; the
    real process under a flood: tests/reliability/test_socket_attacks.py::TestIdleFlood."""
    g = gate_of(max_connections=4)
    g.gate.start()
    conns = [g.connect() for _ in range(40)]
    try:
        assert eventually(lambda: len(g.refused) == 36, WAIT)
        assert {r for _, r in g.refused} == {"connection_limit"}
        assert max(g.counts) == 4
    finally:
        for s in conns:
            s.close()
    assert eventually(lambda: g.counts[-1:] == [0], WAIT)
    assert g.served()
