"""The peer-uid accept path: SO_PEERCRED checked on every connection.

grpc's Python server never exposes the peer's credentials on a UNIX socket,
so an allowlist cannot be enforced inside a servicer. When an allowlist is
configured, this gate owns the public socket instead: it accepts, reads
SO_PEERCRED from the kernel, closes refused connections (and reports them),
and splices accepted ones to grpc listening on a private socket in a 0700
directory. It costs a relay hop per message, so it only runs when enabled;
without an allowlist grpc binds the public socket directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("kms_appliance.peercred")
_UCRED = struct.Struct("3i")
_CHUNK = 256 * 1024


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


RefusalSink = Callable[[Peer, str], None]


class _Relay:
    """Two pumps between a client and grpc; the second to finish closes both ends."""

    def __init__(self, client: socket.socket, upstream: socket.socket,
                 on_done: Callable[[_Relay], None]) -> None:
        self._ends = (client, upstream)
        self._on_done = on_done
        self._running = 2
        self._lock = threading.Lock()

    def start(self) -> None:
        a, b = self._ends
        for src, dst in ((a, b), (b, a)):
            threading.Thread(target=self._pump, args=(src, dst), name="peer-relay",
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(_CHUNK):
                dst.sendall(data)
        # When grpc ends the connection (idle or handshake timeout, shutdown) the
        # client's end is shut both ways, which also ends the other pump: an idle
        # client must not hold a max_connections slot after grpc let it go.
        how = socket.SHUT_RDWR if src is self._ends[1] else socket.SHUT_WR
        with contextlib.suppress(OSError):
            dst.shutdown(how)
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self.close()
            self._on_done(self)

    def close(self) -> None:
        for end in self._ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


class PeerGate:
    """Accepts on ``public``, relays allowed peers to grpc on ``inner``."""

    def __init__(self, listener: socket.socket, inner: Path, allowed: frozenset[int],
                 max_connections: int, on_refuse: RefusalSink,
                 on_count: Callable[[int], None]) -> None:
        self._listener = listener
        self._inner = os.fspath(inner)
        self._allowed = allowed
        self._max = max_connections
        self._on_refuse = on_refuse
        self._on_count = on_count
        self._open: set[_Relay] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, name="peer-gate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._closing:
                    return
                continue
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        peer = peer_of(conn)
        reason = self._refusal(peer)
        if reason:
            conn.close()
            self._on_refuse(peer, reason)
            return
        try:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self._inner)
        except OSError:
            conn.close()
            upstream.close()
            log.warning("grpc inner socket unreachable; connection dropped")
            return
        relay = _Relay(conn, upstream, self._finished)
        with self._lock:
            self._open.add(relay)
            count = len(self._open)
        self._on_count(count)
        relay.start()

    def _refusal(self, peer: Peer) -> str:
        if peer.uid not in self._allowed:
            return "uid_not_allowed"
        with self._lock:
            if len(self._open) >= self._max:
                return "connection_limit"
        return ""

    def _finished(self, relay: _Relay) -> None:
        with self._lock:
            self._open.discard(relay)
            count = len(self._open)
        self._on_count(count)

    def stop_accepting(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def close(self) -> None:
        """Tear down relays still open (after grpc has drained its calls)."""
        with self._lock:
            relays = list(self._open)
        for relay in relays:
            relay.close()
