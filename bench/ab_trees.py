"""A/B of plugin source trees, each against the bare servicer, interleaved.

    python -m bench.ab_trees REPS METHODS NAME=ROOT [NAME=ROOT ...]
    e.g. git archive HEAD~1 kms_appliance | tar -x -C /tmp/old
         python -m bench.ab_trees 6 status,v2enc,v2dec old=/tmp/old new=.

Each ROOT holds a ``kms_appliance`` package, started as the plugin on the local
backend and measured as bench/suite/paired.py does (a co-run at 16 in flight, a
p50 pair at 1). Why: ratios to bare measured minutes apart on these shared
machines are noise; trees measured in the same run, interleaved, are not.
"""

from __future__ import annotations

import os
import statistics
import sys
from functools import partial
from pathlib import Path

from bench.suite import paired, servers
from bench.suite.load import Shape, Window

WIN = Window(0.5, 1.5)


def _report(co: dict[tuple[str, str], list[float]], p50: dict[tuple[str, str], list[float]]) -> None:
    for (name, method), ratios in co.items():
        lo, hi = paired.ci90(ratios)
        lat = p50[(name, method)]
        plo, phi = paired.ci90(lat)
        print(f"{name:12} {method:6} co-run@16 x{statistics.median(ratios):.3f} [{lo}, {hi}] "
              f"range {min(ratios):.2f}-{max(ratios):.2f} | p50@1 x{statistics.median(lat):.3f} "
              f"[{plo}, {phi}]")


def main() -> int:
    reps, methods = int(sys.argv[1]), sys.argv[2].split(",")
    specs = [(name, Path(root).resolve()) for name, root in (a.split("=", 1) for a in sys.argv[3:])]
    names = [n for n, _ in specs]
    co: dict[tuple[str, str], list[float]] = {}
    p50: dict[tuple[str, str], list[float]] = {}
    starters = {"bare": servers.start_bare,
                **{n: partial(servers.start_plugin, n, tree=root) for n, root in specs}}
    try:
        with servers.running(starters) as srvs, paired.pinned(list(srvs.values())) as placement:
            print(placement, file=sys.stderr)
            for rep in range(reps):
                # Rotated, and reversed every other round of rotations: with two trees each
                # goes first as often as the other (rotating and reversing on the same
                # repetitions cancelled out: the first tree always ran first).
                order = names[rep % len(names):] + names[:rep % len(names)]
                order = order[::-1] if (rep // len(names)) % 2 else order
                for method in methods:
                    for name in order:
                        ratio = paired.corun(srvs[name], srvs["bare"], method, Shape(16), WIN)
                        a = srvs[name].measure(method, Shape(1), WIN)
                        b = srvs["bare"].measure(method, Shape(1), WIN)
                        co.setdefault((name, method), []).append(ratio)
                        p50.setdefault((name, method), []).append(a["p50_us"] / b["p50_us"])
                        print(f"rep {rep} {name:10} {method:6} co-run x{ratio:.3f} p50 "
                              f"{a['p50_us']:.0f}/{b['p50_us']:.0f} us, load {os.getloadavg()[0]:.1f}",
                              file=sys.stderr, flush=True)
        _report(co, p50)
    finally:
        servers.remove_homes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
