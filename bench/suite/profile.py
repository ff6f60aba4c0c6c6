"""Where a server's time goes: py-spy samples of the GIL holder under load.

A grpcio server at 16 in flight is GIL-bound (~1 core), so the share of
GIL-holding samples spent in each part of the call path is the share of
throughput that part costs. py-spy is a bench-only tool (bench/requirements.txt).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import load
from .load import Shape, Window
from .servers import Server

# (label, substring of a frame "function (file:line)") — first match in a stack wins.
GROUPS = (
    ("audit flusher thread (deferred metrics + audit records, write)", "AuditLog._flush_loop"),
    ("metrics + audit record on the request thread (sync mode)", "Calls.account"),
    ("metrics (prometheus counter + histogram)", "Metrics.bound"),
    ("metrics (prometheus counter + histogram)", "prometheus_client"),
    ("call bookkeeping on the request path (timing, queue)", "Calls.ok"),
    ("servicer work (validation, backend, protobuf reply)", "Servicer."),
    ("bare servicer method", "BareV"),
    ("peer-uid relay threads", "_Relay._pump"),
    ("grpc server loop (_serve, polling, events)", "_serve "),
    ("grpc call handling in worker (_unary_response_in_pool)", "_unary_response_in_pool"),
    ("thread pool hand-off (ThreadPoolExecutor)", "thread.py"),
)


def _group(stack: str) -> str:
    for label, needle in GROUPS:
        if needle in stack:
            return label
    return "other"


def summarize(raw: Path, seconds: float, rate: int, calls: int) -> dict[str, Any]:
    groups: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        groups[_group(stack)] += int(n)
    gil_share = total / (seconds * rate)
    per_call = gil_share * seconds / calls * 1e6 if calls else 0.0
    return {
        "gil_held_share": round(gil_share, 3),
        "gil_us_per_call": round(per_call, 1),
        "calls_per_s": round(calls / seconds, 1),
        "breakdown": [{"part": g, "share": round(n / total, 3),
                       "us_per_call": round(per_call * n / total, 1)}
                      for g, n in groups.most_common()] if total else [],
    }


_SIXTEEN = Shape(16)


def gil_profile(srv: Server, method: str = "v2enc", shape: Shape = _SIXTEEN,
                seconds: float = 6.0, rate: int = 250) -> dict[str, Any] | None:
    """Sample ``srv`` under load; None when py-spy is not installed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    with ThreadPoolExecutor(1) as pool, tempfile.TemporaryDirectory(prefix="kms-bench-spy-") as tmp:
        drive = pool.submit(load.run, srv.sock, method, shape, Window(1.0, seconds + 1.5), srv.pid)
        raw = Path(tmp) / "raw.txt"
        subprocess.run([spy, "record", "-p", str(srv.pid), "-d", str(int(seconds)), "-r",
                        str(rate), "-g", "-f", "raw", "-o", str(raw), "--nonblocking"],
                       capture_output=True, timeout=seconds + 60, check=True)
        calls = int(drive.result()["calls_per_s"] * seconds)
        out = summarize(raw, seconds, rate, calls)
    out.update(server=srv.name, method=method, shape=shape.label)
    return out
