"""The peer-uid accept path: SO_PEERCRED checked on every connection.

grpc's Python server never exposes the peer's credentials on a UNIX socket,
so an allowlist cannot be enforced inside a servicer. When an allowlist is
configured, this gate owns the public socket instead: it accepts, reads
SO_PEERCRED from the kernel, closes refused connections (and reports them),
and splices accepted ones to grpc listening on a private socket in a 0700
directory. It costs a relay hop per message, so it only runs when enabled;
without an allowlist grpc binds the public socket directly. It runs in a
process of its own (gateproc.py), which reports refusals and the
connection count to the plugin.

The accept loop is the plugin's only door in this mode, so it must outlive
anything one connection or the machine can throw at it: out of descriptors
(EMFILE/ENFILE), buffers or memory it backs off briefly (the pending
connection stays in the backlog, retried without spinning a core) and logs
once per interval; a failure while admitting one connection drops that
connection only. It runs under a :class:`~.threads.Supervisor`, so an
unexpected exception restarts it, and a listener that stays broken ends the
gate's process (then replaced, and reported by /livez if it keeps dying)
instead of leaving a process that holds the socket and serves nothing.

The plugin's own self-probe (a real Status call through the public socket
path) is admitted whatever ``allowed_uids`` says: a connection whose
SO_PEERCRED pid is this process's. The kernel records that pid at
connect(); another process cannot claim it (a descriptor passed on keeps
its connector's credentials, and a peer in another pid namespace shows
as 0 or its own translated pid). It still counts against max_connections.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .threads import Supervisor

log = logging.getLogger("kms_appliance.peercred")
_UCRED = struct.Struct("3i")
_CHUNK = 256 * 1024
THREAD = "peer-gate"
# Accept loops on the one listener. A refused peer that connects in a loop keeps the
# kernel's accept queue full unless the gate drains it faster than the peer connects,
# and a new connection of an allowed peer finds a full queue refused (EAGAIN). Each
# refusal is a few syscalls (which release the GIL) and a little Python: two loops
# overlap one's syscalls with the other's Python and drain more per second.
ACCEPTORS = 2
# accept() failing for want of resources: back off between these bounds (doubling).
BACKOFF_MIN, BACKOFF_MAX = 0.01, 0.5
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The peer gave up between connect() and accept(): nothing to wait for.
_PEER_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN})
INNER_CONNECT_TIMEOUT = 1.0  # grpc's backlog full: drop the connection rather than block the door
LOG_EVERY = 10.0


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    """The connecting process's credentials, as the kernel recorded them at connect()."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)


