"""Attacks on the gRPC endpoint itself: slow callers, header floods, slot hoarding.

Each runs against the real plugin while a well-behaved client (kube-apiserver's part) calls
Status with a 1 s deadline: that deadline is the requirement, not a benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.probes import status_ok
from tests.support import attacks, figures, h2raw, ledger, procinfo
from tests.support import plugin as pm
from tests.support.kmsclient import Client
from tests.support.procs import eventually, wait_until

STATUS_DEADLINE = 1.0  # Status answered within 1 s under these attacks
POD_LIMIT_KIB = 384 * 1024  # the static pod's memory limit
WORKERS = 32  # server.workers' default
READ_TIMEOUT = 2.0
# The flood sends 16 new streams per connection every FLOOD_PAUSE s (~500 streams/s from 32
# connections): an attack on memory, not a test of how much CPU this machine has left.
FLOOD_PAUSE = 1.0


def _status_ok(c: Client) -> float:
    start = time.monotonic()
    assert c.status().healthz == "ok"
    return time.monotonic() - start


def _round_trip(c: Client) -> None:
    seed = ledger.new_secret()
    enc = c.encrypt(seed)
    assert c.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) == seed


def _socket_inodes(pid: int) -> set[str]:
    return {target for target in procinfo.fd_targets(pid) if target.startswith("socket:")}


@pytest.mark.parametrize(("shape", "conns", "calls"), [
    ("headers-only", 1, 40), ("partial-message", 1, 40), ("spread", 4, 12),
], ids=["headers-only", "partial-message", "spread-over-4-connections"])
def test_slow_callers_hold_no_worker(tmp_path: Path, shape: str, conns: int, calls: int) -> None:
    """More unfinished calls than workers (default 32): Status and v2 Encrypt/Decrypt still answer
    within 1 s, and each slow call is ended by the server after the request read timeout."""
    env = {"KMS_APPLIANCE_SERVER_REQUEST_READ_TIMEOUT": f"{READ_TIMEOUT}s"}
    with pm.running(tmp_path / "slow", env=env) as p, Client(p.socket, timeout=STATUS_DEADLINE) as c:
        _status_ok(c)
        raw = [h2raw.RawH2(p.socket) for _ in range(conns)]
        opened: list[set[int]] = [set() for _ in raw]
        partial = attacks.PARTIAL if shape == "partial-message" else None
        for conn, sids in zip(raw, opened, strict=True):
            for _ in range(calls):
                sids.add(conn.open_call(attacks.ENCRYPT, partial))
        time.sleep(0.5)  # let the server take every slow call before the real client comes
        worst = max(_status_ok(c) for _ in range(5))
        _round_trip(c)
        assert p.proc.poll() is None
        # The slow calls do not hang forever: the server ends each one itself.
        for conn, sids in zip(raw, opened, strict=True):
            ended = conn.ended(sids, READ_TIMEOUT + 5)
            assert ended == sids, f"{len(sids - ended)} slow calls still open after the read timeout"
            conn.close()
        _status_ok(c)
    figures.put("grpc attacks", f"slow callers ({shape})",
                f"{conns * calls} unfinished calls, {WORKERS} workers: Status worst {worst * 1000:.0f} ms, "
                f"all ended by the server after the {READ_TIMEOUT:g}s read timeout")


@pytest.mark.parametrize("fields", [30, 60], ids=["3KiB-metadata", "6KiB-metadata"])
def test_header_flood_is_bounded(tmp_path: Path, fields: int) -> None:
    """32 connections keep opening streams with large header blocks (HEADERS + CONTINUATION) for
    4 s: RSS stays under the pod limit, Status answers within 1 s."""
    with pm.running(tmp_path / "flood") as p, Client(p.socket, timeout=STATUS_DEADLINE) as c:
        _status_ok(c)
        flood = subprocess.Popen([sys.executable, "-m", "tests.support.h2raw", str(p.socket), "32", "4",
                                  str(fields), str(FLOOD_PAUSE)], cwd=pm.REPO, stdout=subprocess.PIPE)
        peak, worst, polls = 0, 0.0, 0
        try:
            while flood.poll() is None:
                peak = max(peak, procinfo.rss_kib(p.proc.pid))
                worst = max(worst, _status_ok(c))
                polls += 1
                time.sleep(0.2)
            out, _ = flood.communicate(timeout=10)
        finally:
            if flood.poll() is None:
                flood.kill()
                flood.wait()
        sent = int(out.strip() or 0)
        assert sent > 1000, "the flood did not run"
        peak = max(peak, procinfo.rss_kib(p.proc.pid))
        assert peak < POD_LIMIT_KIB, f"RSS {peak // 1024} MiB under a header flood"
        worst = max(worst, _status_ok(c))
        _round_trip(c)
    figures.put("grpc attacks", f"header flood ({fields} x 100 B fields)",
                f"{sent} header blocks from 32 connections in 4 s: peak RSS {peak // 1024} MiB, "
                f"Status worst {worst * 1000:.0f} ms over {polls} polls")


def test_busy_connections_are_recycled_and_a_newcomer_gets_a_slot(tmp_path: Path) -> None:
    """max_connections=4, all held by clients calling every 0.2 s: each connection is recycled
    after max_connection_age (their calls keep succeeding: grpc reconnects on GOAWAY), and a
    fifth client is served within a few ages."""
    limit, age = 4, 1.0
    env = {"KMS_APPLIANCE_SERVER_MAX_CONNECTIONS": str(limit),
           "KMS_APPLIANCE_SERVER_MAX_CONNECTION_AGE": f"{age:g}s"}
    with pm.running(tmp_path / "slots", env=env) as p:
        pid = p.proc.pid
        listening = _socket_inodes(pid)
        with attacks.SlotHolders(p.socket, limit, every=0.2, deadline=STATUS_DEADLINE) as holders:
            # the first round of calls (one per connection, in turn) all answered: every holder has a connection
            assert eventually(lambda: holders.counts["calls_ok"] >= limit, 5, 0.05), holders.volumes()
            first = _socket_inodes(pid) - listening
            time.sleep(3 * age)  # several ages of constant use
            later = _socket_inodes(pid) - listening
            assert first and not first & later, "busy connections were not recycled"
            assert holders.volumes().keys() == {"calls_ok"}, holders.volumes()
            # A newcomer gets a slot once one of the hoarded connections is recycled.
            waited = wait_until(lambda: status_ok(p.socket, STATUS_DEADLINE), 10 * age, "a slot for a newcomer",
                                interval_s=0.05)
    figures.put("grpc attacks", "slot hoarding",
                f"{limit} slots held by clients calling every 0.2 s: recycled every ~{age:g}s with no "
                f"failed call, newcomer served after {waited:.1f}s")
