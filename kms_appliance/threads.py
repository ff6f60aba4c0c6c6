"""Supervised long-lived threads: none of them may die silently.

A plugin whose accept loop, audit flusher or HTTP server thread died keeps
its process (and its socket) alive while serving nothing, and kubelet or
systemd never learn of it. Every long-lived thread is therefore started
here: an exception is logged (its type only: exception text may quote
secrets), counted in ``kms_appliance_thread_restarts_total``, and the
thread is restarted after a short backoff. A thread that keeps dying, or
one started with ``restart=False`` that ends while the plugin is not
stopping, makes :meth:`Supervisor.problem` report it, which fails /livez.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter

log = logging.getLogger("kms_appliance.threads")
BACKOFF = 0.2
MAX_RESTARTS = 5  # within WINDOW seconds; beyond that the thread is left dead and liveness fails
WINDOW = 60.0


class Supervisor:
    """Starts named threads and restarts or reports them when they die."""

    def __init__(self, restarts: Counter | None = None) -> None:
        self._restarts = restarts
        self._dead: dict[str, str] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._retired: set[str] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def start(self, name: str, target: Callable[[], None], *, restart: bool = True) -> threading.Thread:
        """Run ``target`` in a daemon thread named ``name`` for as long as the plugin runs.

        ``target`` returning while :attr:`stopping` is set is a normal end.
        """
        thread = threading.Thread(target=self._run, args=(name, target, restart), name=name,
                                  daemon=True)
        with self._lock:
            self._threads[name] = thread
            self._retired.discard(name)
        thread.start()
        return thread

    def _run(self, name: str, target: Callable[[], None], restart: bool) -> None:
        deaths: list[float] = []
        while True:
            try:
                target()
                if self._ended(name):
                    return
                why = "returned"
            except BaseException as exc:  # a thread's death is reported, never silent
                why = f"raised {type(exc).__name__}"
            if self._ended(name):
                return
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < WINDOW] + [now]
            if not restart or len(deaths) > MAX_RESTARTS:
                self._declare_dead(name, why)
                return
            log.error("thread %s %s; restarting it", name, why)
            if self._restarts is not None:
                self._restarts.labels(name).inc()
            self.stopping.wait(BACKOFF)

    def retire(self, name: str) -> None:
        """The owner of ``name`` is stopping it: its end is normal, not a death.

        For components stopped on their own (a server stopped by a test, a
        backend closed) while the plugin as a whole is not stopping.
        """
        with self._lock:
            self._retired.add(name)

    def _ended(self, name: str) -> bool:
        if self.stopping.is_set():
            return True
        with self._lock:
            return name in self._retired

    def _declare_dead(self, name: str, why: str) -> None:
        log.critical("thread %s %s and is not restarted; liveness now fails", name, why)
        with self._lock:
            self._dead[name] = why

    def problem(self) -> str | None:
        """A liveness check: the first dead thread and why, or None."""
        with self._lock:
            if not self._dead:
                return None
            name, why = next(iter(self._dead.items()))
        return f"thread {name} {why}"

    def alive(self, name: str) -> bool:
        with self._lock:
            thread = self._threads.get(name)
        return thread is not None and thread.is_alive()
