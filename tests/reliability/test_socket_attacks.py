"""Attacks on the socket: path games, squatters, foreign peers, connection floods. A refusal
leaves what it found untouched and never serves on a path an attacker controls."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms_appliance import socketfs
from kms_appliance.errors import SetupError
from tests.reliability.probes import PEER_PROBE, as_nobody, connect_many, status_ok
from tests.support import attacks, figures, inproc, procinfo
from tests.support import plugin as pm
from tests.support.procs import wait_until


def _refused(name: str, how: str) -> None:
    figures.put("socket attacks", name, how)


def _start_expect_refusal(workdir: Path, *args: str) -> str:
    p = pm.start(workdir, list(args), wait=False)
    assert p.proc.wait(30) == 1, "the plugin must refuse to start"
    err = p.stderr.read_text()
    assert "refusing to start" in err and "Traceback" not in err
    return err


@pytest.fixture
def rundir(tmp_path: Path) -> Path:
    """The socket's directory (0700), in the plugin's work directory."""
    (tmp_path / "p").mkdir(mode=0o700)
    (tmp_path / "p" / "run").mkdir(mode=0o700)
    return tmp_path / "p" / "run"


class TestPathGames:
    """What sits at the socket path or its directory decides nothing but a refusal."""

    def test_regular_file_at_socket_path_is_left_alone(self, rundir: Path) -> None:
        (rundir / "kms.sock").write_bytes(b"precious")
        assert "not a socket" in _start_expect_refusal(rundir.parent)
        assert (rundir / "kms.sock").read_bytes() == b"precious"
        _refused("regular file at the socket path", "exit 1, file untouched")

    def test_fifo_at_socket_path_is_not_opened(self, rundir: Path) -> None:
        """A FIFO would block an open() forever; lstat only, refused at once."""
        os.mkfifo(rundir / "kms.sock", 0o600)
        start = time.monotonic()
        assert "not a socket" in _start_expect_refusal(rundir.parent)
        assert time.monotonic() - start < 25
        assert stat.S_ISFIFO((rundir / "kms.sock").lstat().st_mode)
        _refused("FIFO at the socket path", "exit 1, FIFO untouched, not opened")

    @pytest.mark.parametrize("target", ["socket", "directory"])
    def test_symlinks_are_never_followed(self, rundir: Path, tmp_path: Path, target: str) -> None:
        elsewhere = tmp_path / "attacker"
        elsewhere.mkdir(mode=0o700)
        if target == "socket":
            (rundir / "kms.sock").symlink_to(elsewhere / "kms.sock")
        else:
            rundir.rmdir()
            rundir.symlink_to(elsewhere)
        assert "symlink" in _start_expect_refusal(rundir.parent)
        assert list(elsewhere.iterdir()) == []
        _refused(f"symlink as the socket {target}", "exit 1, nothing created at the target")

    @pytest.mark.parametrize(("case", "named"), [("world-writable", "writable by others"),
                                                 ("foreign-owned", "another non-root user"),
                                                 ("group-writable", "group-writable by a group other")],
                             ids=["world-writable", "foreign-owned", "group-writable"])
    def test_unsafe_directory_refused(self, rundir: Path, case: str, named: str) -> None:
        if case == "world-writable":
            rundir.chmod(0o777)
        elif case == "foreign-owned":
            os.chown(rundir, 65534, 65534)
        else:
            os.chown(rundir, -1, 65534)
            rundir.chmod(0o770)
        assert named in _start_expect_refusal(rundir.parent)
        assert not (rundir / "kms.sock").exists()
        _refused(f"{case} socket directory", "exit 1, nothing bound")

    def test_live_socket_of_another_process_is_not_stolen(self, rundir: Path) -> None:
        """Refused with the configured path named (not the /proc/self/fd path it binds through)."""
        squatter = socket.socket(socket.AF_UNIX)
        squatter.bind(str(rundir / "kms.sock"))
        squatter.listen(4)
        try:
            err = _start_expect_refusal(rundir.parent)
            assert f"another process is already serving on {rundir / 'kms.sock'}" in err, err
            assert "/proc/self/fd" not in err
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(rundir / "kms.sock"))  # still the squatter's, still alive
            conn, _ = squatter.accept()
            conn.close()
        finally:
            squatter.close()
        _refused("live socket of another process", "exit 1, the other socket keeps working")


class TestToctou:
    """The directory checked must be the directory bound in, even if swapped in between."""

    def test_directory_swapped_for_symlink_after_the_check(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        base = tmp_path / "t"
        base.mkdir(mode=0o700)
        run, attacker = base / "run", tmp_path / "attacker"
        run.mkdir(mode=0o700)
        attacker.mkdir(mode=0o755)
        real_clear = socketfs.clear_stale

        def swap_then_clear(path: Path) -> None:
            real_clear(path)  # runs after check_socket_dir(): the attacker wins the race here
            run.rename(base / "run.orig")
            run.symlink_to(attacker)

        monkeypatch.setattr(socketfs, "clear_stale", swap_then_clear)
        srv = inproc.server(tmp_path / "srv", run / "kms.sock")
        try:
            srv.start()
            served_in = [p.name for p in attacker.iterdir()]
        except SetupError:
            served_in = []
        finally:
            srv.stop(0)
        assert served_in == [], "the plugin bound its socket in the attacker's directory"

    def test_regular_file_planted_after_the_check_is_not_replaced(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        base = tmp_path / "t"
        base.mkdir(mode=0o700)
        sock = base / "run" / "kms.sock"
        real_clear = socketfs.clear_stale

        def plant_then_return(path: Path) -> None:
            real_clear(path)
            path.write_bytes(b"planted")

        monkeypatch.setattr(socketfs, "clear_stale", plant_then_return)
        srv = inproc.server(tmp_path / "srv", sock)
        with pytest.raises(SetupError):
            srv.start()
        srv.stop(0)
        assert sock.read_bytes() == b"planted"
        _refused("regular file planted between check and bind", "SetupError, file untouched")


class TestPeers:
    """Another uid that the file modes let in is still refused by SO_PEERCRED."""

    @pytest.mark.parametrize("allowed", [False, True])
    def test_foreign_uid_in_the_socket_group_is_refused_unless_allowed(
            self, tmp_path: Path, allowed: bool) -> None:
        uids = f"{os.geteuid()},65534" if allowed else str(os.geteuid())
        with (attacks.traversable() as top,
              pm.running(top / "g", ["--socket-group", "daemon", "--allowed-uids", uids]) as p):
            verdict = as_nobody(PEER_PROBE, str(p.socket), groups="1")
            assert status_ok(p.socket), "an allowed peer is still served"
            refusals = [r for r in p.audit_until(lambda rs: any(x["event"] == "peer_refused" for x in rs),
                                                 timeout=3) if r["event"] == "peer_refused"]
            _, metrics = p.http("/metrics")
        if allowed:
            assert verdict == "SERVED"
            assert refusals == []
        else:
            assert verdict == "CLOSED"
            assert [(r["peer_uid"], r["reason"]) for r in refusals] == [(65534, "uid_not_allowed")]
            assert b'kms_appliance_peer_refusals_total{reason="uid_not_allowed"} 1.0' in metrics
            _refused("other uid in the socket group, not allowlisted",
                     "closed at accept (SO_PEERCRED), audited, counted")


def _closed_by_server(conns: list[socket.socket], wait: float) -> int:
    closed = 0
    for s in conns:
        s.settimeout(wait)
        try:
            if s.recv(1024) == b"":
                closed += 1
        except TimeoutError:
            continue
        except OSError:
            closed += 1
    return closed


def _settled_fds(pid: int) -> dict[int, int]:
    """Descriptors by process once two samples half a second apart agree.

    Refused connections are closed as the gate reaches them in the backlog; one sample
    taken while it is still working through 400 counts some it is about to close. At most
    3 s: the admitted ones must still be held when counted (the 5 s handshake timeout ends them).
    """
    last: dict[int, int] = {}
    now = last
    for _ in range(6):
        time.sleep(0.5)
        now = procinfo.by_process(pid)
        if now == last:
            break
        last = now
    return now


@pytest.fixture
def flood_conns() -> Iterator[list[socket.socket]]:
    conns: list[socket.socket] = []
    yield conns
    for s in conns:
        s.close()


class TestIdleFlood:
    """Idle connections beyond server.max_connections are closed at once; idle ones expire."""

    LIMIT = 32
    FLOOD = 400

    @pytest.mark.parametrize("gated", [False, True], ids=["direct", "peer-gate"])
    def test_flood_is_bounded_and_refused_cleanly(self, tmp_path: Path, gated: bool,
                                                  flood_conns: list[socket.socket]) -> None:
        args = ["--allowed-uids", str(os.geteuid())] if gated else []
        env = {"KMS_APPLIANCE_SERVER_MAX_CONNECTIONS": str(self.LIMIT)}
        with pm.running(tmp_path / "f", args, env=env) as p:
            pid = p.proc.pid
            base_fds = procinfo.fds(pid)
            flood_conns.extend(connect_many(p.socket, self.FLOOD))
            assert len(flood_conns) == self.FLOOD, "connect() itself must not fail (backlog drained)"
            now = _settled_fds(pid)
            held = sum(now.values()) - base_fds
            # descriptors per admitted connection
            per_conn = 3 if gated else 1  # gate: client end, relay end, grpc end
            assert held <= per_conn * self.LIMIT + 8, \
                f"{held} descriptors for {self.FLOOD} idle connections (by process: {now}; {base_fds} before the flood)"
            refused_now = _closed_by_server(flood_conns[self.LIMIT + 8:], 2.0)
            assert refused_now >= self.FLOOD - self.LIMIT - 16, refused_now
            assert p.proc.poll() is None
            # the idle ones that were let in expire; then a real client is served
            waited = wait_until(lambda: status_ok(p.socket), 20, "a legitimate client once idle connections expired",
                                interval_s=0.5)
            for s in flood_conns:
                s.close()
            flood_conns.clear()
            time.sleep(1.0)
            after = procinfo.fds(pid)
            assert after <= base_fds + 4, (after, base_fds)
            if gated:
                records = p.audit_until(lambda rs: any(x.get("reason") == "connection_limit" for x in rs))
                reasons = {r.get("reason") for r in records if r["event"] == "peer_refused"}
                assert "connection_limit" in reasons
        name = "idle flood via peer gate" if gated else "idle flood, direct grpc"
        _refused(name, f"{self.FLOOD} idle connections: held<={held} fds, {refused_now} closed at once, "
                       f"legit client served after {waited:.1f}s, fds back to {after} (base {base_fds})")
