"""The gRPC server on the UNIX socket: bind safely, serve, drain, clean up.

Why ``grpc.aio`` with the synchronous servicers: grpcio's sync server takes a
worker thread as soon as a call's HEADERS arrive, and that thread then waits
for the request message with no timeout, so one connection holding 32
unfinished calls pinned every worker. The aio server reads the request in
its event loop (one coroutine per call) and only then serves it; a call whose
request has not arrived within ``server.request_read_timeout`` ends with
DEADLINE_EXCEEDED. Every method is registered as request-streaming so that
read is ours to time (the wire is the same as a unary call's; a unary handler
gets the request from grpc's own read, which nothing can bound). The waiting
calls share one deadline timer, not one each. ``server.max_concurrent_rpcs``
bounds the calls being served, not the ones still being read, so slow callers
cannot use it up either; those are bounded per connection by
``server.max_streams_per_connection`` (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)
and in total by READING_PER_RPC x ``server.max_concurrent_rpcs`` (beyond it
a new call ends the one that has waited longest for its request, so slow
callers evict each other, not prompt clients).

Where a call is served: Status and Version answer from held state, and with a
backend that answers from memory (local; Akeyless when the DEK is cached or
its intermediate key held) and audit records queued for the flusher, Encrypt
and Decrypt do no I/O either, so these run in the event loop itself. Anything
that may wait (a remote call, or each record written before the answer) goes
to a worker thread, so it never stalls the loop that reads every other call's
request; a backend finds that out in the loop and says so before it changed
anything (kms_appliance/inline.py), and the call starts again in a worker.
The hand-off to a worker and back (two thread wake-ups and a self-pipe write
per call) cost ~0.1 of the throughput ratio below and
most of the p50 the first version added.

Why 256 streams per connection and not fewer: grpc-core clients (grpcio)
send every queued call on a fresh connection before they read the server's
SETTINGS, and streams beyond the limit are then refused (REFUSED_STREAM,
not retried); 200 concurrent callers on one channel must keep working.
Price of the aio path (co-runs at 16 in flight, ratio to the bare sync
servicer in the same window; docs/benchmarks.md "The aio server's price"):
as first built (7be0956) Status 0.39, v2 Encrypt 0.39, v2 Decrypt 0.38, p50
at one in flight 1.5-1.6x bare's; with the calls served in the loop and one
read timer 0.58 / 0.55 / 0.55, p50 1.13-1.19x. grpc.aio itself is the rest:
a plain unary aio handler running the servicer in the loop, with none of
these bounds, reaches only ~0.6 (its completion queue wakes the loop through
a socket on every event). Far above what kube-apiserver asks, but below
the sync server's ~0.9.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import stat
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import grpc

from . import inline, socketfs
from .config import ServerSettings
from .errors import SetupError
from .gateproc import GateProcess, RefusalSink
from .inline import NeedsWorker
from .kms import v1beta1_pb2, v2_pb2
from .kms.v1 import V1Servicer
from .kms.v2 import V2Servicer
from .threads import Supervisor

log = logging.getLogger("kms_appliance.server")
ConnectionCount = Callable[[int], None]
# A connection that has not finished the HTTP/2 preface by then is closed, and one
# with no call for IDLE_MS gets a GOAWAY (grpc clients reconnect on their next call).
HANDSHAKE_MS = 5_000
IDLE_MS = 300_000
# Request metadata beyond the soft bound is refused, beyond the hard bound always
# (kube-apiserver sends a few hundred bytes): a header flood costs bounded memory.
METADATA_SOFT = 4 * 1024
METADATA_HARD = 8 * 1024
READING_PER_RPC = 4  # calls being read, per call that may be served at once
_Handler = Callable[[Any, Any], Any]


class _Context:
    """What a servicer running in a worker may do to its call: set the status.

    The servicers only call set_code/set_details; the aio context's own
    methods must run in the event loop, so they are applied there afterwards.
    """

    __slots__ = ("code", "details")

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class PluginServer:
    """Owns the socket and the grpc server; start() binds, stop() drains and removes."""

    def __init__(self, settings: ServerSettings, v2: V2Servicer, v1: V1Servicer,
                 on_refuse: RefusalSink, on_connections: ConnectionCount,
                 threads: Supervisor | None = None, in_memory: bool = False) -> None:
        self._s = settings
        self._socket = settings.socket
        self._inode: int | None = None
        self._dir_fd: int | None = None
        self._bind_path = settings.socket
        self._gate: GateProcess | None = None
        self._inner_dir: Path | None = None
        self._on_refuse = on_refuse
        self._on_connections = on_connections
        self._own_threads = threads is None
        self._threads = threads if threads is not None else Supervisor()
        self._pool = futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="kms-rpc")
        # Calls being served: one token each, taken in the loop and given back when the call's
        # work is done (by the worker, or when a queued call is dropped). deque pop/append are
        # atomic C calls, so no side takes a lock (a BoundedSemaphore costs a Condition per call).
        self._slots: deque[None] = deque([None] * settings.max_concurrent_rpcs)
        self._read_timeout = settings.request_read_timeout
        # Calls whose request is still arriving, with their deadlines (oldest first): each may
        # buffer up to a 64 KiB flow-control window, so their number is bounded too (memory),
        # well above any real client's need.
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()  # ended by us, not yet answered
        self._sweep: asyncio.TimerHandle | None = None
        self._max_reading = READING_PER_RPC * settings.max_concurrent_rpcs
        self._loop = asyncio.new_event_loop()
        self._grpc: grpc.aio.Server | None = None
        self._handlers = [_generic(v2_pb2, "v2.KeyManagementService", v2, self._call, in_memory),
                          _generic(v1beta1_pb2, "v1beta1.KeyManagementService", v1, self._call,
                                   in_memory)]

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

    def options(self) -> list[tuple[str, int]]:
        """The channel arguments that bound what one connection may hold, and for how long."""
        s = self._s
        size = s.max_message_bytes
        age_ms = int(s.max_connection_age * 1000)
        # A recycled connection's calls get this long to finish after its GOAWAY.
        grace_ms = int((s.request_read_timeout + s.call_timeout + 1.0) * 1000)
        return [("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.so_reuseport", 0),
                # Beyond this many open connections new ones are closed at once:
                # a flood cannot exhaust the process's descriptors.
                ("grpc.max_allowed_incoming_connections", s.max_connections),
                ("grpc.server_handshake_timeout_ms", HANDSHAKE_MS),
                ("grpc.max_connection_idle_ms", min(IDLE_MS, age_ms)),
                # Every connection is recycled (GOAWAY, then closed once its calls are done):
                # a busy or trickling client cannot hold a max_connections slot for longer.
                ("grpc.max_connection_age_ms", age_ms),
                ("grpc.max_connection_age_grace_ms", grace_ms),
                ("grpc.max_concurrent_streams", s.max_streams_per_connection),
                ("grpc.max_metadata_size", METADATA_SOFT),
                ("grpc.absolute_max_metadata_size", METADATA_HARD),
                # Fixed 64 KiB flow-control windows: what a stream may buffer stays bounded.
                ("grpc.http2.bdp_probe", 0)]

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
            port = self._loop.run_until_complete(self._bind_and_start(path))
            if port == 0:
                raise SetupError(f"cannot bind {path}")
        self._threads.start("grpc-loop", self._run_loop)

    async def _bind_and_start(self, path: Path) -> int:
        server = grpc.aio.server(migration_thread_pool=self._pool, handlers=self._handlers,
                                 options=self.options(), maximum_concurrent_rpcs=None)
        try:
            port = server.add_insecure_port(f"unix:{path}")
        except RuntimeError:  # grpc raises (rather than returning 0) when bind() fails
            port = 0
        if port:
            await server.start()
            self._grpc = server
        return port

    def _run_loop(self) -> None:
        inline.mark_event_loop()
        if not self._threads.stopping.is_set():
            self._loop.run_forever()

    async def _call(self, method: _Handler, parse: Callable[[bytes], Any], inline: bool,
                    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """One unary call: read its request (bounded in time), then serve it.

        ``inline`` calls run in the event loop itself (see :meth:`_inline_for`); the others in a
        worker, so a backend waiting on the network never blocks the loop.
        """
        del requests  # read through the context's reader API instead (cheaper)
        request = await self._read(parse, context)
        if request is _REFUSED:
            return None
        slots = self._slots
        try:
            slots.pop()
        except IndexError:
            return _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!")
        if inline:
            response = _answer_inline(method, request, context, slots)
            if response is not _NEEDS_WORKER:
                return response
        ctx = _Context()
        try:
            done = self._pool.submit(self._work, method, request, ctx)
        except RuntimeError:  # the pool is shut down: the server is stopping
            slots.append(None)
            return _refuse(context, grpc.StatusCode.UNAVAILABLE, "server stopping")
        done.add_done_callback(self._release_dropped)
        response = await asyncio.wrap_future(done)
        if ctx.code is not None:
            context.set_code(ctx.code)
            context.set_details(ctx.details)
        return response

    async def _read(self, parse: Callable[[bytes], Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The call's request, or _REFUSED once the call was given its status.

        Each call waiting for its request is in ``_reading`` with its deadline; calls enter in
        the order they arrive and all wait the same time, so the first entry is always the
        next one due, and one timer at that deadline (:meth:`_expire_due`) bounds them all:
        no timer per call (asyncio.timeout cost ~10% of the throughput at 16 in flight).
        At most ``_max_reading`` calls wait at once; a new one beyond that ends the one that
        has waited longest (a prompt client's request arrives within milliseconds, so the
        evicted one is a slow caller's): memory stays bounded and slow callers only evict
        each other. Only the event loop touches ``_reading`` and ``_expired``.
        """
        task = cast("asyncio.Task[Any]", asyncio.current_task())  # grpc runs each call in a task
        reading = self._reading
        reading[task] = self._loop.time() + self._read_timeout
        if len(reading) > self._max_reading:
            self._expire(next(iter(reading)))
        if self._sweep is None:
            self._sweep = self._loop.call_at(reading[next(iter(reading))], self._expire_due)
        try:
            raw = await context.read()  # the reader API: no async generator per call
        except asyncio.CancelledError:
            if task not in self._expired:
                raise  # grpc's: the client went away
            self._expired.discard(task)
            task.uncancel()
            return _refuse(context, grpc.StatusCode.DEADLINE_EXCEEDED, "request not received in time")
        finally:
            reading.pop(task, None)
        if raw is grpc.aio.EOF:  # type: ignore[attr-defined]
            return _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        return parse(raw)  # never raises: the servicers' decoders answer malformed input

    def _expire(self, task: asyncio.Task[Any]) -> None:
        """End ``task``'s wait for its request now: its read raises CancelledError, answered above."""
        del self._reading[task]
        self._expired.add(task)
        task.cancel()

    def _expire_due(self) -> None:
        """End every read past its deadline, then wait for the next one due (if any)."""
        reading = self._reading
        now = self._loop.time()
        while reading:
            task = next(iter(reading))
            due = reading[task]
            if due > now:
                self._sweep = self._loop.call_at(due, self._expire_due)
                return
            self._expire(task)
        self._sweep = None

    def _work(self, method: _Handler, request: Any, ctx: _Context) -> Any:
        try:
            return method(request, ctx)
        finally:
            self._slots.append(None)

    def _release_dropped(self, done: futures.Future[Any]) -> None:
        if done.cancelled():  # cancelled before a worker took it: _work never ran
            self._slots.append(None)

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
                raise SetupError(f"cannot bind {self._socket}: {exc.strerror}") from None
        # The longest backlog the kernel allows (net.core.somaxconn caps it). A refused peer's
        # connect loop outpaces accept at moments; while the backlog is full an allowed peer's
        # non-blocking connect fails (EAGAIN) and its grpc client backs off ~1 s. Mixed attack
        # run, 600 s: 1 failed real-client call in each of 3 runs with 128 (traced: reconnects
        # in TRANSIENT_FAILURE), 0 in the run with this backlog. docs/security.md, known gaps.
        listener.listen(socket.SOMAXCONN)
        self._gate = GateProcess(listener, inner, frozenset(self._s.allowed_uids),
                                 self._s.max_connections, self._on_refuse, self._on_connections,
                                 self._threads)
        self._gate.start()

    def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace``, remove the socket."""
        if self._inode is None:
            self._stop_grpc(0)
            self._close_dir()
            return  # never bound: the path is not ours to remove
        if self._gate is not None:
            self._gate.stop_accepting()
        # Stop accepting on the public path first so a successor can bind while we drain.
        socketfs.remove(self._bind_path, self._inode)
        self._stop_grpc(grace)
        if self._gate is not None:
            self._gate.close()
        if self._inner_dir is not None:
            for leftover in self._inner_dir.iterdir():
                leftover.unlink(missing_ok=True)
            self._inner_dir.rmdir()
        self._close_dir()
        log.info("stopped; socket %s removed", self._socket)

    def _stop_grpc(self, grace: float) -> None:
        """Drain in the event loop, then end the loop's thread and the workers."""
        if self._own_threads:
            self._threads.stopping.set()
        server = self._grpc
        if server is not None and self._loop.is_running():
            drained = asyncio.run_coroutine_threadsafe(server.stop(grace), self._loop)
            try:
                drained.result(grace + 1)
            except (TimeoutError, futures.TimeoutError):
                log.warning("grpc did not stop within %.1fs", grace + 1)
            self._loop.call_soon_threadsafe(self._loop.stop)
        elif server is not None and not self._loop.is_closed():
            self._loop.run_until_complete(server.stop(None))
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


