"""Overload: calls beyond server.max_concurrent_rpcs are refused fast, memory stays bounded.

The plugin (Akeyless backend, decrypt cache off) waits 1.5 s on every
Akeyless decrypt (an emulator latency fault), so calls pile up for real.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc

from akeyless_emulator import Emulator
from kms_appliance.kms import v2_pb2
from tests.support import figures, ledger, procinfo
from tests.support import plugin as pm
from tests.support.emulator import identity_env
from tests.support.kmsclient import Client

LIMIT = 4
DELAY = 1.5
FAST = 0.5


def _burst(c: Client, enc: Any, n: int) -> list[tuple[str, float, bytes]]:
    req = v2_pb2.DecryptRequest(ciphertext=enc.ciphertext, key_id=enc.key_id, uid="overload")
    start = time.monotonic()
    done: dict[int, float] = {}
    futures = []
    for i in range(n):
        f = c.v2.Decrypt.future(req, timeout=15)
        f.add_done_callback(lambda _f, i=i: done.setdefault(i, time.monotonic() - start))
        futures.append(f)
    out = []
    for i, f in enumerate(futures):
        try:
            plain = bytes(f.result().plaintext)
            code = "OK"
        except grpc.RpcError as exc:
            plain, code = b"", exc.code().name
            ledger.text(exc.details() or "")
            if code == "UNAVAILABLE" and "error code 7" in (exc.details() or ""):
                # HTTP/2 REFUSED_STREAM: the client had more streams open than the connection's
                # cap (its count drops before the server's): refused by the transport, not queued
                code = "REFUSED_STREAM"
        out.append((code, done.get(i, time.monotonic() - start), plain))
    return out


def test_beyond_the_limit_is_refused_fast_and_memory_stays_bounded(emu: Emulator, tmp_path: Path) -> None:
    """A burst of 10 x the limit, then 10 bursts of 300 (sustained overload)."""
    env = identity_env(emu, KMS_APPLIANCE_SERVER_MAX_CONCURRENT_RPCS=str(LIMIT),
                       KMS_APPLIANCE_SERVER_WORKERS=str(LIMIT), KMS_APPLIANCE_CACHE_ENABLED="false",
                       KMS_APPLIANCE_SERVER_CALL_TIMEOUT="5s", KMS_APPLIANCE_AKEYLESS_TIMEOUT="5s")
    with (pm.running(tmp_path / "o", ["--log-level", "debug"], env=env, akeyless=True) as p,
          Client(p.socket, timeout=15) as c):
        seed = ledger.new_secret()
        enc = c.encrypt(seed)
        emu.fault("decrypt", kind="latency", delay=DELAY)
        results = _burst(c, enc, 10 * LIMIT)
        codes = [r[0] for r in results]
        ok = [r for r in results if r[0] == "OK"]
        refused = [r for r in results if r[0] == "RESOURCE_EXHAUSTED"]
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert 1 <= len(ok) <= LIMIT, f"{len(ok)} calls ran; the limit is {LIMIT}"
        assert len(refused) >= 9 * LIMIT
        assert all(plain == seed for _, _, plain in ok), "WRONG plaintext under overload"
        assert max(t for _, t, _ in ok) >= DELAY * 0.9
        # refusals come back long before the admitted calls finish: refused, not queued
        refused_times = sorted(t for _, t, _ in refused)
        figures.put("overload", f"burst of {10 * LIMIT} against limit {LIMIT}",
                    f"ok={len(ok)} RESOURCE_EXHAUSTED={len(refused)} slowest refusal="
                    f"{refused_times[-1] * 1000:.0f}ms admitted took {max(t for _, t, _ in ok):.2f}s")
        assert refused_times[-1] < FAST, f"refusals took up to {refused_times[-1]:.2f}s"
        assert p.proc.poll() is None
        time.sleep(DELAY + 0.5)
        assert c.decrypt(enc.ciphertext, enc.key_id) == seed  # serves again once the burst drained
        # sustained overload: memory stays bounded
        pid = p.proc.pid
        _burst(c, enc, 200)
        time.sleep(DELAY)
        before = procinfo.rss_kib(pid)
        sustained_refused = 0
        for _ in range(10):
            sustained_refused += sum(1 for code, _, _ in _burst(c, enc, 300)
                                     if code in ("RESOURCE_EXHAUSTED", "REFUSED_STREAM"))
        time.sleep(DELAY)
        after = procinfo.rss_kib(pid)
        growth = after - before
        figures.put("overload", "sustained: 10 bursts of 300",
                    f"refused={sustained_refused} rss {before} -> {after} KiB (+{growth} KiB) "
                    f"threads={procinfo.threads(pid)} fds={procinfo.fds(pid)}")
        assert sustained_refused >= 10 * (300 - LIMIT) * 0.95
        assert growth < 20 * 1024, f"RSS grew {growth} KiB under overload"
        assert procinfo.threads(pid) < 40
