"""Start-up budget of the frozen binary: start-to-ready and idle RSS, both backends.

    python -m bench.startup                       # dist/kms-appliance, 5 runs per case
    python -m bench.startup --binary B --binary C # compare builds (e.g. staticx compressed)
    python -m bench.startup --runs 9 --json out.json

The figures and the builds they compared: docs/binary.md, "Size and start-up".
The source tree (``python -m kms_appliance``) runs as a baseline in the same
run, since absolute figures drift on shared machines; CPU to ready and
``version``'s CPU barely move when other jobs share the cores, so they are
the figures to compare builds by. ``tmpdir_mb`` counts: on a tmpfs (a pod's
``emptyDir: {medium: Memory}``) what is unpacked is memory outside the RSS.
Medians with min and max; nothing here is asserted: bench/ reports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.suite.servers import proc_status
from tests.support import plugin as pm
from tests.support.emulator import start_emulator
from tests.support.procinfo import tree as process_tree
from tests.support.procs import REPO, cpu_seconds

POLL = 0.002
TIMEOUT = 60.0
IDLE = 2.0
# Where TMPDIR (the unpack directory) lives: a tmpfs, as the systemd unit's RuntimeDirectory and
# the container's /tmp are.
TMP_ROOT = Path("/dev/shm")


def one_run(plugin: pm.Plugin, tmpdir: Path) -> dict[str, float]:
    """Start ``plugin`` once: accept and ready times from spawn (the launcher's readiness wait,
    polled every 2 ms), CPU to ready and memory of the whole process tree."""
    t0 = time.perf_counter()
    plugin.start(wait=False)
    try:
        pm.wait_for_socket(plugin.socket, plugin.process.check_alive, TIMEOUT, interval=POLL)
        accept = time.perf_counter() - t0
        pm.wait_for_socket(plugin.socket, plugin.process.check_alive, TIMEOUT, status_ok=True, interval=POLL)
        ready = time.perf_counter() - t0
        cpu_ready = sum(cpu_seconds(p) for p in process_tree(plugin.proc.pid))
        time.sleep(IDLE)
        unpacked = sum(f.stat().st_size for f in tmpdir.rglob("*") if f.is_file() and not f.is_symlink())
        tree = process_tree(plugin.proc.pid)  # again: the chain may have changed while idle
        serving = tree[-1]  # the innermost process is the Python server
        return {"accept_s": accept, "ready_s": ready, "cpu_to_ready_s": cpu_ready,
                "rss_mb": proc_status(serving, "VmRSS") / 1024,
                "tree_rss_mb": sum(proc_status(p, "VmRSS") for p in tree) / 1024,
                "tree_pss_mb": sum(proc_status(p, "Pss", "smaps_rollup") for p in tree) / 1024,
                "processes": len(tree),
                "tmpdir_mb": unpacked / 1048576}
    finally:
        plugin.stop()


def version_cost(cmd: list[str], runs: int) -> dict[str, Any]:
    """Wall and CPU seconds of ``version`` (start, unpack, import, exit), median of *runs*."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory(prefix="kms-startup-", dir=TMP_ROOT) as tmp:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": tmp}
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([*cmd, "version"], env=env, cwd=REPO, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"version_wall_s": _stats(walls), "version_cpu_s": _stats(cpus)}


def _stats(vals: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3),
            "max": round(max(vals), 3)}


@contextmanager
def backend_env(backend: str, work: Path) -> Iterator[dict[str, Any]]:
    """What ``pm.prepare`` needs for one backend: nothing for local (it makes the keyring), or an emulator."""
    if backend == "local":
        yield {}
        return
    emu = start_emulator(work)
    try:
        yield {"emulator": emu}
    finally:
        emu.stop()


def measure(label: str, base_cmd: list[str], backend: str, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kms-startup-", dir=TMP_ROOT) as tmp:
        work = Path(tmp)
        (work / "unpack").mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(work / "unpack")}
        with backend_env(backend, work) as how:
            plugin = pm.prepare(work / "plugin", command=pm.Command(tuple(base_cmd), REPO), base_env=env,
                                http=False, **how)
            samples = [one_run(plugin, work / "unpack") for _ in range(runs)]
    out: dict[str, Any] = {"label": label, "backend": backend, "runs": runs}
    for key in ("accept_s", "ready_s", "cpu_to_ready_s", "rss_mb", "tree_rss_mb", "tree_pss_mb", "tmpdir_mb"):
        out[key] = _stats([s[key] for s in samples])
    out["processes"] = samples[0]["processes"]
    return out


def _print(result: dict[str, Any]) -> None:
    """One line per case: every figure's median, and its minimum in brackets."""
    figures = "  ".join(f"{k} {v['median']:.3f} ({v['min']:.3f})" if isinstance(v, dict) else f"{k} {v}"
                        for k, v in result.items() if k not in ("label", "backend"))
    print(f"{result['backend']:8} {result['label']:40} {figures}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", action="append", type=Path, help="default dist/kms-appliance")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-baseline", action="store_true", help="skip python -m kms_appliance")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    binaries = args.binary or [REPO / "dist" / "kms-appliance"]
    cases = [(str(b), [str(b.resolve())]) for b in binaries]
    if not args.no_baseline:
        cases.append(("source: python -m kms_appliance", [sys.executable, "-m", "kms_appliance"]))
    results: list[dict[str, Any]] = []
    print(f"TMPDIR under {TMP_ROOT}; {args.runs} runs per case; median (min)", flush=True)
    for label, cmd in cases:
        size = Path(cmd[0]).stat().st_size / 1048576 if len(cmd) == 1 else 0.0
        results.append({"label": label, "backend": "-", "size_mib": round(size, 1),
                        **version_cost(cmd, args.runs)})
        _print(results[-1])
    for backend in ("local", "akeyless"):
        for label, cmd in cases:
            results.append(measure(label, cmd, backend, args.runs))
            _print(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