_REFUSED = object()
_NEEDS_WORKER = object()
_HELD_STATE = frozenset({"Status", "Version"})  # methods that never wait on a backend


def _answer_inline(method: _Handler, request: Any, context: grpc.aio.ServicerContext[Any, Any],
                   slots: deque[None]) -> Any:
    """Serve the call in the loop; _NEEDS_WORKER (its slot still held) if it would wait."""
    try:
        response = method(request, context)
    except NeedsWorker:  # raised before the call changed anything (kms_appliance/inline.py)
        return _NEEDS_WORKER
    except BaseException:
        slots.append(None)
        raise
    slots.append(None)
    return response


def _refuse(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, details: str) -> Any:
    """End the call with ``code`` (the response, if any, is then discarded by grpc)."""
    context.set_code(code)
    context.set_details(details)
    return _REFUSED


def _generic(module: ModuleType, service: str, servicer: Any, call: Callable[..., Awaitable[Any]],
             in_memory: bool) -> grpc.GenericRpcHandler[Any, Any]:
    """Every method of ``service`` (from the generated descriptors) as a request-streaming handler.

    Status and Version answer from held state (a backend's status() never makes a remote
    call), so they always run in the event loop; Encrypt and Decrypt do when ``in_memory``.
    """
    handlers = {}
    decoders = servicer.decoders()  # never raise: a malformed request is counted (kms/wire.py)
    for m in module.DESCRIPTOR.services_by_name[service.split(".", 1)[1]].methods:
        method = getattr(servicer, m.name)
        parse = decoders[m.name]
        serialize = getattr(module, m.output_type.name).SerializeToString

        inline = in_memory or m.name in _HELD_STATE
        handler = functools.partial(call, method, parse, inline)  # a coroutine function: run in the loop
        handlers[m.name] = grpc.stream_unary_rpc_method_handler(handler, response_serializer=serialize)
    return grpc.method_handlers_generic_handler(service, handlers)
