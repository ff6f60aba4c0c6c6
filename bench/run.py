"""The benchmark suite's one entry point (``make bench`` / ``make bench-quick``).

    python -m bench.run core|quick|full|ablate|envelope   # docs/benchmarks.md, "Commands"

It builds the Go load generator and reference plugin into bench/.work/bin,
starts every server under test in its own 0700 directory, measures them in
the same run (interleaved), runs the scenarios, and writes JSON, Markdown and
PNG charts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.suite import ablation, akeyless, build, machine, paired, plan, report, scenarios, servers
from bench.suite.matrix import ratios, run_matrix
from bench.suite.targets import all_targets, core_targets


def core(p: plan.Plan, bins: dict[str, Path], with_go: bool) -> dict[str, Any]:
    """The matrix against plugin, plugin with allowlist, bare servicer (and Go ref)."""
    starters = {"plugin": partial(servers.start_plugin, "plugin"),
                "plugin+allowlist": partial(servers.start_plugin, "plugin-allowlist", allowlist=True),
                "bare": servers.start_bare}
    if with_go:
        starters["goref"] = partial(servers.start_goref, bins["goref"])
    with servers.running(starters) as srvs:
        idle = {n: s.rss_kib() for n, s in srvs.items()}
        rows = run_matrix(srvs, p.configs, p.window, p.reps)
        loaded = {n: {"rss_kib": s.rss_kib(), "hwm_kib": s.rss_kib("VmHWM")} for n, s in srvs.items()}
        pairs = paired.run(srvs["plugin"], srvs["bare"], p.paired_window, p.paired_reps)
    out: dict[str, Any] = {"rows": rows, "paired": pairs,
                           "memory": {"idle_rss_kib": idle, "after_load": loaded}}
    out["ratios"] = ratios(rows, "plugin", "bare") + ratios(rows, "plugin+allowlist", "bare")
    if with_go:
        out["ratios"] += ratios(rows, "plugin", "goref")
    return out


def main() -> int:
    try:
        return _main()
    finally:
        servers.remove_homes()


def _main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["core", "quick", "full", "ablate", "envelope"])
    args = ap.parse_args()
    if args.mode == "ablate":
        build.build_all()
        full = plan.PLANS["full"]
        print(json.dumps(ablation.run(full.paired_window, full.paired_reps), indent=1))
        return 0
    if args.mode == "envelope":
        build.build_all()
        try:
            out, targets = scenarios.akeyless_envelope(plan.PLANS["full"])
        except akeyless.Unavailable as exc:  # reported in the JSON, as the full suite does
            out, targets = scenarios.envelope_skipped(f"not available: {exc}")
        print(json.dumps({"machine": machine.describe(), **out, "targets": targets}, indent=1))
        return 0
    p = plan.PLANS[args.mode]
    began = time.time()
    print(f"building Go load generator and reference plugin ({args.mode})", file=sys.stderr)
    bins = build.build_all()
    result: dict[str, Any] = {"mode": args.mode, "machine": machine.describe(),
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "window": {"warmup_s": p.window.warmup,
                                         "duration_s": p.window.duration, "reps": p.reps}}
    result.update(core(p, bins, with_go=args.mode != "core"))
    if args.mode != "core":
        result["scenarios"] = scenarios.run_all(p, bins)
        result["scenario_targets"] = result["scenarios"].pop("targets", [])
    result["elapsed_s"] = round(time.time() - began, 1)
    if args.mode == "core":
        result["targets"] = core_targets(result)
        print(json.dumps(report.core_summary(result), indent=2))
        return 0
    result["targets"] = all_targets(result)
    report.write(result, p.out)
    print(f"report written to {p.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
