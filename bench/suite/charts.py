"""PNG charts for the report (matplotlib, a bench-only dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

Result = dict[str, Any]


def _bars(res: Result, key: str, title: str, ylabel: str, path: Path) -> None:
    rows = res["rows"]
    cfgs = list(dict.fromkeys((r["method"], r["shape"]) for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    by = {(r["target"], r["method"], r["shape"]): r[key] for r in rows}
    fig, ax = plt.subplots(figsize=(max(8, len(cfgs) * 0.9), 4.5))
    width = 0.8 / len(targets)
    for i, t in enumerate(targets):
        xs = [j + i * width for j in range(len(cfgs))]
        ax.bar(xs, [by.get((t, m, s)) or 0 for m, s in cfgs], width, label=t)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cfgs))])
    ax.set_xticklabels([f"{m}\n{s}" for m, s in cfgs], fontsize=8)
    if key == "p50_us":
        ax.set_yscale("log")
    _save(fig, ax, title, ylabel, path)


def _lines(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str,
           ylabel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, pts in series.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    _save(fig, ax, title, ylabel, path)


def _save(fig: Any, ax: Any, title: str, ylabel: str, path: Path) -> None:
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render(res: Result, out: Path) -> list[str]:
    files = []
    _bars(res, "p50_us", "p50 latency per call (µs, log scale)", "µs", out / "p50.png")
    _bars(res, "calls_per_s", "Throughput (calls/s)", "calls/s", out / "throughput.png")
    files += ["p50.png", "throughput.png"]
    deks = res.get("scenarios", {}).get("dek_scaling", {}).get("rows", [])
    if deks:
        backends = list(dict.fromkeys(r["backend"] for r in deks))
        lat = {f"{b} p50": [(r["deks"], r["p50_us"]) for r in deks if r["backend"] == b] for b in backends}
        lat.update({f"{b} p99": [(r["deks"], r["p99_us"]) for r in deks if r["backend"] == b]
                    for b in backends})
        _lines(lat, "Decrypt latency vs distinct DEKs", "distinct DEKs", "µs", out / "dek_latency.png")
        rss = {b: [(r["deks"], r["rss_mib"]) for r in deks if r["backend"] == b] for b in backends}
        _lines(rss, "Plugin RSS vs distinct DEKs", "distinct DEKs", "MiB", out / "dek_rss.png")
        files += ["dek_latency.png", "dek_rss.png"]
    return files
