"""Drive a server with the Go load generator and merge its reports.

One process = one gRPC connection with ``inflight`` calls in flight (as
kube-apiserver multiplexes); ``procs`` > 1 starts that many processes on a
shared window (``-start-at``) and merges their raw per-call latencies, so
percentiles are over every call, not averages of percentiles.
"""

from __future__ import annotations

import array
import json
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import BIN


@dataclass(frozen=True)
class Shape:
    """How load is offered: processes x calls in flight per connection."""

    inflight: int
    procs: int = 1

    @property
    def label(self) -> str:
        return f"{self.procs}x{self.inflight}" if self.procs > 1 else str(self.inflight)


@dataclass(frozen=True)
class Window:
    warmup: float
    duration: float


def _quantile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return 0.0
    return sorted_ns[int(q * (len(sorted_ns) - 1))] / 1000


def _argv(sock: Path, method: str, inflight: int, win: Window, **kw: Any) -> list[str]:
    argv = [str(BIN / "loadgen"), "-socket", str(sock), "-method", method,
            "-inflight", str(inflight), "-warmup", f"{win.warmup}s",
            "-duration", f"{win.duration}s"]
    for key, value in kw.items():
        if value is not None:
            argv += [f"-{key.replace('_', '-')}", str(value)]
    return argv


def run(sock: Path, method: str, shape: Shape, win: Window, server_pid: int | None = None,
        **kw: Any) -> dict[str, Any]:
    """One measurement; returns the merged result dict (latencies in µs)."""
    if shape.procs == 1:
        return _one(_argv(sock, method, shape.inflight, win, server_pid=server_pid, **kw),
                    win.warmup + win.duration + 600)
    return _many(sock, method, shape, win, server_pid, **kw)


def _one(argv: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr.strip()[-500:]}")
    return dict(json.loads(out.stdout))


def _many(sock: Path, method: str, shape: Shape, win: Window, server_pid: int | None,
          **kw: Any) -> dict[str, Any]:
    start_at = time.time_ns() + 700_000_000
    with tempfile.TemporaryDirectory(prefix="kms-bench-raw-") as tmp:
        procs = []
        for i in range(shape.procs):
            raw = Path(tmp) / f"{i}.raw"
            argv = _argv(sock, method, shape.inflight, win, start_at=start_at, raw=raw,
                         server_pid=server_pid if i == 0 else None, **kw)
            procs.append((raw, subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True)))
        parts, lat = [], array.array("I")
        for raw, proc in procs:
            stdout, stderr = proc.communicate(timeout=win.warmup + win.duration + 600)
            if proc.returncode != 0:
                raise RuntimeError(f"loadgen failed: {stderr.strip()[-500:]}")
            parts.append(json.loads(stdout))
            lat.frombytes(raw.read_bytes())
    return merge(parts, sorted(lat))


def merge(parts: list[dict[str, Any]], sorted_ns: list[int]) -> dict[str, Any]:
    """Merge per-process reports: sums for counts, true percentiles over all calls."""
    first = parts[0]
    window = first["window_s"]
    res = dict(first)
    res.update(calls=len(sorted_ns), errors=sum(p["errors"] for p in parts),
               calls_per_s=len(sorted_ns) / window if window else 0.0,
               p50_us=_quantile(sorted_ns, 0.5), p90_us=_quantile(sorted_ns, 0.9),
               p99_us=_quantile(sorted_ns, 0.99), p999_us=_quantile(sorted_ns, 0.999),
               max_us=sorted_ns[-1] / 1000 if sorted_ns else 0.0,
               mean_us=statistics.fmean(sorted_ns) / 1000 if sorted_ns else 0.0,
               client_cpu_s=sum(p["client_cpu_s"] for p in parts),
               late_start=any(p.get("late_start") for p in parts), procs=len(parts))
    return res


def per_call_us(res: dict[str, Any], key: str) -> float | None:
    """CPU µs per call from a ``*_cpu_s`` figure, or None when not measured."""
    value = res.get(key)
    if value is None or not res.get("calls"):
        return None
    return round(float(value) / res["calls"] * 1e6, 1)
