"""Liveness, readiness and the HTTP endpoint that serves them with /metrics.

Probes never reach the backend: they read state that the maintenance loop
refreshes in the background (a real wrap/unwrap round trip every
``health_interval``), so a burst of kube-apiserver or kubelet probes cannot
eat the remote KMS's rate limit. Readiness falls only after consecutive
failures, and throttling never counts: one bad call is not an outage.
Liveness is the plugin's own business: the socket path still leads to our
socket, the plugin answers Status through it (selfprobe.py), no supervised
thread died, the maintenance loop ticks. What each endpoint means:
docs/health.md.

The endpoint is waitress (pure Python, fixed thread pool, connection limit,
idle timeout) rather than http.server's ThreadingHTTPServer, which spent a
thread per connection with no bound and no timeout: any local user could
exhaust the plugin's threads or descriptors by opening idle connections.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import Counter, make_wsgi_app
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from .backends.base import KeyBackend
from .errors import ConfigError, KmsError, Throttled
from .metrics import Metrics
from .threads import Supervisor

log = logging.getLogger("kms_appliance.health")
FAILURES_BEFORE_UNREADY = 2
# A check returns None while its component is fine, or a short reason (no secrets) why not.
Check = Callable[[], str | None]

LISTEN_KEY = "observability.http_listen"
# The HTTP endpoint's bounds (docs/health.md): kubelet and Prometheus need a
# handful of connections; a local user opening thousands gets these, not more.
CONNECTION_LIMIT = 32   # open connections; at the limit the longest-idle one is closed
WORKERS = 4             # fixed pool answering complete requests; idle connections hold no thread
IDLE_TIMEOUT = 10       # seconds a connection may sit without a request (waitress channel_timeout)
REQUEST_TIMEOUT = 5.0   # seconds from a request's first byte to its last
MAX_HEADER_BYTES = 8192
MAX_BODY_BYTES = 1024   # every endpoint is a GET
BACKLOG = 128
ACCEPT_PAUSE = 0.5      # after EMFILE/ENFILE on accept
WARN_EVERY = 60.0
STOP_WAIT = 3.0


class Health:
    """Holds the probe results that /livez, /readyz and /healthz report."""

    def __init__(self, backend: KeyBackend, metrics: Metrics, interval: float) -> None:
        self._backend = backend
        self._metrics = metrics
        self._interval = interval
        self.failures = 0
        self.reason = "not probed yet"
        self.last_tick = time.monotonic()
        self.serving = False
        self._live_checks: list[tuple[str, Check]] = []
        self._ready_checks: list[tuple[str, Check]] = []

    def watch(self, name: str, check: Check, *, live: bool) -> None:
        """Let a component take part in the verdicts without Health knowing it.

        ``live=True``: a failing check fails /livez (so kubelet or systemd
        restart the plugin) and with it /readyz; ``live=False``: /readyz only
        (degraded, e.g. the audit trail cannot be written).
        """
        (self._live_checks if live else self._ready_checks).append((name, check))

    def tick(self) -> None:
        """Called by the maintenance loop: proves the loop is alive."""
        self.last_tick = time.monotonic()

    def probe(self) -> None:
        """One real wrap/unwrap round trip of a random seed."""
        seed = os.urandom(32)
        try:
            wrapped = self._backend.wrap(seed)
            ok = self._backend.unwrap(wrapped.ciphertext, wrapped.key_id,
                                      wrapped.annotations).plaintext == seed
            reason = "ok" if ok else "round trip returned a different plaintext"
        except Throttled:
            return  # rate limiting says nothing about availability
        except KmsError as exc:
            ok, reason = False, f"{exc.outcome}: {exc.message}"
        except Exception as exc:
            ok, reason = False, f"internal: {type(exc).__name__}"
        self.failures = 0 if ok else self.failures + 1
        self.reason = reason
        self._metrics.backend_healthy.labels(self._backend.name).set(1 if ok else 0)
        if not ok:
            log.warning("backend health probe failed: %s", reason)

    def live(self) -> tuple[bool, str]:
        stale = time.monotonic() - self.last_tick > max(60.0, 3 * self._interval)
        if not self.serving:
            return False, "server not serving"
        if stale:
            return False, "maintenance loop stalled"
        return _first_failure(self._live_checks)

    def ready(self) -> tuple[bool, str]:
        live, why = self.live()
        if not live:
            return False, why
        st = self._backend.status()
        if not st.healthy:
            return False, st.reason
        if self.failures >= FAILURES_BEFORE_UNREADY:
            return False, self.reason
        return _first_failure(self._ready_checks)


def _first_failure(checks: list[tuple[str, Check]]) -> tuple[bool, str]:
    for name, check in checks:
        reason = check()
        if reason is not None:
            return False, f"{name}: {reason}"
    return True, "ok"


def bind(listen: tuple[str, int]) -> socket.socket:
    """The listening socket for ``observability.http_listen``, bound before any thread exists.

    A port already taken or a host that does not resolve is an operator
    mistake: it becomes a :class:`ConfigError` naming the setting (one line,
    exit 2), never a traceback. Nothing longer than a short bound is echoed.
    """
    host, port = listen
    shown = f"{host[:64]}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        raise ConfigError(LISTEN_KEY, f"host of {shown!r} does not resolve") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)  # early probes wait in the backlog until start(), not refused
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(LISTEN_KEY, f"{shown} is already in use") from None
        raise ConfigError(LISTEN_KEY, f"cannot listen on {shown}: {exc.strerror}") from None
    if not _loopback(sock.getsockname()[0]):
        log.warning("%s %s is reachable from other hosts: /metrics and the health endpoints "
                    "carry no authentication; prefer 127.0.0.1", LISTEN_KEY, shown)
    return sock


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def wsgi_app(health: Health, metrics: Metrics) -> WSGIApplication:
    """/metrics from prometheus_client's own WSGI app; /livez, /readyz, /healthz from Health."""
    prometheus = make_wsgi_app(metrics.registry)
    verdicts: dict[str, Callable[[], tuple[bool, str]]] = {
        "/livez": health.live, "/readyz": health.ready, "/healthz": health.ready}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(start_response, "405 Method Not Allowed", {"status": "method not allowed"})
        if path == "/metrics":
            return prometheus(environ, start_response)  # type: ignore[no-any-return]
        verdict = verdicts.get(path)
        if verdict is None:
            return _json(start_response, "404 Not Found", {"status": "not found"})
        ok, reason = verdict()
        body = {"status": "ok" if ok else "unavailable", "reason": reason}
        return _json(start_response, "200 OK" if ok else "503 Service Unavailable", body)

    return app


