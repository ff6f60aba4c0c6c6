"""Wires configuration, backend, server, health, audit and metrics together.

Lifecycle: ``serve()`` installs the signal handling, ``start()`` brings
everything up (the socket is created with a umask-only mode, so no chmod race
exists whatever threads already run), ``run_until_stopped()`` hosts the
maintenance loop, ``stop()`` drains. The maintenance loop owns key refreshes,
the backend health probe, the self-probe through the socket path and SIGHUP
reloads, so none of them runs on the request path; the other periodic work
(audit flushing, Akeyless token renewal, the gRPC event loop, the HTTP
endpoint, the peer gate's accept loops) runs in threads under the Supervisor,
which restarts them or fails /livez. /livez also fails when this loop stalls.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import backends, process, service, version
from .audit import AuditGate, AuditLog
from .backends.base import KeyBackend, KeyStatus
from .config import Config
from .errors import KmsError
from .health import Health, HealthHttpServer
from .metrics import Metrics
from .peercred import Peer
from .refusals import RefusalThrottle, Report
from .selfprobe import EVERY_AT_MOST, SelfProbe
from .threads import Supervisor

log = logging.getLogger("kms_appliance.app")
TICK = 0.5


class App:
    """One running plugin."""

    def __init__(self, cfg: Config, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.threads = Supervisor(self.metrics.thread_restarts)
        self.refusals = RefusalThrottle(self._report_refusal)  # records bounded, metric exact
        self.audit = AuditLog(cfg.observability.audit_log, cfg.observability.audit_flush_interval,
                              metrics=self.metrics, threads=self.threads)
        self.backend: KeyBackend = backends.create(cfg, self.metrics, self.threads)
        attach = getattr(self.backend, "set_event_sink", None)  # Akeyless IK events (envelope mode)
        if attach is not None:
            attach(self._backend_event)
        st = self.backend.status()
        self.health = Health(self.backend, self.metrics, cfg.observability.health_interval)
        self.health.watch("threads", self.threads.problem, live=True)
        self.health.watch("audit", self.audit.problem, live=False)  # degraded, not dead
        # audit_required: the servicers refuse calls while records would be lost (docs/audit-log.md).
        served = AuditGate(self.backend, self.audit) if cfg.observability.audit_required \
            else self.backend
        svc = service.servicers(served, self.metrics, self.audit, self._on_status_change)
        # A backend answering from memory, with audit records queued (not written per call),
        # does no I/O on a call's path: its calls skip the hand-off to a worker thread, unless
        # the backend finds the call would wait (kms_appliance/inline.py).
        in_memory = bool(getattr(self.backend, "in_memory", False)) and self.audit.deferred
        self.server = service.server(cfg.server, svc, self.metrics, on_refuse=self._on_refuse,
                                     threads=self.threads, in_memory=in_memory)
        # Liveness means serving through the path kube-apiserver dials (docs/health.md).
        self.selfprobe = SelfProbe(cfg.server.socket, gauge=self.metrics.self_probe_failures)
        self.health.watch("socket", self.server.socket_problem, live=True)
        self.health.watch("self-probe", self.selfprobe.problem, live=True)
        self.http: HealthHttpServer | None = None
        self._wake = process.Wakeup()  # signals and request_*() reach the loop without locks
        self._stopped = False
        self._key = (st.key_id, st.key_version)
        self._note_key(st)

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        listen = self.cfg.observability.http_listen
        if listen is not None:  # bound first: a taken port is a config error before the socket exists
            self.http = HealthHttpServer(listen, self.health, self.metrics)
        self.server.start()
        if self.http is not None:
            self.http.start(self.threads)
            log.info("metrics and health on http://%s:%d/", *self.http.server_address)
        else:
            log.info("HTTP endpoint disabled: no /metrics, /livez, /readyz")
        self.health.serving = True
        self.health.probe()
        self._event("startup", version=version.__version__, socket=str(self.server.socket_path))

    @property
    def http_address(self) -> tuple[str, int] | None:
        if self.http is None:
            return None
        host, port = self.http.server_address[:2]
        return str(host), int(port)

    def serve(self, chain: process.Chain | None = None,
              ready: Callable[[], None] | None = None) -> None:
        """The whole life of ``serve``: handlers first (a SIGTERM during the bind still stops
        cleanly), start, the maintenance loop, then a drained stop. ``chain``: the frozen
        binary's ancestors, whose death ends this process (process.watch_top); ``ready``
        runs once started (the demo shows its round trip there)."""
        with self._wake.signals():
            try:
                self.start()
                if ready is not None:
                    ready()
                if chain is not None and chain.top is not None:
                    self.threads.start("ancestor-watch", lambda: process.watch_top(
                        chain, self.threads.stopping.wait, self.request_stop))
                self.run_until_stopped()
            finally:
                self.stop()

    def run_until_stopped(self) -> None:
        """Maintenance loop; returns once ``request_stop()`` was called or SIGTERM/SIGINT came.

        Reloads (SIGHUP) are coalesced: at most one per TICK, so a
        burst of any size costs a few reloads, and a lone SIGHUP is handled at once.
        """
        due = _Due(self.backend, self.cfg)
        reload_pending, next_reload = False, 0.0
        while not self._stopped:
            codes = self._wake.wait(TICK)
            if codes & {process.STOP, signal.SIGTERM, signal.SIGINT}:
                self._stopped = True
                log.info("stopping (%s)", _why(codes))
                return
            self.health.tick()
            self.refusals.flush()
            self.audit.flush()
            reload_pending |= signal.SIGHUP in codes
            if reload_pending and time.monotonic() >= next_reload:
                reload_pending, next_reload = False, time.monotonic() + TICK
                self.audit.reopen()
                self._refresh()
            elif due.refresh():
                self._refresh()
            if due.probe():
                self.health.probe()
            if due.self_probe():
                self.selfprobe.probe()

    def request_stop(self) -> None:
        """Stop the maintenance loop (any thread; never from a signal handler: serve() has those)."""
        self._stopped = True
        self._wake.notify(process.STOP)

    def stop(self) -> None:
        self.threads.stopping.set()
        self.health.serving = False
        self.server.stop(self.cfg.server.grace_period)
        self.refusals.flush(force=True)  # the records' counts now add up to the metric
        if self.http is not None:
            self.http.stop()
        self._event("shutdown")
        self.backend.close()
        self.audit.close()

    # ---- events ----------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            self.backend.refresh()
        except KmsError as exc:
            log.warning("key refresh failed, keeping the current key: %s", exc.message)
            return
        except Exception as exc:  # a reload must never stop the plugin; log the type only
            log.error("key refresh failed (%s), keeping the current key", type(exc).__name__)
            return
        st = self.backend.status()
        if (st.key_id, st.key_version) != self._key:
            old_id, old_version = self._key
            self._key = (st.key_id, st.key_version)
            self._note_key(st)
            self._event("key_rotation", key_id=st.key_id, key_version=st.key_version,
                        previous_key_id=old_id, previous_key_version=old_version)
            log.info("key rotated: now %s (version %s)", st.key_id, st.key_version)

    def _note_key(self, st: KeyStatus) -> None:
        name = self.backend.name
        if st.key_version.isdigit():
            self.metrics.key_version.labels(name).set(int(st.key_version))
        self.metrics.key_changed.labels(name).set(time.time())
        if st.created is not None:  # the rotation alert's source: the backend's date, not our start
            self.metrics.key_created.labels(name).set(st.created)
        else:  # unknown for this version: no stale age left from the previous one
            self.metrics.key_created.clear()

    def _on_status_change(self, healthz: str, key_id: str, key_version: str) -> None:
        self._event("status_change", api="v2", healthz=healthz, key_id=key_id,
                    key_version=key_version)

    def _on_refuse(self, peer: Peer, reason: str, count: int) -> None:
        """Every refusal counted; records and log lines aggregated (kms_appliance/refusals.py)."""
        self.metrics.peer_refusals.labels(reason).inc(count)
        self.refusals.refused(peer, reason, count)

    def _report_refusal(self, r: Report) -> None:
        self._event("peer_refused", outcome="refused", reason=r.reason, peer_pid=r.pid,
                    peer_uid=r.uid, peer_gid=r.gid, count=r.count, seconds=round(r.seconds, 3))
        if r.count == 1 and not r.seconds:
            log.warning("refused connection from pid %d uid %d: %s", r.pid, r.uid, r.reason)
        else:
            log.warning("refused %d more connections from uid %d in %.0fs: %s (last pid %d)",
                        r.count, r.uid, r.seconds, r.reason, r.pid)

    def _backend_event(self, event: str, fields: Mapping[str, object]) -> None:
        self._event(event, **fields)

    def _event(self, event: str, **fields: Any) -> None:
        st = self.backend.status()
        base = {"event": event, "backend": self.backend.name, "key_name": st.key_name,
                "key_id": st.key_id, "key_version": st.key_version, "outcome": "ok"}
        self.audit.event(**{**base, **fields})


def _why(codes: set[int]) -> str:
    names = [signal.Signals(c).name for c in sorted(codes) if c in (signal.SIGTERM, signal.SIGINT)]
    return ", ".join(names) or "requested"


class _Due:
    """Decides when the maintenance loop refreshes the key and probes health."""

    def __init__(self, backend: KeyBackend, cfg: Config) -> None:
        self._refresh_every = backend.refresh_interval
        self._probe_every = cfg.observability.health_interval
        self._self_probe_every = min(EVERY_AT_MOST, self._probe_every)
        now = time.monotonic()
        self._next_refresh = now + self._refresh_every
        self._next_probe = now + self._probe_every
        self._next_self_probe = now + self._self_probe_every

    def refresh(self) -> bool:
        return self._take("_next_refresh", self._refresh_every)

    def probe(self) -> bool:
        return self._take("_next_probe", self._probe_every)

    def self_probe(self) -> bool:
        return self._take("_next_self_probe", self._self_probe_every)

    def _take(self, attr: str, every: float) -> bool:
        now = time.monotonic()
        if now < getattr(self, attr):
            return False
        setattr(self, attr, now + every)
        return True
