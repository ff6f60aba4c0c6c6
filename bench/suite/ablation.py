"""What each piece of the plugin's per-call work costs: ablated variants vs bare.

Every variant is the real plugin with one component switched off or replaced
(bench/plugin_variant.py), co-run against the bare servicer (bench/suite/
paired.py: both on the same CPU at the same time, calls per second of own CPU
time), so a difference of a few percent stands out from the machine's noise.
The as-is plugin and the bare servicer are then GIL-profiled under load.
"""

from __future__ import annotations

import statistics
import sys
from functools import partial
from typing import Any

from . import inproc, paired, profile, servers
from .load import Shape, Window

VARIANTS = ("asis", "no-audit", "sync-audit", "no-metrics", "no-accounting", "no-max-rpcs",
            "no-grpc-limits", "no-bookkeeping")
METHODS = ("v2enc", "v2dec")


def _corun_rows(srvs: dict[str, servers.Server], win: Window, reps: int) -> list[dict[str, Any]]:
    rows = []
    with paired.pinned(list(srvs.values())):
        for v in VARIANTS:
            for method in METHODS:
                eff = [paired.corun(srvs[f"plugin:{v}"], srvs["bare"], method, Shape(16), win)
                       for _ in range(reps)]
                rows.append({"variant": v, "method": method, "inflight": 16, "coruns": reps,
                             "throughput_ratio": round(statistics.median(eff), 3),
                             "ci90": list(paired.ci90(eff))})
                print(f"  ablation {v:14} {method}: x{rows[-1]['throughput_ratio']} "
                      f"{rows[-1]['ci90']}", file=sys.stderr, flush=True)
    return rows


def run(win: Window, reps: int) -> dict[str, Any]:
    starters = {"bare": servers.start_bare,
                **{f"plugin:{v}": partial(servers.start_plugin, f"variant-{v}", variant=v) for v in VARIANTS}}
    with servers.running(starters) as srvs:
        rows = _corun_rows(srvs, win, reps)
        profiles = []
        for name in ("plugin:asis", "bare"):
            prof = profile.gil_profile(srvs[name])
            if prof:
                profiles.append(prof)
    return {"about": "The real plugin with one per-call component removed or replaced, "
                     "co-run against the bare servicer at 16 in flight (throughput ratio "
                     "of a saturated CPU, median and bootstrap 90% interval).",
            "rows": rows, "profiles": profiles, "inproc_us_per_call": inproc.measure()}
