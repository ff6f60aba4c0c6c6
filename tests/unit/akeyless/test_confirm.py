"""FreshDescriber: a describe that started after the caller asked, shared by concurrent callers."""

from __future__ import annotations

import threading

import pytest

from kms_appliance.backends.akeyless.confirm import FreshDescriber
from kms_appliance.backends.akeyless.keystate import KeyState
from kms_appliance.errors import BackendUnavailable, Throttled
from tests.support.procs import eventually


def state(version: int) -> KeyState:
    return KeyState(name="/k", item_id=7, item_type="AES256GCM", last_version=version, enabled=True)


class Remote:
    """A describe whose calls block until released, numbering its answers 1, 2, 3..."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.fail_with: Exception | None = None

    def __call__(self, deadline: float) -> KeyState:
        self.calls += 1
        number = self.calls
        self.entered.release()
        assert self.release.acquire(timeout=10)
        if self.fail_with is not None:
            raise self.fail_with
        return state(number)


TIMEOUT = 10.0


def spawn(fresh: FreshDescriber, out: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            out.append(fresh.after_now(TIMEOUT).last_version)
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t


def late_callers(remote: Remote, n: int) -> tuple[FreshDescriber, list[object], list[threading.Thread], list[object]]:
    """A first caller's describe 1 answered while ``n`` more callers waited for it; describe 2
    (theirs) has started. Returns the describer, the first caller's answers, the waiting threads
    and their answers."""
    fresh = FreshDescriber(remote)
    first: list[object] = []
    t1 = spawn(fresh, first)
    assert remote.entered.acquire(timeout=10)  # describe 1 running
    late: list[object] = []
    waiters = [spawn(fresh, late) for _ in range(n)]  # arrive while describe 1 runs
    assert eventually(lambda: len(fresh._cond._waiters) >= n, 10, 0.001)  # all n block on the condition
    remote.release.release()  # describe 1 answers: only the first caller may use it
    t1.join(10)
    assert remote.entered.acquire(timeout=10)  # one describe 2 for all of them
    return fresh, first, waiters, late


def test_a_caller_never_gets_a_describe_that_started_before_it_asked() -> None:
    remote = Remote()
    _, first, waiters, late = late_callers(remote, 5)
    assert first == [1]
    remote.release.release()
    for t in waiters:
        t.join(10)
    assert late == [2] * 5
    assert remote.calls == 2


def test_an_error_reaches_every_caller_sharing_the_describe() -> None:
    remote = Remote()
    fresh, first, waiters, late = late_callers(remote, 3)
    remote.fail_with = Throttled("Akeyless describe-item: throttled")
    remote.release.release()
    for t in waiters:
        t.join(10)
    assert first == [1]
    assert len(late) == 3 and all(isinstance(e, Throttled) for e in late)
    assert len({id(e) for e in late}) == 3  # one instance per caller
    remote.fail_with = None
    remote.release.release()  # the next caller describes again: failures are not kept
    assert fresh.after_now(TIMEOUT).last_version == 3


def test_an_unexpected_exception_does_not_wedge_the_next_caller() -> None:
    calls = iter([RuntimeError("bug"), state(5)])

    def describe(deadline: float) -> KeyState:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    fresh = FreshDescriber(describe)
    with pytest.raises(RuntimeError):
        fresh.after_now(TIMEOUT)
    assert fresh.after_now(TIMEOUT).last_version == 5


def test_a_waiter_past_its_deadline_is_unavailable() -> None:
    remote = Remote()
    fresh = FreshDescriber(remote)
    t1 = spawn(fresh, [])
    assert remote.entered.acquire(timeout=10)
    with pytest.raises(BackendUnavailable, match="deadline"):
        fresh.after_now(0.025)  # waits at most two describes' worth: 50 ms
    remote.release.release()
    t1.join(10)
