"""The plugin against the bare servicer in many short, paired runs (issue 2's ratios).

Why paired: on these shared machines the same server's throughput moves by
±30% from one few-second window to the next (a fixed pure-Python loop varies
as much), so two long runs per server, as in the load matrix, give ratios
anywhere from 0.7 to 1.1 for unchanged code. Here each repetition runs the
plugin and the bare servicer back to back (alternating which goes first),
the ratio is taken within each pair, and the report gives the median of the
paired ratios with a bootstrap 90% confidence interval, so a reader sees how
far the figure can be trusted.
"""

from __future__ import annotations

import random
import statistics
import sys
from typing import Any

from . import load
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
    def one(srv: Server) -> dict[str, Any]:
        return load.run(srv.sock, method, shape, win, srv.pid,
                        corpus=srv.home / f"corpus-{method}.json")

    if first_subject:
        s = one(subject)
        return s, one(base)
    b = one(base)
    return one(subject), b


def _row(method: str, shape: Shape, pairs: list[tuple[dict[str, Any], dict[str, Any]]]
         ) -> dict[str, Any]:
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


def run(subject: Server, base: Server, win: Window, reps: int) -> dict[str, Any]:
    rows = []
    for method in METHODS:
        for shape in SHAPES:
            pairs = [_pair(subject, base, method, shape, win, rep % 2 == 0) for rep in range(reps)]
            r = _row(method, shape, pairs)
            rows.append(r)
            print(f"  paired {method:7} {shape.label:>3}: throughput x{r['throughput_ratio']} "
                  f"{r['throughput_ci90']}, p50 x{r['p50_ratio']} {r['p50_ci90']}",
                  file=sys.stderr, flush=True)
    return {"about": f"{subject.name} vs {base.name}: {reps} back-to-back pairs per point "
                     f"(warm-up {win.warmup} s, {win.duration} s each, order alternating); "
                     "median of the paired ratios and its bootstrap 90% interval.",
            "rows": rows}
