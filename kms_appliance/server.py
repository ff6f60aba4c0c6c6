"""The gRPC server on the UNIX socket: bind safely, serve, drain, clean up."""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from . import socketfs
from .config import ServerSettings
from .errors import StartupError
from .kms import v1beta1_pb2_grpc, v2_pb2_grpc
from .kms.v1 import V1Servicer
from .kms.v2 import V2Servicer
from .peercred import PeerGate, RefusalSink
from .threads import Supervisor

log = logging.getLogger("kms_appliance.server")
ConnectionCount = Callable[[int], None]
# A connection that has not finished the HTTP/2 preface by then is closed, and one
# with no call for IDLE_MS gets a GOAWAY (grpc clients reconnect on their next call):
# idle connections cannot pin the max_connections slots forever.
HANDSHAKE_MS = 5_000
IDLE_MS = 300_000


class PluginServer:
    """Owns the socket and the grpc server; start() binds, stop() drains and removes."""

    def __init__(self, settings: ServerSettings, v2: V2Servicer, v1: V1Servicer,
                 on_refuse: RefusalSink, on_connections: ConnectionCount,
                 threads: Supervisor | None = None) -> None:
        self._s = settings
        self._socket = settings.socket
        self._inode: int | None = None
        self._dir_fd: int | None = None
        self._bind_path = settings.socket
        self._gate: PeerGate | None = None
        self._inner_dir: Path | None = None
        self._on_refuse = on_refuse
        self._on_connections = on_connections
        self._threads = threads
        size = settings.max_message_bytes
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="kms-rpc"),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
            options=[("grpc.max_receive_message_length", size),
                     ("grpc.max_send_message_length", size),
                     ("grpc.so_reuseport", 0),
                     # Beyond this many open connections new ones are closed at once:
                     # a flood cannot exhaust the process's descriptors.
                     ("grpc.max_allowed_incoming_connections", settings.max_connections),
                     ("grpc.server_handshake_timeout_ms", HANDSHAKE_MS),
                     ("grpc.max_connection_idle_ms", IDLE_MS)],
        )
        v2_pb2_grpc.add_KeyManagementServiceServicer_to_server(v2, self._grpc)  # type: ignore[no-untyped-call]
        v1beta1_pb2_grpc.add_KeyManagementServiceServicer_to_server(v1, self._grpc)  # type: ignore[no-untyped-call]

    @property
    def socket_path(self) -> Path:
        return self._socket

    def socket_problem(self) -> str | None:
        """A liveness check: None while the configured path still leads to the socket we bound.

        A deleted or replaced socket file leaves the process healthy-looking and
        unreachable (kube-apiserver dials the path); only a restart rebinds it.
        """
        if self._inode is None:
            return None  # not bound (yet): Health.serving speaks for that
        try:
            st = self._socket.lstat()
        except FileNotFoundError:
            return "socket file is gone"
        except OSError as exc:
            return f"socket path unreadable: {exc.strerror}"
        if st.st_ino != self._inode or not stat.S_ISSOCK(st.st_mode):
            return "socket path now holds another file"
        return None

    def start(self) -> None:
        """Check the path, bind with the final mode, and start serving."""
        self._dir_fd, bind_path = socketfs.prepare(self._socket, self._s.socket_group)
        _, sock_mode = socketfs.modes(self._s.socket_group)
        if self._s.allowed_uids:
            self._start_gated(bind_path, sock_mode)
        else:
            self._bind_grpc(bind_path, sock_mode)
        socketfs.finish_bind(bind_path, self._s.socket_group)
        self._inode = bind_path.lstat().st_ino
        self._bind_path = bind_path
        log.info("serving KMS v2 and v1beta1 on %s", self._socket)

    def _bind_grpc(self, path: Path, mode: int) -> None:
        with socketfs.umask(0o777 & ~mode):
            try:
                port = self._grpc.add_insecure_port(f"unix:{path}")
            except RuntimeError:  # grpc raises (rather than returning 0) when bind() fails
                port = 0
            if port == 0:
                raise StartupError(f"cannot bind {path}")
            self._grpc.start()

    def _start_gated(self, bind_path: Path, mode: int) -> None:
        self._inner_dir = Path(tempfile.mkdtemp(prefix=".kms-inner-", dir=bind_path.parent))
        inner = self._inner_dir / "grpc.sock"
        self._bind_grpc(inner, 0o600)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with socketfs.umask(0o777 & ~mode):
            try:
                listener.bind(os.fspath(bind_path))
            except OSError as exc:
                listener.close()
                raise StartupError(f"cannot bind {self._socket}: {exc.strerror}") from None
        listener.listen(128)
        self._gate = PeerGate(listener, inner, frozenset(self._s.allowed_uids),
                              self._s.max_connections, self._on_refuse, self._on_connections,
                              self._threads)
        self._gate.start()

    def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace``, remove the socket."""
        if self._inode is None:
            self._grpc.stop(None)
            self._close_dir()
            return  # never bound: the path is not ours to remove
        if self._gate is not None:
            self._gate.stop_accepting()
        # Stop accepting on the public path first so a successor can bind while we drain.
        socketfs.remove(self._bind_path, self._inode)
        self._grpc.stop(grace).wait(grace + 1)
        if self._gate is not None:
            self._gate.close()
        if self._inner_dir is not None:
            for leftover in self._inner_dir.iterdir():
                leftover.unlink(missing_ok=True)
            self._inner_dir.rmdir()
        self._close_dir()
        log.info("stopped; socket %s removed", self._socket)

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

