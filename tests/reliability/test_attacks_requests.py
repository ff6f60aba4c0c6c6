"""Requests an allowed peer may send (the gate lets it in, so it can send anything): malformed
protobuf must cost a counted, rate-limited log line, not a traceback per call; forged Akeyless
ciphertexts about one remote call each."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import grpc

from akeyless_emulator import Emulator
from tests.reliability.probes import metric
from tests.support import attacks, figures, ledger
from tests.support import plugin as pm
from tests.support.emulator import KEY, identity_env
from tests.support.forgery import claimed_key_id, relabel, tamper
from tests.support.kmsclient import Client
from tests.support.procs import eventually

MALFORMED = 1_000
LINES_ALLOWED = 3
LOG_EVERY = 10.0  # kms_appliance.kms.wire.LOG_EVERY (not imported: this file must run on old trees)
IN_FLIGHT = 8


def _metric_until(p: pm.Plugin, name: str, want: float) -> float:
    """The counter once it reaches ``want`` (call accounting is deferred to the audit flusher)."""
    eventually(lambda: metric(p, name) >= want, 10, 0.05)
    return metric(p, name)


class TestMalformedRequests:
    """1,000 undecodable requests: no traceback, a handful of lines, every one counted."""

    def test_malformed_flood_is_counted_not_logged(self, tmp_path: Path) -> None:
        with pm.running(tmp_path / "m") as p, Client(p.socket) as c:
            c.status()
            lines_before = len(p.stderr.read_text().splitlines())
            codes: Counter[str] = Counter()
            started = time.monotonic()
            for first in range(0, MALFORMED, IN_FLIGHT):  # within the per-connection stream bound
                codes.update(attacks.malformed(c.channel, first, min(IN_FLIGHT, MALFORMED - first), timeout=10))
            elapsed = time.monotonic() - started
            assert codes == {"INVALID_ARGUMENT": MALFORMED}

            seed = ledger.new_secret()
            enc = c.encrypt(seed)
            assert c.decrypt(enc.ciphertext, enc.key_id) == seed  # still serving

            counted = _metric_until(p, "kms_appliance_malformed_requests_total", MALFORMED)
            invalid = _metric_until(p, "kms_appliance_calls_total", MALFORMED + 2)
            err = p.stderr.read_text()
            new_lines = err.splitlines()[lines_before:]
            figures.put("request attacks", "1,000 malformed requests",
                        f"{len(new_lines)} log line(s), {counted:.0f} counted")
            assert "Traceback" not in err
            assert "deserializ" not in err.lower()
            # one line per LOG_EVERY seconds at most, however many requests (a slow CI run may span
            # more than one interval), plus a little room for unrelated lines
            assert len(new_lines) <= LINES_ALLOWED + elapsed / LOG_EVERY, new_lines
            assert counted == MALFORMED
            assert invalid == MALFORMED + 2  # each also an audited INVALID_ARGUMENT call


class TestRejectedCiphertexts:
    """Forged ciphertexts are INVALID_ARGUMENT at about one Akeyless call each."""

    N = 40

    def test_tampered_and_relabelled_cost_one_remote_call(self, emu: Emulator,
                                                          tmp_path: Path) -> None:
        emu.rotate_key(KEY)  # versions 1 and 2, both enabled
        # The health probe's round trip decrypts too (answered 200): the start-up one is waited
        # for below, and the periodic one is set far beyond the test.
        env = identity_env(emu, KMS_APPLIANCE_CACHE_ENABLED="false", KMS_APPLIANCE_OBSERVABILITY_HEALTH_INTERVAL="3600s")
        with pm.running(tmp_path / "r", ["--log-level", "debug"], env=env, akeyless=True) as p, \
                Client(p.socket) as c:
            assert emu.wait_for("decrypt", calls=1, timeout=10), "the start-up health probe never decrypted"
            seed = ledger.new_secret()
            enc = c.encrypt(seed)  # labelled version 2
            forged = [tamper(enc.ciphertext, i) for i in range(self.N // 2)]
            forged += [relabel(enc.ciphertext, v) for v in (1, 0, 3, 7, 2**32 - 1)]
            forged += [tamper(relabel(enc.ciphertext, 1), i) for i in range(self.N - len(forged))]
            before = {op: emu.calls[op] for op in ("decrypt", "describe-item")}
            seen = len(emu.requests)
            codes: dict[grpc.StatusCode, int] = {}
            for ct in forged:
                try:
                    c.decrypt(ct, claimed_key_id(ct, enc.key_id))
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                    ledger.text(exc.details() or "")
                codes[code] = codes.get(code, 0) + 1
            decrypts = emu.calls["decrypt"] - before["decrypt"]
            describes = emu.calls["describe-item"] - before["describe-item"]
            figures.put("request attacks", f"{self.N} forged Akeyless ciphertexts",
                        f"{decrypts} decrypt + {describes} describe-item calls")
            assert codes == {grpc.StatusCode.INVALID_ARGUMENT: self.N}
            # One answered decrypt per forgery; any other was the plugin's retry of one Akeyless
            # did not answer (a rejected token or a busy server), never a second try of a refusal.
            statuses = [r.status for r in emu.requests[seen:] if r.endpoint == "decrypt"]
            assert statuses.count(400) == self.N, statuses
            assert all(s in (401, 429) or s >= 500 for s in statuses if s != 400), statuses
            assert describes <= 3, "explanation lookups must be rate-limited, not one per refusal"
            assert c.decrypt(enc.ciphertext, enc.key_id) == seed

