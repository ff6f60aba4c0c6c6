"""What the gate's process reports, and how the plugin reads it (the process itself is
exercised on the real plugin: tests/integration/test_gate_process.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from kms_appliance.gateproc import GateProcess, _Tally
from kms_appliance.peercred import Peer
from kms_appliance.refusals import MAX_KEYS, OTHER_UIDS
from kms_appliance.threads import Supervisor


def test_tally_sums_per_key_keeps_the_last_peer_and_empties_on_drain() -> None:
    tally = _Tally()
    assert tally.drain() == b"", "nothing to say: no message"
    for pid in (1, 2, 3):
        tally.refused(Peer(pid, 65534, 65534), "uid_not_allowed")
    tally.refused(Peer(4, 1000, 1000), "connection_limit")
    tally.count(5)
    report = tally.drain()
    assert tally.drain() == b""
    got: list[tuple[Peer, str, int]] = []
    counts: list[int] = []
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gate = GateProcess(socket.socket(socket.AF_UNIX), Path("/nonexistent"), frozenset(), 1,
                       lambda peer, reason, n: got.append((peer, reason, n)), counts.append,
                       Supervisor())
    theirs.send(report)
    theirs.send(b'{"open": 4}')
    theirs.close()
    gate._read_reports(ours)  # returns at the child's end (EOF)
    assert sorted(got, key=lambda g: g[1]) == [(Peer(4, 1000, 1000), "connection_limit", 1),
                                               (Peer(3, 65534, 65534), "uid_not_allowed", 3)]
    assert counts == [5, 4]


def test_a_failing_sink_does_not_end_the_reading() -> None:
    def refuse(peer: Peer, reason: str, n: int) -> None:
        raise RuntimeError("sink broken")

    counts: list[int] = []
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gate = GateProcess(socket.socket(socket.AF_UNIX), Path("/nonexistent"), frozenset(), 1,
                       refuse, counts.append, Supervisor())
    theirs.send(b'{"refused": [["uid_not_allowed", 1, 2, 3, 4]], "open": 1}')
    theirs.send(b'{"open": 0}')
    theirs.close()
    gate._read_reports(ours)
    assert counts == [1, 0]


def test_tally_keys_are_bounded_so_a_report_fits_one_message() -> None:
    tally = _Tally()
    for uid in range(10_000):
        tally.refused(Peer(uid, uid, uid), "uid_not_allowed")
    report = json.loads(tally.drain())
    assert len(report["refused"]) == MAX_KEYS + 1
    assert {r[1] for r in report["refused"]} >= {OTHER_UIDS}
    assert sum(r[4] for r in report["refused"]) == 10_000
