"""The plugin with one piece of its per-call work switched off (ablation; the variants:
docs/benchmarks.md, "What is under test").

    python bench/plugin_variant.py VARIANT serve --socket ... (plugin flags)

A variant sets a real setting (through its environment variable) or replaces a
public method, never a private name: a refactoring that keeps the public
surface keeps every variant meaningful.
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
