"""Attacks on the peer gate (server.allowed_uids): descriptor exhaustion once killed its accept
thread while /livez said 200, and a refused peer in a loop wrote a record and a warning per
refusal (162k records in 5 s)."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.reliability.probes import connect_many, cpu_share, metric, status_ok
from tests.support import attacks, figures, procinfo
from tests.support import plugin as pm
from tests.support.kmsclient import Client
from tests.support.procs import eventually, only_child, wait_until

NOBODY = attacks.NOBODY
# Records one refusing key may write in a few seconds: the first at once, then at most one per
# aggregation interval (kms_appliance.refusals.INTERVAL, 10 s) and the one flushed at shutdown.
RECORDS_BOUND = 3


def refusals(p: pm.Plugin) -> float:
    return metric(p, "kms_appliance_peer_refusals_total", 'reason="uid_not_allowed"')


def _served(sock: Path, within: float) -> None:
    wait_until(lambda: status_ok(sock), within, "an allowed client's Status on a fresh connection")


class TestDescriptorExhaustion:
    """EMFILE at accept() or right after it ends one connection, never the gate."""

    ROUNDS = 3  # the free-descriptor count at the limit differs per round (each admit takes 3)

    def test_gate_survives_descriptor_exhaustion(self, tmp_path: Path) -> None:
        env = {"KMS_APPLIANCE_SERVER_MAX_CONNECTIONS": "1000"}  # the fd limit is hit, not this one
        with pm.running(tmp_path / "e", ["--allowed-uids", str(os.geteuid())], env=env) as p:
            _served(p.socket, 10)
            pid = only_child(p.proc.pid)  # the gate accepts in a process of its own: its limit counts
            base = procinfo.fds(pid)
            _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            spent = []
            for extra in range(30, 30 + self.ROUNDS):
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (base + extra, hard))
                conns = connect_many(p.socket, 80, timeout=2)  # 3 descriptors per admitted one: far past the limit
                spent.append(cpu_share(pid, 1.0))  # exhausted, connections waiting: the gate must not spin
                for s in conns:
                    s.close()
                assert p.proc.poll() is None
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (base + 200, hard))
                _served(p.socket, 15)  # once descriptors are back
            status, body = p.http("/livez")
            assert only_child(p.proc.pid) == pid, "the same gate process survived every round"
            err = p.stderr.read_text()
        assert "Traceback" not in err and "UnboundLocalError" not in err
        assert "peer gate process" not in err, err[-2000:]
        assert "peer-gate" not in body.decode(), body
        assert status == 200, body
        figures.put("peer gate", "descriptor exhaustion",
                    f"{self.ROUNDS} rounds at the fd limit: served after each, /livez 200, "
                    f"CPU while exhausted {max(spent):.2f} s/s (max)")


class TestRefusedFlood:
    """A refused peer connecting in a loop: records bounded, metric exact, allowed peers served."""

    SECONDS = 3.0

    def test_refused_flood_is_aggregated_and_does_not_starve_allowed_peers(self) -> None:
        with attacks.traversable() as top:
            p = pm.start(top / "g", ["--socket-group", "daemon", "--allowed-uids", str(os.geteuid())])
            try:
                with Client(p.socket) as kept:  # kube-apiserver keeps its connection
                    assert kept.status().healthz == "ok"
                    hammer = attacks.refused_peer(p.socket, 1, self.SECONDS, total=self.SECONDS)
                    served = _Served.during(hammer, kept, p.socket)
                out, errout = hammer.communicate(30)
                assert hammer.returncode == 0, errout[-300:]
                connects = int(out.strip())
                eventually(lambda: refusals(p) >= connects, 10, 0.1)
                counted = refusals(p)
            finally:
                assert p.stop() == 0
            records = [r for r in p.audit_records() if r["event"] == "peer_refused"]
            err = p.stderr.read_text()
        assert connects > 100, "the flood did not happen"
        assert len(records) <= RECORDS_BOUND, f"{len(records)} records for {connects} refusals"
        warnings = [line for line in err.splitlines() if "kms_appliance.app: refused" in line]
        assert 1 <= len(warnings) <= RECORDS_BOUND, "warning lines are aggregated too"
        assert counted == connects, "every refusal counted, exactly"
        assert sum(int(r["count"]) for r in records) == counted, "the records' counts add up"
        assert {(r["peer_uid"], r["reason"]) for r in records} == {(NOBODY, "uid_not_allowed")}
        assert "Traceback" not in err
        assert served.kept_calls >= 3 and served.kept_failed == 0, served
        assert served.fresh_ok >= 1, served
        figures.put("peer gate", "refused-peer flood",
                    f"{connects} refusals in {self.SECONDS:.0f}s: {len(records)} audit records "
                    f"(counts sum to the metric); kept connection {served.kept_calls} Status calls, "
                    f"all answered, slowest {served.kept_worst * 1000:.0f} ms; fresh connections "
                    f"(retrying connect) {served.fresh_ok}/{served.fresh_tries} served")


@dataclass
class _Served:
    kept_calls: int = 0
    kept_failed: int = 0
    kept_worst: float = 0.0
    fresh_tries: int = 0
    fresh_ok: int = 0

    @classmethod
    def during(cls, hammer: subprocess.Popen[str], kept: Client, sock: Path) -> _Served:
        """Status on the kept connection every 50 ms, and on fresh ones, while the flood runs.

        A fresh connection's connect() can find the accept queue full (the kernel's, shared
        with the refused peer): it retries quickly (wait_for_ready) within its deadline.
        """
        s = cls()
        fresh = threading.Thread(target=s._fresh, args=(hammer, sock), daemon=True)
        fresh.start()
        while hammer.poll() is None:
            t0 = time.monotonic()
            try:
                kept.status()
            except grpc.RpcError:
                s.kept_failed += 1
            s.kept_worst = max(s.kept_worst, time.monotonic() - t0)
            s.kept_calls += 1
            time.sleep(0.05)
        fresh.join(15)
        return s

    def _fresh(self, hammer: subprocess.Popen[str], sock: Path) -> None:
        time.sleep(0.3)  # let the flood build up
        while hammer.poll() is None:
            self.fresh_tries += 1
            with contextlib.suppress(grpc.RpcError):
                if status_ok(sock, 5, wait_for_ready=True, initial_reconnect_backoff_ms=50, max_reconnect_backoff_ms=200):
                    self.fresh_ok += 1
            time.sleep(0.2)
