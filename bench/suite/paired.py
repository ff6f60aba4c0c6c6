"""The plugin against the bare servicer in many short, paired runs (the core ratios).

Why paired, why co-runs at 16 in flight and why pinned: docs/benchmarks.md,
"How it measures" (a shared vCPU's speed moves by tens of percent between
windows; ratios within a pair or a co-run on one pinned CPU do not).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .load import Shape, Window
from .servers import Server

METHODS = ("status", "v2enc", "v2dec", "v1enc", "v1dec")
SHAPES = (Shape(1), Shape(16))
_RESAMPLES = 2000


def ci90(values: list[float], seed: int = 0) -> tuple[float, float]:
    """Bootstrap 90% interval of the median (fixed seed: the same data gives the same text)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(_RESAMPLES))
    return round(meds[int(0.05 * _RESAMPLES)], 3), round(meds[int(0.95 * _RESAMPLES) - 1], 3)


def _pair(subject: Server, base: Server, method: str, shape: Shape, win: Window,
          first_subject: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    order = (subject, base) if first_subject else (base, subject)
    res = {srv.name: srv.measure(method, shape, win) for srv in order}
    return res[subject.name], res[base.name]


def corun(subject: Server, base: Server, method: str, shape: Shape, win: Window) -> float:
    """Both servers loaded over the same window; subject/base calls per own CPU second."""
    start_at = time.time_ns() + 300_000_000
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(srv.measure, method, shape, win, start_at=start_at) for srv in (subject, base)]
    s, b = (run.result() for run in runs)
    return float((s["calls"] / s["server_cpu_s"]) / (b["calls"] / b["server_cpu_s"]))


def _row(method: str, shape: Shape, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    tput = [s["calls_per_s"] / b["calls_per_s"] for s, b in pairs]
    p50 = [s["p50_us"] / b["p50_us"] for s, b in pairs]
    lo, hi = ci90(tput)
    p50_lo, p50_hi = ci90(p50)
    return {
        "method": method, "shape": shape.label, "pairs": len(pairs),
        "plugin_calls_per_s": round(statistics.median(s["calls_per_s"] for s, _ in pairs), 1),
        "bare_calls_per_s": round(statistics.median(b["calls_per_s"] for _, b in pairs), 1),
        "throughput_ratio": round(statistics.median(tput), 3),
        "throughput_ci90": [lo, hi],
        "p50_ratio": round(statistics.median(p50), 3), "p50_ci90": [p50_lo, p50_hi],
        "pair_ratio_range": [round(min(tput), 2), round(max(tput), 2)],
        "errors": sum(int(s["errors"]) + int(b["errors"]) for s, b in pairs),
    }


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (threads started later inherit it from their creator)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


@contextlib.contextmanager
def pinned(servers: list[Server]) -> Iterator[str]:
    """Servers on the first usable CPU, this process (and the load generator) on the others."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        yield "not pinned (one usable CPU)"
        return
    server_cpu, rest = {usable[0]}, set(usable[1:])
    for srv in servers:
        _set_affinity(srv.pid, server_cpu)
    os.sched_setaffinity(0, rest)
    try:
        yield f"servers pinned to CPU {usable[0]}, load generator to CPU {sorted(rest)}"
    finally:
        os.sched_setaffinity(0, set(usable))
        for srv in servers:
            with contextlib.suppress(OSError):
                _set_affinity(srv.pid, set(usable))


def run(subject: Server, base: Server, win: Window, reps: int) -> dict[str, Any]:
    rows = []
    with pinned([subject, base]) as placement:
        for method in METHODS:
            for shape in SHAPES:
                pairs = [_pair(subject, base, method, shape, win, rep % 2 == 0) for rep in range(reps)]
                r = _row(method, shape, pairs)
                if shape.inflight > 1:
                    eff = [corun(subject, base, method, shape, win) for _ in range(reps)]
                    r["corun_throughput_ratio"] = round(statistics.median(eff), 3)
                    r["corun_ci90"] = list(ci90(eff))
                rows.append(r)
                print(f"  paired {method:7} {shape.label:>3}: throughput x{r['throughput_ratio']} "
                      f"{r['throughput_ci90']}, co-run x{r.get('corun_throughput_ratio')} "
                      f"{r.get('corun_ci90')}, p50 x{r['p50_ratio']} {r['p50_ci90']}",
                      file=sys.stderr, flush=True)
    return {"about": f"{subject.name} vs {base.name}: {reps} back-to-back pairs per point "
                     f"(warm-up {win.warmup} s, {win.duration} s each, order alternating; "
                     f"{placement}); median of the paired ratios and its bootstrap 90% "
                     f"interval. At 16 in flight also {reps} co-runs (both servers on the same "
                     "CPU at the same time, calls per second of each one's own CPU time).",
            "placement": placement, "rows": rows}
