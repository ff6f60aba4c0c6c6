"""The plugin with one piece of its per-call work switched off (ablation).

Bench-only. It starts the real plugin (``kms_appliance.cli.main``) after
replacing one component with a no-op or a leaner stand-in, so the suite can
show, in the same run, what each piece costs per call:

    python bench/plugin_variant.py VARIANT serve --socket ... (plugin flags)

Variants: ``asis`` (nothing changed), ``no-audit`` (audit event is a no-op),
``lean-audit`` (the same audit line built with one json.dumps and written
and flushed per record under a lock, without the logging machinery: a
proposal), ``no-metrics`` (counter/histogram no-ops), ``no-max-rpcs`` (grpc
server without ``maximum_concurrent_rpcs``, whose per-call done-callback
takes the server's state lock), ``queued-audit`` (request threads only put
the record on a SimpleQueue; one writer thread formats and writes in
batches, one flush per batch: a proposal), ``proposed`` (``queued-audit`` +
``no-max-rpcs``), ``no-wrapper`` (Calls.run just runs the work: no timing,
metrics or audit).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kms_appliance import audit, cli, metrics
from kms_appliance.kms import calls


class _Nop:
    def inc(self, *_: Any) -> None:
        return None

    def observe(self, *_: Any) -> None:
        return None


def _no_audit() -> None:
    audit.AuditLog.event = lambda self, **fields: None  # type: ignore[method-assign]


def _lean_audit() -> None:
    """Same record, one json.dumps, written and flushed per event under one lock."""
    lock = threading.Lock()
    files: dict[int, Any] = {}
    dumps = json.JSONEncoder(separators=(", ", ": ")).encode

    def event(self: audit.AuditLog, **fields: Any) -> None:
        line = dumps({"ts": audit.utc_ms(time.time()), "schema": audit.SCHEMA, **fields}) + "\n"
        with lock:
            fh = files.get(id(self))
            if fh is None:
                fh = files[id(self)] = open(self._target, "a", encoding="utf-8")  # noqa: SIM115
            fh.write(line)
            fh.flush()

    audit.AuditLog.event = event  # type: ignore[method-assign]


def _no_max_rpcs() -> None:
    real = grpc.server

    def server(*args: Any, **kwargs: Any) -> grpc.Server:
        kwargs.pop("maximum_concurrent_rpcs", None)
        return real(*args, **kwargs)

    grpc.server = server


def _queued_audit() -> None:
    """Request threads enqueue (no lock held across a syscall); one writer batches."""
    q: queue.SimpleQueue[tuple[audit.AuditLog, float, dict[str, Any]]] = queue.SimpleQueue()
    dumps = json.JSONEncoder(separators=(", ", ": ")).encode

    def event(self: audit.AuditLog, **fields: Any) -> None:
        q.put((self, time.time(), fields))

    def writer() -> None:
        files: dict[int, Any] = {}
        while True:
            batch = [q.get()]
            while len(batch) < 512:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            touched = set()
            for log, ts, fields in batch:
                fh = files.get(id(log))
                if fh is None:
                    fh = files[id(log)] = open(log._target, "a", encoding="utf-8")  # noqa: SIM115
                fh.write(dumps({"ts": audit.utc_ms(ts), "schema": audit.SCHEMA, **fields}) + "\n")
                touched.add(id(log))
            for key in touched:
                files[key].flush()

    threading.Thread(target=writer, name="audit-writer", daemon=True).start()
    audit.AuditLog.event = event  # type: ignore[method-assign]


def _proposed() -> None:
    _queued_audit()
    _no_max_rpcs()


def _no_metrics() -> None:
    nop = _Nop()
    metrics.Metrics.bound = lambda self, *a: (nop, nop)  # type: ignore[method-assign,assignment,return-value]


def _no_wrapper() -> None:
    def run(self: calls.Calls, context: Any, api: str, method: str, uid: str,
            work: Callable[[calls.Record], Any], empty: Callable[[], Any]) -> Any:
        return work(calls.Record(uid))

    calls.Calls.run = run  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {
    "asis": lambda: None, "no-audit": _no_audit, "lean-audit": _lean_audit,
    "queued-audit": _queued_audit, "no-metrics": _no_metrics, "no-max-rpcs": _no_max_rpcs,
    "proposed": _proposed,
    "no-wrapper": _no_wrapper,
}

if __name__ == "__main__":
    VARIANTS[sys.argv[1]]()
    sys.exit(cli.main(sys.argv[2:]))
