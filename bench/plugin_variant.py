"""The plugin with one piece of its per-call work switched off (ablation).

Bench-only. It starts the real plugin (``kms_appliance.cli.main``) after
replacing one component with a no-op or a leaner stand-in, so the suite can
show, in the same run, what each piece costs per call. A variant either sets
a real setting (through its environment variable) or replaces a public
method; none reaches into the plugin's private names, so a refactoring that
keeps the public surface keeps every variant meaningful:

    python bench/plugin_variant.py VARIANT serve --socket ... (plugin flags)

Variants: ``asis`` (nothing changed), ``no-audit`` (records are built but never written),
``sync-audit`` (``observability.audit_flush_interval = 0``: one write per
record before the answer leaves), ``no-metrics`` (counter/histogram no-ops),
``no-accounting`` (calls are queued as deployed, but the flusher drops them
without metrics or record: what the off-request-path work costs),
``no-max-rpcs`` (``server.max_concurrent_rpcs`` at its maximum, 100,000: the
bound never refuses, only its per-call slot bookkeeping is left), ``no-grpc-limits``
(the grpc server gets only the message size options: no connection limit,
timeouts, stream or metadata bounds), ``no-bookkeeping``
(a successful call reports to nothing: no queue, metrics or audit).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kms_appliance import audit, cli, metrics, server
from kms_appliance.kms import calls


class _Nop:
    def inc(self, *_: Any) -> None:
        return None

    def observe(self, *_: Any) -> None:
        return None


def _no_audit() -> None:
    audit.AuditLog.write = lambda self, lines: None  # type: ignore[method-assign]


def _no_accounting() -> None:
    """Calls are timed and queued as usual, but the flusher drops them unaccounted."""
    calls.Calls.account = lambda self, rec: ""  # type: ignore[method-assign]


def _sync_audit() -> None:
    """The operator's durability setting: each record written before its answer leaves."""
    os.environ["KMS_APPLIANCE_OBSERVABILITY_AUDIT_FLUSH_INTERVAL"] = "0"


def _no_max_rpcs() -> None:
    """The concurrency bound as high as the setting goes: it never refuses a call here."""
    os.environ["KMS_APPLIANCE_SERVER_MAX_CONCURRENT_RPCS"] = "100000"


def _no_grpc_limits() -> None:
    """grpc server with only the message size options (no connection limits or timeouts)."""
    real = server.PluginServer.options

    def options(self: server.PluginServer) -> list[tuple[str, int]]:
        return [o for o in real(self) if "message_length" in o[0]]

    server.PluginServer.options = options  # type: ignore[method-assign]


def _no_metrics() -> None:
    nop = _Nop()
    metrics.Metrics.bound = lambda self, *a: (nop, nop)  # type: ignore[method-assign,assignment,return-value]


def _no_bookkeeping() -> None:
    calls.Calls.ok = lambda self, *args, **fields: None  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {
    "asis": lambda: None, "no-audit": _no_audit, "sync-audit": _sync_audit,
    "no-metrics": _no_metrics, "no-accounting": _no_accounting, "no-max-rpcs": _no_max_rpcs,
    "no-bookkeeping": _no_bookkeeping, "no-grpc-limits": _no_grpc_limits,
}

if __name__ == "__main__":
    VARIANTS[sys.argv[1]]()
    sys.exit(cli.main(sys.argv[2:]))
