"""What labelling each direct-mode encrypt with the version Akeyless used costs.

    .venv/bin/python -m bench.akeyless_exact_version [--latency-ms 0 20] [--n 100]
                                                      [--threads 8] [--per-thread 25]

The set-up and the figures: docs/akeyless.md, "Keys, versions, key_id". The
emulator runs in its own process ("Akeyless N ms away"), the direct-mode
backend in this one, built from the environment as production builds it.
``before`` is one /encrypt labelled from the held key state
(``_encrypt_remote``); ``after`` is ``wrap()``: that /encrypt plus the
/describe-item confirming the version. Short by design: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.suite import servers
from bench.suite.akeyless import Emulator, start_emulator
from kms_appliance import config
from kms_appliance.backends import akeyless, envelope
from kms_appliance.backends.akeyless.backend import _VERSION, AkeylessBackend
from kms_appliance.metrics import Metrics

DEK = bytes(32)
ENDPOINTS = ("encrypt", "decrypt", "describe-item")
WARM = 20


def _backend(emu: Emulator) -> AkeylessBackend:
    env = emu.plugin_env(KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL="60s")  # no refresh during a run
    cfg = config.load(env=env, config_file=None)
    backend = akeyless.create(cfg, Metrics(), env=env)
    assert isinstance(backend, AkeylessBackend)
    return backend


def _before(backend: AkeylessBackend) -> Callable[[], object]:
    head = envelope.header(envelope.BACKEND_AKEYLESS) + _VERSION.pack(backend.state.last_version, len(DEK))
    return lambda: backend._encrypt_remote(head, DEK, time.monotonic() + 3.0)


def _calls(emu: Emulator) -> Counter[str]:
    return Counter(emu.control("calls", {})["calls"])


def _run(emu: Emulator, fn: Callable[[], object], threads: int, each: int) -> dict[str, Any]:
    def worker() -> list[float]:
        mine = []
        for _ in range(each):
            start = time.perf_counter()
            fn()
            mine.append(time.perf_counter() - start)
        return mine

    before = _calls(emu)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        workers = [pool.submit(worker) for _ in range(threads)]
    wall = time.perf_counter() - start
    seconds = [s for w in workers for s in w.result()]
    calls = _calls(emu)
    calls.subtract(before)
    wraps = threads * each
    ms = sorted(s * 1000 for s in seconds)
    return {"threads": threads, "wraps": wraps, "wall_s": round(wall, 3),
            "calls_per_wrap": {op: round(calls[op] / wraps, 3) for op in ENDPOINTS if calls[op]},
            "p50_ms": round(statistics.median(ms), 2),
            "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2),
            "wraps_per_s": round(wraps / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    ap.add_argument("--n", type=int, default=100, help="sequential wraps per variant")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--per-thread", type=int, default=25)
    args = ap.parse_args()
    out: dict[str, Any] = {}
    emu = start_emulator()
    try:
        backend = _backend(emu)
        try:
            variants = {"before": _before(backend), "after": lambda: backend.wrap(DEK)}
            for latency in args.latency_ms:
                emu.latency(latency / 1000)
                for name, fn in variants.items():
                    for _ in range(WARM):  # connection pool, token, the SDK's lazy models
                        fn()
                    out[f"{latency:g}ms/{name}/sequential"] = _run(emu, fn, 1, args.n)
                    out[f"{latency:g}ms/{name}/concurrent"] = _run(emu, fn, args.threads, args.per_thread)
        finally:
            backend.close()
    finally:
        emu.stop()
        servers.remove_homes()  # the emulator's home (its CA and state)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
