"""Turn a run's result into JSON, a Markdown report and PNG charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import charts

Result = dict[str, Any]
_COLS = ("target", "method", "shape", "p50_us", "p99_us", "calls_per_s",
         "server_cpu_us_per_call", "server_cores", "loadgen_cpu_us_per_call", "loadgen_cores",
         "errors")


def core_summary(res: Result) -> Result:
    """The core JSON: plugin and bare figures per call shape, and their ratios."""
    keep = ("plugin", "plugin+allowlist", "bare")
    return {
        "machine": res["machine"], "window": res["window"],
        "rows": [{k: r[k] for k in _COLS} for r in res["rows"] if r["target"] in keep],
        "ratios": res["ratios"], "paired": res["paired"], "targets": res["targets"],
        "memory": res["memory"], "elapsed_s": res["elapsed_s"],
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def table(rows: list[dict[str, Any]], cols: tuple[str, ...] | list[str]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out


def _met(v: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[v]


def markdown(res: Result, chart_files: list[str]) -> str:
    m = res["machine"]
    lines = [
        "# kms-appliance benchmark report", "",
        f"Mode `{res['mode']}`, started {res['started_utc']}, took {res['elapsed_s']} s. "
        f"Window: warm-up {res['window']['warmup_s']} s then {res['window']['duration_s']} s, "
        f"{res['window']['reps']} repetition(s) per point, servers interleaved. "
        "Reproduce with `make bench` (see docs/benchmarks.md).", "",
        "## Machine", "",
        f"{m['cpu']}, {m['cores_usable']} usable cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"Python {m['python']}, grpcio {m['grpcio']}, protobuf {m['protobuf']}, "
        f"cryptography {m['cryptography']}; {m['go']}. Load average at start: "
        f"{m['loadavg_at_start']} (shared machine: compare ratios, not absolute figures).", "",
        "## Targets", "",
        "| target | limit | measured | verdict | note |", "|---|---|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['limit']} | {_fmt(t['measured'])} | {_met(t['met'])} | "
              f"{t.get('note', '')} |" for t in res["targets"]]
    lines += ["", "## Load matrix (latency in µs, CPU in µs per call and in cores)", ""]
    lines += table(res["rows"], _COLS)
    lines += ["", "## Ratios (same run)", ""]
    lines += table(res["ratios"], ("subject", "baseline", "method", "shape", "p50_ratio",
                                   "p99_ratio", "throughput_ratio"))
    lines += ["", "## Plugin vs bare, paired (the core ratios)", "", res["paired"]["about"], ""]
    lines += table(res["paired"]["rows"], list(res["paired"]["rows"][0].keys()))
    mem = res["memory"]
    lines += ["", "## Memory (RSS, KiB)", "", "| server | idle | after load | peak (HWM) |",
              "|---|---|---|---|"]
    lines += [f"| {n} | {_fmt(mem['idle_rss_kib'][n])} | {_fmt(v['rss_kib'])} | "
              f"{_fmt(v['hwm_kib'])} |" for n, v in mem["after_load"].items()]
    for name, sc in res.get("scenarios", {}).items():
        lines += ["", f"## Scenario: {name}", "", sc.get("about", "")]
        if sc.get("rows"):
            lines += ["", *table(sc["rows"], list(sc["rows"][0].keys()))]
        if sc.get("ratios"):
            lines += ["", *table(sc["ratios"], list(sc["ratios"][0].keys()))]
        for prof in sc.get("profiles", []):
            lines += ["", f"GIL profile of `{prof['server']}` ({prof['method']}, "
                          f"{prof['shape']} in flight, py-spy --gil): GIL held "
                          f"{prof['gil_held_share']:.0%} of the time, "
                          f"{prof['gil_us_per_call']} µs per call at {prof['calls_per_s']} calls/s.",
                      "", *table(prof["breakdown"], ("part", "share", "us_per_call"))]
        for k, v in sc.items():
            if k not in ("about", "rows", "ratios", "profiles"):
                lines.append(f"- {k}: {_fmt(v) if not isinstance(v, dict | list) else json.dumps(v)}")
    lines += ["", "## Charts", ""] + [f"![{c}]({c})" for c in chart_files]
    return "\n".join(lines) + "\n"


def write(res: Result, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    files = charts.render(res, out)
    (out / "report.md").write_text(markdown(res, files))
