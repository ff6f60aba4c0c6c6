"""The load matrix: every (method, shape) against every server, interleaved.

Servers are measured one after another for each configuration (and, with
``reps`` > 1, in alternating order), so slow drift of a shared machine hits
all of them alike and the ratios measured in the same run stay meaningful.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import load
from .load import Shape, Window
from .servers import Server

# What each server speaks: the Go reference is built on k8s.io/kms pkg/service (v2 only).
V2_ONLY = {"goref"}
V1_METHODS = {"v1enc", "v1dec"}


@dataclass(frozen=True)
class Config:
    method: str
    shape: Shape


def speaks(target: str, method: str) -> bool:
    return not (target in V2_ONLY and method in V1_METHODS)


def row(target: str, cfg: Config, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repetitions of each figure (a run with errors is kept, and counted)."""

    def med(key: str) -> float:
        return round(statistics.median(float(r[key]) for r in runs), 1)

    srv = [load.per_call_us(r, "server_cpu_s") for r in runs]
    cli = [load.per_call_us(r, "client_cpu_s") for r in runs]
    srv_cpu = [s for s in srv if s is not None]
    srv_util = [float(r["server_cpu_s"]) / r["window_s"] for r in runs if r.get("server_cpu_s") is not None]
    return {
        "target": target, "method": cfg.method, "shape": cfg.shape.label,
        "inflight": cfg.shape.inflight, "procs": cfg.shape.procs, "reps": len(runs),
        "p50_us": med("p50_us"), "p99_us": med("p99_us"), "calls_per_s": med("calls_per_s"),
        "server_cpu_us_per_call": round(statistics.median(srv_cpu), 1) if srv_cpu else None,
        "server_cores": round(statistics.median(srv_util), 2) if srv_util else None,
        "loadgen_cpu_us_per_call": round(statistics.median(c for c in cli if c is not None), 1),
        "loadgen_cores": round(statistics.median(float(r["client_cpu_s"]) / r["window_s"]
                                                 for r in runs), 2),
        "server_rss_kib": max(int(r.get("server_rss_kib", 0)) for r in runs),
        "errors": sum(int(r["errors"]) for r in runs),
        "first_error": next((r["first_error"] for r in runs if r.get("first_error")), None),
    }


def run_matrix(servers: dict[str, Server], configs: Iterable[Config], win: Window,
               reps: int) -> list[dict[str, Any]]:
    rows = []
    for cfg in configs:
        names = [n for n in servers if speaks(n, cfg.method)]
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for rep in range(reps):
            order = names if rep % 2 == 0 else list(reversed(names))
            for name in order:
                srv = servers[name]
                runs[name].append(srv.measure(cfg.method, cfg.shape, win))
        for name in names:
            r = row(name, cfg, runs[name])
            rows.append(r)
            print(f"  {cfg.method:7} {cfg.shape.label:>5} {name:16} p50 {r['p50_us']:9.1f} µs"
                  f"  p99 {r['p99_us']:9.1f} µs  {r['calls_per_s']:8.1f}/s  err {r['errors']}",
                  file=sys.stderr, flush=True)
    return rows


def ratios(rows: list[dict[str, Any]], subject: str, baseline: str) -> list[dict[str, Any]]:
    """subject/baseline p50 and throughput ratios for every shared configuration."""
    base = {(r["method"], r["shape"]): r for r in rows if r["target"] == baseline}
    out = []
    for r in rows:
        b = base.get((r["method"], r["shape"]))
        if r["target"] != subject or b is None or not b["p50_us"] or not b["calls_per_s"]:
            continue
        out.append({"subject": subject, "baseline": baseline, "method": r["method"],
                    "shape": r["shape"], "p50_ratio": round(r["p50_us"] / b["p50_us"], 3),
                    "p99_ratio": round(r["p99_us"] / b["p99_us"], 3),
                    "throughput_ratio": round(r["calls_per_s"] / b["calls_per_s"], 3)})
    return out
