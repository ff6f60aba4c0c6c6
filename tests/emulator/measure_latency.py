"""Measure the SDK's round-trip latency against the emulator (not a test): one JSON line of
p50/p90/max ms of `encrypt` calls per transport and server config (docs/emulator.md says why).

Run: PYTHONPATH=. .venv/bin/python tests/emulator/measure_latency.py [--calls 200]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time

import akeyless

from akeyless_emulator import Emulator
from akeyless_emulator.transport import RequestHandler
from tests.emulator.conftest import login

# (TCP_NODELAY, write buffer): as shipped, and two without what it sets, for comparison only
CONFIGS = {"shipped": (True, 1 << 16), "nodelay_only": (True, 0), "stock": (False, 0)}


def measure(tls: bool, config: str, calls: int) -> dict[str, object]:
    """p50/p90/max of `calls` encrypt round trips (after 10 warm-up calls)."""
    saved = RequestHandler.disable_nagle_algorithm, RequestHandler.wbufsize
    RequestHandler.disable_nagle_algorithm, RequestHandler.wbufsize = CONFIGS[config]
    with Emulator(tls=tls) as emu:
        emu.create_key("/k")
        client = login(emu)
        body = akeyless.Encrypt(key_name="/k", plaintext=base64.b64encode(bytes(32)).decode(), input_format="base64",
                                token=client.token)
        samples = []
        for i in range(calls + 10):
            started = time.perf_counter()
            client.api.encrypt(body, _request_timeout=(5, 5))
            if i >= 10:
                samples.append((time.perf_counter() - started) * 1000)
    RequestHandler.disable_nagle_algorithm, RequestHandler.wbufsize = saved
    q = statistics.quantiles(samples, n=10)
    return {"transport": "https" if tls else "http", "server": config, "calls": calls,
            "p50_ms": round(statistics.median(samples), 3), "p90_ms": round(q[8], 3),
            "max_ms": round(max(samples), 3)}


def main() -> None:
    """Measure every (transport, config) pair and print JSON lines."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    for tls in (False, True):
        for config in CONFIGS:
            print(json.dumps(measure(tls, config, args.calls)))


if __name__ == "__main__":
    main()