class QuietLog:
    """A warning at most once per ``interval`` per key, with how many were held back.

    Why: the failures logged here repeat as fast as connections arrive
    (thousands a second under a flood or at the descriptor limit); one line
    per interval says the same without filling the disk.
    """

    def __init__(self, logger: logging.Logger, interval: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: Any) -> bool:
        """Log unless ``key`` was logged less than an interval ago; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self._interval:
                self._seen[key] = (last[0], last[1] + 1)
                return False
            self._seen[key] = (now, 0)
        if last is not None and last[1]:
            msg, args = msg + " (%d more like it in the last %.0fs)", (*args, last[1], now - last[0])
        self._log.warning(msg, *args)
        return True


quiet = QuietLog(log)

RefusalSink = Callable[[Peer, str], None]


class _Relay:
    """Two pumps between a client and grpc; the second to finish closes both ends.

    Whatever happens in a pump (an error, a failed thread start), both ends
    are shut so the other pump ends too, and ``on_done`` runs exactly once:
    a broken connection never keeps its max_connections slot. Only the last
    pump closes the descriptors, so no pump ever reads a number reused by
    another connection.
    """

    def __init__(self, client: socket.socket, upstream: socket.socket,
                 on_done: Callable[[_Relay], None]) -> None:
        self._ends = (client, upstream)
        self._on_done = on_done
        self._running = 2
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start both pumps; never raises (a failure ends the connection)."""
        a, b = self._ends
        for started, (src, dst) in enumerate(((a, b), (b, a))):
            try:
                threading.Thread(target=self._pump, args=(src, dst), name="peer-relay",
                                 daemon=True).start()
            except RuntimeError:  # "can't start new thread": the task limit
                quiet.warning("relay-thread", "no thread for a relay pump: connection dropped")
                self.abort()
                for _ in range(2 - started):
                    self._pump_done()
                return

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := src.recv(_CHUNK):
                    dst.sendall(data)
            # When grpc ends the connection (idle or handshake timeout, shutdown) the
            # client's end is shut both ways, which also ends the other pump: an idle
            # client must not hold a max_connections slot after grpc let it go.
            how = socket.SHUT_RDWR if src is self._ends[1] else socket.SHUT_WR
            with contextlib.suppress(OSError):
                dst.shutdown(how)
        except Exception as exc:  # never a traceback, never a leaked slot
            quiet.warning("relay-error", "relay pump failed (%s): connection dropped",
                          type(exc).__name__)
            self.abort()
        finally:
            self._pump_done()

    def _pump_done(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            for end in self._ends:
                end.close()
            self._on_done(self)

    def abort(self) -> None:
        """Shut both ends: wakes both pumps, which then finish and close."""
        for end in self._ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


class PeerGate:
    """Accepts on ``public``, relays allowed peers to grpc on ``inner``."""

    def __init__(self, listener: socket.socket, inner: Path, allowed: frozenset[int],
                 max_connections: int, on_refuse: RefusalSink,
                 on_count: Callable[[int], None], threads: Supervisor | None = None,
                 own_pid: int | None = None) -> None:
        self._listener = listener
        self._inner = os.fspath(inner)
        self._allowed = allowed
        self._max = max_connections
        self._on_refuse = on_refuse
        self._on_count = on_count
        self._threads = threads or Supervisor()
        self._own_pid = os.getpid() if own_pid is None else own_pid  # the self-probe's process
        self._open: set[_Relay] = set()
        self._admitting = 0  # slots taken by admissions in progress (the loops run in parallel)
        self._lock = threading.Lock()
        self._closing = False
        self._wake = threading.Event()  # cuts a backoff short when accepting stops

    def start(self) -> None:
        for i in range(ACCEPTORS):
            self._threads.start(f"{THREAD}-{i}", self._accept_loop, restart=True)

    def _accept_loop(self) -> None:
        delay = 0.0
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError as exc:
                if self._closing:
                    return
                delay = self._accept_failed(exc, delay)
                continue
            delay = 0.0
            try:
                self._admit(conn)
            except Exception as exc:  # one connection must never end the door for all
                conn.close()
                quiet.warning("admit", "connection dropped while admitting it (%s)",
                              type(exc).__name__)

    def _accept_failed(self, exc: OSError, delay: float) -> float:
        """Back off on exhaustion, retry at once if the peer left; else let the supervisor know."""
        if exc.errno in _PEER_GONE:
            return delay
        if exc.errno not in _EXHAUSTED:
            raise exc  # the listener itself is broken: restarted, then reported dead (/livez)
        delay = min(BACKOFF_MAX, max(BACKOFF_MIN, delay * 2))
        quiet.warning(f"accept-{exc.errno}", "accept() failed (%s): backing off up to %.2fs "
                      "(the pending connection waits in the backlog)", exc.strerror, BACKOFF_MAX)
        self._wake.wait(delay)
        return delay

    def _admit(self, conn: socket.socket) -> None:
        peer = peer_of(conn)
        reason = self._refusal(peer)
        if reason:
            conn.close()  # first: a refusal costs the refused peer its connection at once
            try:
                self._on_refuse(peer, reason)
            except Exception as exc:
                quiet.warning("refuse-sink", "reporting a refusal failed (%s)", type(exc).__name__)
            return
        relay = None
        try:
            upstream = self._connect_inner(conn)
            if upstream is None:
                return
            relay = _Relay(conn, upstream, self._finished)
            with self._lock:
                self._open.add(relay)
                self._admitting -= 1
                count = len(self._open)
        finally:
            if relay is None:
                with self._lock:
                    self._admitting -= 1
        self._count(count)
        relay.start()  # from here the relay owns both ends and releases its slot

    def _connect_inner(self, conn: socket.socket) -> socket.socket | None:
        """The grpc leg of an admitted connection, or None (``conn`` closed) if there is none."""
        try:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE/ENFILE after accept: drop this one, keep the door
            conn.close()
            quiet.warning(f"inner-socket-{exc.errno}", "no descriptor for the grpc leg (%s): "
                          "connection dropped", exc.strerror)
            return None
        try:
            upstream.settimeout(INNER_CONNECT_TIMEOUT)
            upstream.connect(self._inner)
            upstream.settimeout(None)
        except OSError as exc:
            upstream.close()
            conn.close()
            quiet.warning(f"inner-connect-{exc.errno}", "grpc inner socket unreachable (%s): "
                          "connection dropped", exc.strerror or type(exc).__name__)
            return None
        return upstream

    def _refusal(self, peer: Peer) -> str:
        if peer.uid not in self._allowed and peer.pid != self._own_pid:
            return "uid_not_allowed"
        with self._lock:
            if len(self._open) + self._admitting >= self._max:
                return "connection_limit"
            self._admitting += 1  # the slot is ours until _admit has a relay or gave up
        return ""

    def _finished(self, relay: _Relay) -> None:
        with self._lock:
            self._open.discard(relay)
            count = len(self._open)
        self._count(count)

    def _count(self, count: int) -> None:
        try:
            self._on_count(count)
        except Exception as exc:  # a gauge must not cost a connection its slot
            quiet.warning("count-sink", "updating the connection count failed (%s)",
                          type(exc).__name__)

    def stop_accepting(self) -> None:
        self._closing = True
        for i in range(ACCEPTORS):
            self._threads.retire(f"{THREAD}-{i}")
        self._wake.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def close(self) -> None:
        """Tear down relays still open (after grpc has drained its calls)."""
        with self._lock:
            relays = list(self._open)
        for relay in relays:
            relay.abort()
