"""What each piece of the plugin's per-call work costs: ablated variants vs bare.

Every variant is the real plugin with one component switched off or replaced
(bench/plugin_variant.py); all are measured in the same run, interleaved,
against the bare grpcio servicer, and the as-is plugin and the bare servicer
are GIL-profiled under load.
"""

from __future__ import annotations

from typing import Any

from . import inproc, profile, servers
from .load import Shape, Window
from .matrix import Config, ratios, run_matrix

VARIANTS = ("asis", "no-audit", "sync-audit", "no-metrics", "no-accounting", "no-max-rpcs",
            "no-wrapper")


def run(win: Window, reps: int, do_profile: bool = True) -> dict[str, Any]:
    srvs: dict[str, servers.Server] = {}
    try:
        srvs["bare"] = servers.start_bare()
        for v in VARIANTS:
            srvs[f"plugin:{v}"] = servers.start_plugin(f"variant-{v}", variant=v)
        cfgs = [Config("v2enc", Shape(1)), Config("v2enc", Shape(16)), Config("v2enc", Shape(64))]
        rows = run_matrix(srvs, cfgs, win, reps)
        profiles = []
        if do_profile:
            for name in ("plugin:asis", "bare"):
                prof = profile.gil_profile(srvs[name])
                if prof:
                    profiles.append(prof)
    finally:
        for srv in srvs.values():
            srv.stop()
    out_ratios = []
    for v in VARIANTS:
        out_ratios += ratios(rows, f"plugin:{v}", "bare")
    return {"about": "The real plugin with one per-call component removed or replaced, "
                     "v2 Encrypt, against the bare servicer in the same run.",
            "rows": rows, "ratios": out_ratios, "profiles": profiles,
            "inproc_us_per_call": inproc.measure()}
