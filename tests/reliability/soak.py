"""The soak: mixed KMS calls over the real socket, with rotations and faults, for a long time.

Emulator, plugin (Akeyless backend, decrypt cache of 2,048 DEKs: below the working set, so it
evicts from the first pass on) and this driver, whose threads call as kube-apiserver does
(mostly Decrypt of stored DEKs, Status polls, some Encrypts, KMS v1 too) while the key rotates,
tokens expire and one-shot faults are injected (503 and reset are retried inside the call
budget; 429 surfaces as RESOURCE_EXHAUSTED, at most once per injection). Every answer is
checked; RSS and descriptors are sampled after warm-up (10 % of the calls) and at the end.

    python -m tests.reliability.soak --calls 1000000     # what `make soak` runs
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from tests.support import plugin as pm
from tests.support import procinfo
from tests.support.emulator import start_emulator
from tests.support.kmsclient import Client

WORKING_SET = 2_000
MIX = (("v2.Decrypt", 58), ("v2.Status", 15), ("v2.Encrypt", 6), ("v1.Decrypt", 12),
       ("v1.Encrypt", 2), ("v1.Version", 7))
CACHE_SIZE = 2_048  # below the working set: steady-state eviction from the first pass on
# (name, emulator control action, its body; None: the key's name)
EVENTS: tuple[tuple[str, str, dict[str, object] | None], ...] = (
    ("rotate", "rotate-key", None),
    ("503", "fault", {"endpoint": "encrypt", "status": 503, "times": 1}),
    ("429", "fault", {"endpoint": "encrypt", "status": 429, "times": 1}),
    ("reset", "fault", {"endpoint": "decrypt", "kind": "reset", "times": 1}),
    ("expire", "expire-tokens", {}),
    ("503-decrypt", "fault", {"endpoint": "decrypt", "status": 503, "times": 1}),
)


class Soak:
    def __init__(self, calls: int, threads: int, workdir: Path) -> None:
        self.total = calls
        self.threads = threads
        self.work = workdir
        self.done = 0
        self.lock = threading.Lock()  # guards done and the tallies below
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.wrong = 0
        self.allowed_429 = 0
        self.v2_set: list[tuple[bytes, bytes, str]] = []
        self.v1_set: list[tuple[bytes, bytes]] = []
        self.samples: dict[str, dict[str, int]] = {}
        self.events: Counter[str] = Counter()
        self.event_every = max(1_000, calls // 30)
        self.key_ids: set[str] = set()

    # -- setup -----------------------------------------------------------------------
    def start(self) -> None:
        self.emu = start_emulator(self.work, "emulator")
        settings = {"KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL": "1s", "KMS_APPLIANCE_CACHE_SIZE": str(CACHE_SIZE),
                    "KMS_APPLIANCE_OBSERVABILITY_HEALTH_INTERVAL": "5s"}
        self.plugin = pm.start(self.work / "plugin", ["--log-level", "info"], settings, emulator=self.emu)
        self.client = Client(self.plugin.socket, timeout=10)
        for _ in range(WORKING_SET):
            seed = os.urandom(32)
            enc = self.client.encrypt(seed)
            self.v2_set.append((seed, bytes(enc.ciphertext), enc.key_id))
        for _ in range(WORKING_SET // 4):
            dek = os.urandom(32)
            self.v1_set.append((dek, self.client.v1_encrypt(dek)))
        for seed, ct, key_id in self.v2_set:  # fill the cache: warm-up starts at steady state
            assert self.client.decrypt(ct, key_id) == seed

    def stop(self) -> None:
        self.client.close()
        self.plugin.stop()
        self.emu.stop()

    # -- the calls ---------------------------------------------------------------------
    def one(self, rng: random.Random, what: str) -> None:
        c = self.client
        if what == "v2.Decrypt":
            seed, ct, key_id = rng.choice(self.v2_set)
            ok = c.decrypt(ct, key_id) == seed
        elif what == "v2.Status":
            st = c.status()
            ok = st.healthz == "ok" and st.version == "v2" and bool(st.key_id)
        elif what == "v2.Encrypt":
            seed = os.urandom(32)
            enc = c.encrypt(seed)
            ok = bool(enc.ciphertext) and enc.key_id.startswith("akeyless:")
            self.key_ids.add(enc.key_id)
            self.v2_set[rng.randrange(WORKING_SET)] = (seed, bytes(enc.ciphertext), enc.key_id)
        elif what == "v1.Decrypt":
            dek, cipher = rng.choice(self.v1_set)
            ok = c.v1_decrypt(cipher) == dek
        elif what == "v1.Encrypt":
            dek = os.urandom(32)
            cipher = c.v1_encrypt(dek)
            self.v1_set[rng.randrange(len(self.v1_set))] = (dek, cipher)
            ok = bool(cipher)
        else:
            ok = c.version().version == "v1beta1"
        if not ok:
            with self.lock:
                self.wrong += 1

    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        names = [n for n, _ in MIX]
        weights = [w for _, w in MIX]
        while True:
            with self.lock:
                if self.done >= self.total:
                    return
                self.done += 1
                n = self.done
            if n % self.event_every == 0:
                try:
                    self.event(n)
                except (OSError, http.client.HTTPException):
                    self.events["control-plane failures"] += 1  # reported, never fatal to the soak
            if n == self.total // 10:
                self.sample("warm")
            what = rng.choices(names, weights)[0]
            try:
                self.one(rng, what)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            with self.lock:
                self.calls[what] += 1
                if code != "OK":
                    self.errors[f"{what} {code}"] += 1

    def event(self, n: int) -> None:
        """Rotations and faults along the way, in a fixed cycle (EVENTS)."""
        kind, action, body = EVENTS[(n // self.event_every) % len(EVENTS)]
        self.events[kind] += 1
        if kind == "429":
            with self.lock:
                self.allowed_429 += 1
        self.emu.control(action, {"name": self.emu.key} if body is None else body, attempts=3)

    def sample(self, name: str) -> None:
        pid = self.plugin.proc.pid
        self.samples[name] = {"rss_kib": procinfo.rss_kib(pid), "fds": procinfo.fds(pid),
                              "threads": procinfo.threads(pid)}

    def run(self) -> dict[str, Any]:
        start = time.monotonic()
        workers = [threading.Thread(target=self.worker, args=(i,)) for i in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - start
        time.sleep(1.0)
        self.sample("end")
        warm, end = self.samples["warm"], self.samples["end"]
        unexpected = {k: v for k, v in self.errors.items()
                      if not k.endswith("Encrypt RESOURCE_EXHAUSTED")}
        throttled = sum(v for k, v in self.errors.items() if k.endswith("RESOURCE_EXHAUSTED"))
        return {
            "calls": sum(self.calls.values()), "seconds": round(elapsed, 1),
            "calls_per_second": round(sum(self.calls.values()) / elapsed),
            "mix": dict(self.calls), "events": dict(self.events),
            "encrypt_key_ids_seen": len(self.key_ids), "wrong_answers": self.wrong, "unexpected_errors": unexpected,
            "throttled_429_surfaced": throttled, "429_injected": self.allowed_429,
            "rss_warm_kib": warm["rss_kib"], "rss_end_kib": end["rss_kib"],
            "rss_growth_pct": round(100.0 * (end["rss_kib"] - warm["rss_kib"]) / warm["rss_kib"], 2),
            "fds_warm": warm["fds"], "fds_end": end["fds"],
            "threads_warm": warm["threads"], "threads_end": end["threads"],
            "plugin_alive": self.plugin.proc.poll() is None,
        }


def verdict(r: dict[str, Any]) -> list[str]:
    """What makes a soak fail (empty list: passed)."""
    problems = []
    if r["wrong_answers"]:
        problems.append(f"{r['wrong_answers']} wrong answers")
    if r["unexpected_errors"]:
        problems.append(f"unexpected errors {r['unexpected_errors']}")
    if r["throttled_429_surfaced"] > r["429_injected"]:
        problems.append("more RESOURCE_EXHAUSTED than 429s injected")
    if r["rss_growth_pct"] > 5.0:
        problems.append(f"RSS grew {r['rss_growth_pct']}% after warm-up (limit 5%)")
    if r["fds_end"] > r["fds_warm"] + 2:
        problems.append(f"descriptors grew {r['fds_warm']} -> {r['fds_end']}")
    if not r["plugin_alive"]:
        problems.append("the plugin died")
    return problems


def run(calls: int, threads: int, workdir: Path, keep: list[Soak] | None = None) -> dict[str, Any]:
    soak = Soak(calls, threads, workdir)
    if keep is not None:
        keep.append(soak)
    soak.start()
    try:
        return soak.run()
    finally:
        soak.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kms-soak-") as tmp:
        result = run(args.calls, args.threads, Path(tmp))
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    problems = verdict(result)
    for problem in problems:
        print(f"SOAK FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
