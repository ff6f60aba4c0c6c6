"""Shared pieces of the fuzz targets: budgets, tallies, the no-echo check.

The handler campaigns run in process on the real servicers (only ``grpc.ServicerContext`` is a
stand-in, tests/support/fakes.py): the only way to run 100,000 inputs per target in CI time.
tests/fuzz/test_fuzz_socket.py covers what the stand-in cannot over the real socket.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from tests.support import figures, secrets_scan

# Inputs per target: 100,000 in CI (the floor); `make fuzz-nightly` sets 1,000,000.
EXAMPLES = int(os.environ.get("KMS_APPLIANCE_FUZZ_EXAMPLES", "100000"))
SLOW_CALL = 5.0  # seconds; any single input slower than this is a hang (shared 2-core CI)


class Tally:
    """Inputs run, codes seen, slowest input: the figures each target reports."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.runs = 0
        self.codes: dict[str, int] = {}
        self.slowest = 0.0

    def timed(self, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            took = time.perf_counter() - start
            self.slowest = max(self.slowest, took)
            assert took < SLOW_CALL, f"{self.target}: one input took {took:.2f}s (hang?)"

    def count(self, code: str) -> None:
        self.runs += 1
        self.codes[code] = self.codes.get(code, 0) + 1

    def report(self, floor: int) -> None:
        figures.put("fuzz", self.target, f"inputs={self.runs} codes={dict(sorted(self.codes.items()))} "
                                         f"slowest={self.slowest * 1000:.1f}ms")
        assert self.runs >= floor, f"{self.target}: only {self.runs} inputs ran, floor {floor}"


def no_leak(text: str | bytes, *secrets: bytes, public: tuple[str, ...] = ()) -> None:
    """An error detail or audit field must not carry any form of the given inputs: those that look
    like a secret (8+ bytes, 8+ distinct values, as every real DEK has) and do not also occur in
    ``public``, the uid and key_id the audit logs on purpose (a fuzzer makes the plaintext the uid)."""
    hay = text.encode() if isinstance(text, str) else text
    pub = "\n".join(f"{p}\n{p!r}" for p in public).encode()
    candidates = [s for s in secrets if len(s) >= 8 and len(set(s)) >= 8
                  and not secrets_scan.find(pub, [s])]
    hits = secrets_scan.find(hay, candidates)
    assert hits == [], f"input echoed in output: {hits}"
