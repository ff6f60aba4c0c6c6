"""Scenarios beyond the load matrix: storms, restarts, rotation, DEK growth, RSS.

Each scenario returns ``{"about": ..., "rows": [...], ...}`` for the report;
targets it can judge go to ``targets``. A scenario that needs a component
that is not available says so instead of passing silently.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import ablation, akeyless, load, servers
from .load import Shape, Window
from .servers import PY, REPO, Server
from .targets import Row, find, target

Sc = dict[str, Any]


def _say(msg: str) -> None:
    print(f"  scenario: {msg}", file=sys.stderr, flush=True)


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    return {"p50_us": round(r["p50_us"], 1), "p99_us": round(r["p99_us"], 1),
            "calls_per_s": round(r["calls_per_s"], 1), "errors": r["errors"]}


def status_storm(win: Window) -> Sc:
    """Health probes hammering Status while one client encrypts."""
    srv = servers.start_plugin("storm")
    try:
        quiet = load.run(srv.sock, "v2enc", Shape(1), win, srv.pid)
        with ThreadPoolExecutor(1) as pool:
            storm = pool.submit(load.run, srv.sock, "status", Shape(64, procs=2), win, srv.pid)
            time.sleep(0.2)
            busy = load.run(srv.sock, "v2enc", Shape(1), win)
    finally:
        srv.stop()
    rows = [{"phase": "encrypt alone", "method": "v2enc", "shape": "1", **_brief(quiet)},
            {"phase": "status storm", "method": "status", "shape": "2x64", **_brief(storm.result())},
            {"phase": "encrypt during storm", "method": "v2enc", "shape": "1", **_brief(busy)}]
    return {"about": "Status at 2 processes x 64 in flight (health probes) while one client "
                     "encrypts; Status is answered from held state.", "rows": rows}


def _fixed(srv: Server, method: str, n: int, inflight: int, corpus: Path) -> dict[str, Any]:
    return load.run(srv.sock, method, Shape(inflight), Window(0, 0), srv.pid, calls=n,
                    distinct=n, corpus=corpus)


def restart(srv: Server, n: int, label: str) -> tuple[Server, list[dict[str, Any]]]:
    """kube-apiserver restart: ``n`` distinct v1 DEKs decrypted once, cold then warm.

    One call in flight: the apiserver's watch cache decodes a resource's list
    item by item (the upstream report: 40 ms per call, 80 s for 2,000 secrets).

    The corpus is made first; the plugin is then restarted so the first pass
    starts with an empty cache (cold); the second pass is the same list again
    with the plugin still up (warm, as when only the apiserver restarts).
    """
    corpus = srv.home / f"restart-{n}.json"
    corpus.unlink(missing_ok=True)
    load.run(srv.sock, "v1dec", Shape(16), Window(0, 0), None, calls=1, distinct=n, corpus=corpus)
    srv = srv.restart()
    rows = []
    for phase in ("cold", "warm"):
        r = _fixed(srv, "v1dec", n, 1, corpus)
        rows.append({"backend": label, "phase": phase, "deks": n, "seconds": round(r["window_s"], 3),
                     **_brief(r)})
    return srv, rows


def rotation(win: Window) -> Sc:
    """Rotate the local keyring mid-window under 16 in flight, then SIGHUP."""
    srv = servers.start_plugin("rotation")
    try:
        long = Window(win.warmup, max(win.duration, 4.0))
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(load.run, srv.sock, "v2enc", Shape(16), long, srv.pid)
            time.sleep(long.warmup + long.duration * 0.4)
            rotated_at = time.time_ns()
            srv.plugin.rotate_key()
            srv.plugin.proc.send_signal(signal.SIGHUP)
        done = run.result()
    finally:
        srv.stop()
    seen = done.get("key_id_first_seen_unix_ns", {})
    new = [ns for ns in seen.values() if ns > rotated_at]
    switch_ms = round((min(new) - rotated_at) / 1e6, 1) if new else None
    return {"about": "v2 Encrypt at 16 in flight; `keyring rotate` then SIGHUP at 40% of the "
                     "window. The new key_id must appear without errors.",
            "rows": [{"shape": "16", **_brief(done)}], "key_ids_seen": len(seen),
            "new_key_id_after_ms": switch_ms}


def dek_scaling(srv: Server, counts: tuple[int, ...], win: Window, label: str,
                prime: bool = False) -> list[dict[str, Any]]:
    """Decrypt latency and RSS as the number of distinct DEKs grows.

    ``prime`` first decrypts each of the N DEKs once, so a backend with a
    decrypt cache is measured in its steady state (hits), not on first touch.
    """
    corpus = srv.home / "scaling.json"
    biggest = max(counts)
    _say(f"{label}: making {biggest} distinct DEKs")
    load.run(srv.sock, "v2dec", Shape(16), Window(0, 0), None, calls=1, distinct=biggest, corpus=corpus)
    rows = []
    for n in counts:
        if prime:
            load.run(srv.sock, "v2dec", Shape(16), Window(0, 0), None, calls=n, distinct=n, corpus=corpus)
        r = load.run(srv.sock, "v2dec", Shape(16), win, srv.pid, distinct=n, corpus=corpus)
        rows.append({"backend": label, "deks": n, **_brief(r), "rss_mib": round(srv.rss_kib() / 1024, 1)})
        _say(f"{label}: {n} DEKs p50 {r['p50_us']:.0f} µs")
    return rows


def local_backend(p: Any) -> dict[str, Sc]:
    out: dict[str, Sc] = {}
    _say("status storm")
    out["status_storm"] = status_storm(p.scenario_window)
    _say("rotation under load")
    out["rotation"] = rotation(p.scenario_window)
    srv = servers.start_plugin("restart")
    try:
        _say(f"apiserver restart, {p.restart_deks} v1 DEKs (local)")
        srv, rows = restart(srv, p.restart_deks, "local")
        out["apiserver_restart"] = {"about": "Distinct v1 DEKs decrypted once each, one at a "
                                             "time, plugin freshly started (cold) then again "
                                             "(warm).", "rows": rows}
        out["dek_scaling"] = {"about": "v2 Decrypt at 16 in flight cycling over N distinct "
                                       "DEKs; RSS of the plugin after each step.",
                              "rows": dek_scaling(srv, p.dek_counts, p.scenario_window, "local")}
    finally:
        srv.stop()
    return out


def akeyless_backend(p: Any) -> tuple[dict[str, Sc], list[dict[str, Any]]]:
    """Rows with the Akeyless backend via the emulator at 0 and 20 ms added latency."""
    out: dict[str, Sc] = {}
    with akeyless.plugin_on_emulator("akeyless") as (emu, srv):
        idle = srv.rss_kib()
        rows = []
        for ms in (0, 20):
            emu.latency(ms / 1000)
            shapes = [("status", Shape(1))] + [(m, Shape(n)) for m in ("v2enc", "v2dec")
                                               for n in p.akeyless_inflight]
            for method, shape in shapes:
                r = srv.measure(method, shape, p.scenario_window)
                note = "decrypt cache hit" if method == "v2dec" else ""
                rows.append({"added_ms": ms, "method": method, "shape": shape.label, **_brief(r),
                             "note": note})
                _say(f"akeyless +{ms} ms {method} {shape.label}: p50 {r['p50_us']:.0f} µs")
        out["akeyless"] = {"about": "Akeyless backend on the loopback emulator (HTTPS), with "
                                    "0 and 20 ms added to every encrypt/decrypt/describe-item "
                                    "call (v2enc: an encrypt and its version check). v2dec "
                                    "replays one ciphertext: decrypt-cache hits.", "rows": rows,
                           "idle_rss_mib": round(idle / 1024, 1),
                           "loaded_rss_mib": round(srv.rss_kib() / 1024, 1)}
        emu.latency(0.02)
        _say(f"apiserver restart, {p.restart_deks} v1 DEKs (akeyless +20 ms)")
        restarted, rrows = restart(srv, p.restart_deks, "akeyless+20ms")
        out["apiserver_restart_akeyless"] = {
            "about": "As the local restart, with Akeyless 20 ms away: cold = every DEK is a "
                     "cache miss (a backend round trip), warm = decrypt-cache hits.",
            "rows": rrows}
        emu.latency(0)
        counts = tuple(n for n in p.dek_counts if n <= p.akeyless_dek_max)
        out["dek_scaling_akeyless"] = {
            "about": "Akeyless (0 ms) decrypt vs distinct DEKs, each step primed with one pass "
                     "over its N DEKs (steady state: decrypt-cache hits; RSS includes the cache).",
            "rows": dek_scaling(restarted, counts, p.scenario_window, "akeyless", prime=True)}
    return out, _akeyless_targets(out, idle)


def akeyless_envelope(p: Any) -> tuple[dict[str, Sc], list[dict[str, Any]]]:
    """Envelope mode with Akeyless 20 ms away: Encrypt and cache-miss Decrypt at the socket
    (both local AES-GCM under the held intermediate key), then an apiserver restart of
    ``restart_deks`` v1 DEKs while every Akeyless endpoint answers 503."""
    # cache.size 1: replaying many distinct ciphertexts makes every decrypt a cache miss.
    settings = {"KMS_APPLIANCE_AKEYLESS_MODE": "envelope", "KMS_APPLIANCE_CACHE_SIZE": "1"}
    with akeyless.plugin_on_emulator("akeyless-envelope", settings) as (emu, srv):
        emu.latency(0.02)
        rows = []
        for method, kw in (("v2enc", {}), ("v2dec", {"distinct": 1000})):
            r = load.run(srv.sock, method, Shape(1), p.scenario_window, srv.pid,
                         corpus=srv.home / f"envelope-{method}.json" if kw else None, **kw)
            rows.append({"method": method, "shape": "1", **_brief(r),
                         "note": "cache miss (1,000 distinct, cache.size 1)" if kw else ""})
            _say(f"envelope +20 ms {method}: p50 {r['p50_us']:.0f} µs")
        n = p.restart_deks
        corpus = srv.home / f"envelope-restart-{n}.json"
        load.run(srv.sock, "v1dec", Shape(16), Window(0, 0), None, calls=1, distinct=n, corpus=corpus)
        emu.outage()
        r = _fixed(srv, "v1dec", n, 1, corpus)  # a new connection: the restarted apiserver
        restart_row = {"deks": n, "akeyless": "503 on every endpoint", "seconds": round(r["window_s"], 3),
                       "served": r["calls"], **_brief(r)}  # calls counts answered ones only
        _say(f"envelope restart during outage: {restart_row['served']}/{n} served")
    out = {"akeyless_envelope": {
        "about": "akeyless.mode = envelope, Akeyless 20 ms away: DEKs are wrapped and unwrapped "
                 "locally under the held intermediate key; the restart row decrypts every DEK "
                 "once over a new connection while Akeyless answers 503 to everything.",
        "rows": rows, "restart_during_outage": restart_row}}
    served = restart_row["served"]
    return out, [*(_p50_at_20ms(f"envelope {what}", r)
                   for r, what in zip(rows, ("Encrypt", "cache-miss Decrypt"), strict=True)),
                 target(f"apiserver restart of {n} v1 DEKs during an Akeyless outage (envelope)",
                        f"{n} served", served, served == n)]


def _p50_at_20ms(what: str, row: dict[str, Any]) -> Row:
    return target(f"{what} p50 with 20 ms backend latency", "<= 1000 µs", row["p50_us"],
                  row["p50_us"] <= 1000)


def _akeyless_targets(out: dict[str, Sc], idle_kib: int) -> list[Row]:
    t = []
    rows = out.get("akeyless", {}).get("rows", [])
    for method, what in (("status", "Status"), ("v2dec", "decrypt-cache hit")):
        if r := find(rows, added_ms=20, method=method, shape="1"):
            t.append(_p50_at_20ms(what, r))
    rr = out.get("apiserver_restart_akeyless", {}).get("rows", [])
    if len(rr) == 2 and rr[0]["seconds"]:
        ratio = round(rr[1]["seconds"] / rr[0]["seconds"], 3)
        t.append(target("warm apiserver restart vs cacheless (akeyless +20 ms)", "<= 0.1x", ratio,
                        ratio <= 0.1))
    idle_mib = round(idle_kib / 1024, 1)
    t.append(target("idle RSS with the Akeyless backend", "<= 60 MiB", idle_mib, idle_mib <= 60))
    return t


def startup(runs: int) -> Sc:
    """Cold start of the frozen binary, measured by bench/startup.py."""
    with tempfile.TemporaryDirectory(prefix="kms-bench-startup-") as tmp:
        dest = Path(tmp) / "startup.json"
        quick = ["--no-baseline"] if runs == 1 else []  # quick mode: the frozen binary only
        out = subprocess.run([PY, "-m", "bench.startup", "--runs", str(runs), "--json", str(dest), *quick],
                             cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
        if out.returncode != 0 or not dest.exists():
            return {"about": f"not available: bench/startup.py exited {out.returncode} "
                             f"(is dist/kms-appliance built? `make binary`): "
                             f"{out.stderr.strip()[-300:]}"}
        data = json.loads(dest.read_text())
    # Each of bench/startup.py's entries per backend (its `version` entries have none).
    rows = [{"binary": "source" if d["label"].startswith("source") else "frozen",
             "backend": d["backend"], "runs": d["runs"], "ready_s": d["ready_s"]["median"],
             "rss_mib": d["rss_mb"]["median"], "tree_rss_mib": d["tree_rss_mb"]["median"]}
            for d in data if d["backend"] in ("local", "akeyless")]
    return {"about": "Start to ready (socket accepts) and idle RSS, median of runs, measured "
                     "by bench/startup.py; `frozen` is dist/kms-appliance.", "rows": rows}


def _startup_targets(sc: Sc) -> list[Row]:
    t = []
    for r in sc.get("rows", []):
        if r["binary"] != "frozen":
            continue
        t.append(target(f"frozen binary ready ({r['backend']} backend)", "<= 0.5 s", r["ready_s"],
                        r["ready_s"] <= 0.5))
        if r["backend"] == "akeyless":
            t.append(target("frozen binary idle RSS (akeyless backend)", "<= 60 MB", r["rss_mib"],
                            r["rss_mib"] <= 60))
    return t or [target("frozen binary ready", "<= 0.5 s", "not available", None, sc.get("about", "")[:120])]


def _scaling_targets(rows: list[dict[str, Any]]) -> list[Row]:
    if len(rows) < 2:
        return []
    first, last = rows[0], rows[-1]
    ratio = round(last["p50_us"] / first["p50_us"], 2) if first["p50_us"] else None
    growth = round(last["rss_mib"] - first["rss_mib"], 1)
    steps = f"from {first['deks']} to {last['deks']:,} DEKs (local)"
    return [target(f"decrypt p50 flat {steps}", "<= 1.5x", ratio, ratio is not None and ratio <= 1.5),
            target(f"RSS growth {steps}", "bounded (<= 50 MiB)", growth, growth <= 50)]


def _guard(name: str, fn: Callable[[], Any], default: Any) -> Any:
    """Run one scenario; a failure is reported in its section, not fatal to the run."""
    try:
        return fn()
    except akeyless.Unavailable as exc:
        return default(f"not available: {exc}")
    except Exception as exc:  # a broken scenario must not lose the others
        _say(f"{name} FAILED: {type(exc).__name__}: {exc}")
        return default(f"failed: {type(exc).__name__}: {str(exc)[:300]}")


def envelope_skipped(why: str) -> tuple[dict[str, Any], list[Any]]:
    """The envelope section of a run where that scenario could not run: why, and no targets."""
    return {"akeyless_envelope": {"about": why}}, []


def run_all(p: Any, bins: dict[str, Path]) -> dict[str, Any]:
    out: dict[str, Any] = _guard("local backend", lambda: local_backend(p),
                                 lambda why: {"local": {"about": why}})
    ak, ak_targets = _guard("akeyless", lambda: akeyless_backend(p),
                            lambda why: ({"akeyless": {"about": why}}, []))
    out.update(ak)
    env, env_targets = _guard("akeyless envelope", lambda: akeyless_envelope(p), envelope_skipped)
    out.update(env)
    ak_targets = ak_targets + env_targets
    out["startup"] = _guard("startup", lambda: startup(p.startup_runs), lambda why: {"about": why})
    scaling = out.get("dek_scaling", {}).get("rows", [])
    out["targets"] = (_scaling_targets(scaling) + ak_targets + _startup_targets(out["startup"]))
    if p.ablation:
        _say("ablation (plugin variants vs bare) and GIL profile")
        out["ablation"] = _guard("ablation", lambda: ablation.run(p.paired_window, p.paired_reps),
                                 lambda why: {"about": why})
    return out
