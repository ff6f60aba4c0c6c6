"""Liveness, readiness and the HTTP endpoint that serves them with /metrics.

Probes never reach the backend: they read state that the maintenance loop
refreshes in the background (a real wrap/unwrap round trip every
``health_interval``), so a burst of kube-apiserver or kubelet probes cannot
eat the remote KMS's rate limit. Readiness falls only after consecutive
failures, and throttling never counts: one bad call is not an outage.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .backends.base import KeyBackend
from .errors import KmsError, Throttled
from .metrics import Metrics

log = logging.getLogger("kms_appliance.health")
FAILURES_BEFORE_UNREADY = 2
# A check returns None while its component is fine, or a short reason (no secrets) why not.
Check = Callable[[], str | None]


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


class _Handler(BaseHTTPRequestHandler):
    server: HealthHttpServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server
        if path == "/metrics":
            self._send(200, generate_latest(srv.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/livez":
            self._verdict(*srv.health.live())
        elif path in ("/readyz", "/healthz"):
            self._verdict(*srv.health.ready())
        else:
            self._send(404, b'{"status":"not found"}\n', "application/json")

    def _verdict(self, ok: bool, reason: str) -> None:
        body = {"status": "ok" if ok else "unavailable", "reason": reason}
        self._send(200 if ok else 503, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes are frequent and uninteresting; keep them out of the logs."""


class HealthHttpServer(ThreadingHTTPServer):
    """/metrics, /livez, /readyz, /healthz on one small threaded server."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], health: Health, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