def _json(start_response: StartResponse, status: str, body: dict[str, str]) -> list[bytes]:
    raw = json.dumps(body).encode() + b"\n"
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(raw))),
                            ("Cache-Control", "no-store")])
    return [raw]


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection that remembers when the request it is receiving began (slow senders)."""

    started: float | None = None

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.started = time.time()
        more: bool = super().received(data)
        if self.request is None:
            self.started = None
        return more


class _Workers(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress's fixed pool, its threads started (and watched) by the app's Supervisor."""

    def __init__(self, threads: Supervisor) -> None:
        super().__init__()
        self._threads = threads

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        # A pool thread ends only when the pool shuts down; any other end fails /livez.
        self._threads.start(f"http-worker-{thread_no}", lambda: target(thread_no), restart=False)


class _Listener(TcpWSGIServer):  # type: ignore[misc]
    """waitress's listener with three changes for a hostile local network.

    - At the connection limit the connection idle longest is closed to make
      room (waitress would stop accepting instead, so idle connections from
      any local user would lock kubelet's probes out).
    - A request must arrive whole within REQUEST_TIMEOUT of its first byte:
      trickling one byte at a time does not keep a slot.
    - EMFILE/ENFILE on accept pauses accepting for ACCEPT_PAUSE instead of
      retrying (and logging) in a tight loop at 100% CPU.
    """

    channel_class = _Channel
    next_channel_cleanup = 0.0
    paused_until = 0.0
    evictions: Counter | None = None
    _warned_at = -math.inf

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting or now < self.paused_until:
            return False
        open_channels = [c for c in self.active_channels.values() if not c.will_close]
        if len(open_channels) < self.adj.connection_limit:
            return True
        idle = [c for c in open_channels if not c.requests and not c.total_outbufs_len]
        if not idle:
            return False  # every slot is answering a request: they end within milliseconds
        min(idle, key=lambda c: c.last_activity).will_close = True
        if self.evictions is not None:
            self.evictions.inc()
        return True

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle longer than channel_timeout
        cutoff = now - REQUEST_TIMEOUT
        for channel in self.active_channels.values():
            if not channel.requests and channel.started is not None and channel.started < cutoff:
                channel.will_close = True

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
            if pair is None:
                return
            conn, addr = pair
            self.set_socket_options(conn)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.paused_until = time.time() + ACCEPT_PAUSE
                self._warn(f"out of descriptors or memory ({errno.errorcode[exc.errno]}); "
                           f"not accepting for {ACCEPT_PAUSE}s")
            return  # a peer gone before accept() finished is not worth a line
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("HTTP endpoint: %s", what)


class HealthHttpServer:
    """/metrics, /livez, /readyz, /healthz on a bounded waitress server.

    Construction binds (so a bad ``http_listen`` stops start-up before
    anything else runs); :meth:`start` brings up a fixed pool of WORKERS
    threads and the event loop thread, both under the app's Supervisor.
    Idle connections cost one descriptor each, never a thread, and at most
    CONNECTION_LIMIT of them exist.
    """

    def __init__(self, listen: tuple[str, int], health: Health, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics
        self._sock = bind(listen)
        self._listener: _Listener | None = None
        self._stopping = threading.Event()
        self._loop_done = threading.Event()

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self, threads: Supervisor) -> None:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # one line per queued request
        sock = self._sock
        adj = Adjustments(
            threads=WORKERS, connection_limit=CONNECTION_LIMIT, channel_timeout=IDLE_TIMEOUT,
            cleanup_interval=1, asyncore_loop_timeout=1, asyncore_use_poll=True,
            log_socket_errors=False, max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_BODY_BYTES, backlog=BACKLOG, ident="kms-appliance",
            expose_tracebacks=False)
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        workers = _Workers(threads)
        workers.set_thread_count(WORKERS)
        self._listener = _Listener(wsgi_app(self.health, self.metrics), map={}, _sock=sock,
                                   dispatcher=workers, adj=adj, bind_socket=False, sockinfo=sockinfo)
        self._listener.evictions = self.metrics.http_evictions
        threads.start("http", self._run)

    def _run(self) -> None:
        """The event loop: one poll() at a time so stop() is noticed within a wake-up."""
        listener = self._listener
        assert listener is not None
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=1, map=listener._map, use_poll=True, count=1)
        finally:
            if self._stopping.is_set():
                wasyncore.close_all(listener._map)
                self._loop_done.set()

    def stop(self) -> None:
        """Close every connection and end the loop and the pool (bounded: never hangs a stop)."""
        self._stopping.set()
        listener = self._listener
        if listener is None:
            self._sock.close()
            return
        listener.pull_trigger()
        if not self._loop_done.wait(STOP_WAIT):
            log.warning("HTTP endpoint: event loop did not stop within %ss", STOP_WAIT)
        listener.task_dispatcher.shutdown(timeout=STOP_WAIT)
