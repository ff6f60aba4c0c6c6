"""Refusal reports: bounded in number, exact in count."""

from __future__ import annotations

from kms_appliance.peercred import Peer
from kms_appliance.refusals import OTHER_UIDS, RefusalThrottle, Report
from tests.unit.helpers import Clock


def _throttle(interval: float = 10.0, max_keys: int = 256) -> tuple[RefusalThrottle, list[Report], Clock]:
    out: list[Report] = []
    clock = Clock()
    return RefusalThrottle(out.append, interval, max_keys, clock), out, clock


def test_first_refusal_is_reported_at_once_then_summed_per_interval() -> None:
    t, out, clock = _throttle()
    for i in range(100_000):
        t.refused(Peer(100 + i % 7, 65534, 65534), "uid_not_allowed")
    assert out == [Report("uid_not_allowed", 65534, 100, 65534, 1, 0.0)]
    t.flush()
    assert len(out) == 1, "nothing more before the interval is over"
    clock.now += 10.0
    t.flush()
    assert len(out) == 2
    assert out[1].count == 99_999 and out[1].seconds == 10.0 and out[1].uid == 65534
    assert out[1].pid == 100 + 99_999 % 7, "the last peer's pid"
    assert sum(r.count for r in out) == 100_000


def test_keys_are_reason_and_uid() -> None:
    t, out, _ = _throttle()
    t.refused(Peer(1, 1000, 1000), "uid_not_allowed")
    t.refused(Peer(2, 1001, 1001), "uid_not_allowed")
    t.refused(Peer(3, 1000, 1000), "connection_limit")
    t.refused(Peer(4, 1000, 1000), "connection_limit")
    assert [(r.reason, r.uid, r.count) for r in out] == [
        ("uid_not_allowed", 1000, 1), ("uid_not_allowed", 1001, 1), ("connection_limit", 1000, 1)]
    t.flush(force=True)
    assert [(r.reason, r.uid, r.count) for r in out[3:]] == [("connection_limit", 1000, 1)]


def test_a_quiet_key_is_forgotten_and_reported_at_once_again() -> None:
    t, out, clock = _throttle()
    t.refused(Peer(1, 7, 7), "uid_not_allowed")
    clock.now += 10.0
    t.flush()  # nothing pending: the key is dropped
    assert t.pending() == 0
    clock.now += 1.0
    t.refused(Peer(2, 7, 7), "uid_not_allowed")
    assert [r.count for r in out] == [1, 1]


def test_keys_are_bounded() -> None:
    t, out, _ = _throttle(max_keys=4)
    for uid in range(1000):
        t.refused(Peer(uid, uid, uid), "uid_not_allowed")
    t.flush(force=True)
    assert len(out) <= 4 + 2
    assert {r.uid for r in out} <= {0, 1, 2, 3, OTHER_UIDS}
    assert sum(r.count for r in out) == 1000


def test_a_batch_from_the_gate_process_counts_whole_and_reports_its_first_at_once() -> None:
    """The gate's process sends refusals summed per key; the throttle keeps the same rules."""
    t, out, _ = _throttle()
    t.refused(Peer(9, 7, 7), "uid_not_allowed", 250)
    t.refused(Peer(10, 7, 7), "uid_not_allowed", 50)
    assert out == [Report("uid_not_allowed", 7, 9, 7, 1, 0.0)]
    assert t.pending() == 299
    t.flush(force=True)  # as at shutdown: everything pending, before its interval is over
    assert [r.count for r in out] == [1, 299] and out[1].pid == 10
    assert t.pending() == 0
