"""The supervisor: a long-lived thread is restarted or reported, never lost silently."""

from __future__ import annotations

import threading

import pytest

from kms_appliance import threads
from kms_appliance.backends.akeyless.auth import THREAD, Authenticator
from kms_appliance.config import AkeylessSettings
from kms_appliance.metrics import Metrics
from kms_appliance.threads import Supervisor
from tests.support.procs import eventually
from tests.unit.helpers import sample

WAIT = 10.0


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "BACKOFF", 0.0)


def test_a_thread_that_raises_is_restarted_and_counted() -> None:
    metrics = Metrics()
    sup = Supervisor(metrics.thread_restarts)
    runs: list[int] = []
    settled = threading.Event()

    def target() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ValueError("secret-free failure")
        settled.wait(WAIT)  # the third run lives on

    sup.start("worker", target)
    assert eventually(lambda: len(runs) == 3)
    assert sample(metrics, "kms_appliance_thread_restarts_total", thread="worker") == 2
    assert sup.problem() is None
    assert sup.alive("worker")
    sup.stopping.set()
    settled.set()
    assert eventually(lambda: not sup.alive("worker"))
    assert sup.problem() is None


def test_a_thread_that_keeps_dying_is_declared_dead(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    sup = Supervisor(metrics.thread_restarts)
    runs: list[int] = []

    def target() -> None:
        runs.append(1)
        raise OSError(24, "token=hunter2 must not be logged")

    sup.start("doomed", target)
    assert eventually(lambda: sup.problem() is not None)
    assert eventually(lambda: not sup.alive("doomed"))
    assert len(runs) == threads.MAX_RESTARTS + 1
    assert sample(metrics, "kms_appliance_thread_restarts_total", thread="doomed") == threads.MAX_RESTARTS
    problem = sup.problem()
    assert problem is not None and "doomed" in problem and "OSError" in problem
    assert "hunter2" not in caplog.text and "hunter2" not in problem


def test_a_thread_that_returns_while_running_is_a_death_unless_restarted() -> None:
    sup = Supervisor()
    sup.start("once", lambda: None, restart=False)
    assert eventually(lambda: sup.problem() is not None)
    assert "once returned" in (sup.problem() or "")


def test_returning_while_stopping_is_a_normal_end() -> None:
    metrics = Metrics()
    sup = Supervisor(metrics.thread_restarts)
    go = threading.Event()

    def target() -> None:
        go.wait(WAIT)

    def raiser() -> None:
        go.wait(WAIT)
        raise ZeroDivisionError

    sup.start("loop", target, restart=False)
    sup.start("raiser", raiser)
    sup.stopping.set()
    go.set()
    assert eventually(lambda: not sup.alive("loop") and not sup.alive("raiser"))
    assert sup.problem() is None
    assert sample(metrics, "kms_appliance_thread_restarts_total", thread="raiser") == 0


def test_a_retired_thread_ends_normally_while_the_rest_run() -> None:
    sup = Supervisor()
    go = threading.Event()

    def component() -> None:
        go.wait(WAIT)

    sup.start("component", component)
    sup.retire("component")
    go.set()
    assert eventually(lambda: not sup.alive("component"))
    assert sup.problem() is None
    assert not sup.stopping.is_set()


def test_the_akeyless_auth_thread_is_supervised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token renewal dying on an unexpected error would end in an outage at token expiry."""
    metrics = Metrics()
    sup = Supervisor(metrics.thread_restarts)
    auth = Authenticator(AkeylessSettings(), None, metrics, "access_key", 1.0)  # type: ignore[arg-type]
    calls: list[int] = []

    def maintain() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("an SDK surprise")

    monkeypatch.setattr(auth, "_sleep_time", lambda failures: 0.01)
    monkeypatch.setattr(auth, "_maintain", maintain)
    auth.start(sup)
    assert eventually(lambda: len(calls) >= 3)
    assert sample(metrics, "kms_appliance_thread_restarts_total", thread=THREAD) == 1
    auth.close()
    assert not sup.alive(THREAD)
    assert sup.problem() is None
