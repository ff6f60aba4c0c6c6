"""kms_appliance.process: lock-free signal delivery, coalesced bursts, and the hardening calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from kms_appliance import process
from tests.support.plugin import REPO


class TestWakeup:
    """Signals and cross-thread requests reach the loop through a socket, never a lock."""

    def test_a_burst_of_requests_from_threads_is_one_wakeup(self) -> None:
        w = process.Wakeup()

        def hammer() -> None:
            for _ in range(5000):
                w.notify(signal.SIGHUP)  # the byte a SIGHUP writes

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        w.notify(process.STOP)
        codes: set[int] = set()
        while got := w.wait(0.05):
            codes |= got
        assert codes == {signal.SIGHUP, process.STOP}

    def test_sigterm_is_not_lost_when_the_pipe_is_full(self) -> None:
        w = process.Wakeup()
        for _ in range(100_000):  # more than the pipe holds: later bytes are dropped
            w.notify(signal.SIGHUP)  # the byte a SIGHUP writes
        with w.signals():
            os.kill(os.getpid(), signal.SIGTERM)
            assert w.wait(5) == {signal.SIGHUP, signal.SIGTERM}

    def test_nothing_pending_times_out_empty(self) -> None:
        assert process.Wakeup().wait(0.01) == set()

    def test_signal_flood_is_delivered_and_handlers_restored(self) -> None:
        w = process.Wakeup()
        before = signal.getsignal(signal.SIGHUP)
        with w.signals():
            for _ in range(10_000):
                os.kill(os.getpid(), signal.SIGHUP)
            assert signal.SIGHUP in w.wait(5)
        assert signal.getsignal(signal.SIGHUP) == before

    def test_second_sigint_while_stopping_forces_exit(self) -> None:
        code = ("import os, signal, time\n"
                "from kms_appliance.process import Wakeup\n"
                "w = Wakeup()\n"
                "with w.signals():\n"
                "    os.kill(os.getpid(), signal.SIGTERM)\n"
                "    os.kill(os.getpid(), signal.SIGINT)\n"  # a duplicate (Ctrl-C forwarded): ignored
                "    time.sleep(1)\n"
                "    os.kill(os.getpid(), signal.SIGINT)\n"
                "    time.sleep(30)\n")
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30)
        assert done.returncode == 130


def test_harden_turns_core_dumps_off_and_outside_the_binary_ties_to_nothing() -> None:
    code = ("import resource\n"
            "from kms_appliance import process\n"
            "chain = process.harden()\n"
            "print(chain.parent, chain.top, process.dumpable(),"
            " resource.getrlimit(resource.RLIMIT_CORE))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30, check=True,
                         capture_output=True, text=True).stdout.split(maxsplit=3)
    assert out == ["None", "None", "False", "(0, 0)\n"] or out == ["None", "None", "False", "(0, 0)"]
