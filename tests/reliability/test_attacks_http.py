"""Attacks on the HTTP endpoint, and a /livez that must tell the truth: any local user can open
TCP connections to /metrics, so they must cost no thread and bounded descriptors, and /livez
fails when the plugin cannot serve through its socket path."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kms_appliance import config
from kms_appliance.app import App
from kms_appliance.kms.v2 import V2Servicer
from tests.reliability.probes import cpu_share, status_ok
from tests.support import inproc, procinfo
from tests.support import plugin as pm
from tests.support.procs import wait_until

FD_LIMIT = 256
FLOOD = 500
CPU_WINDOW = 3.0
# A bound, not a timing target: a process spinning on accept() burns most of a core.
CPU_SHARE_MAX = 0.25


def _livez(port: int) -> int:
    return pm.http_get(port, "/livez")[0]


def _reason(port: int) -> str:
    """Why /livez fails."""
    return str(json.loads(pm.http_get(port, "/livez")[1])["reason"])


@contextlib.contextmanager
def _idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections that never send a byte (non-blocking: the backlog may be full)."""
    conns = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            conns.append(s)
        yield conns
    finally:
        for s in conns:
            s.close()


@pytest.fixture(autouse=True)
def _enough_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * FLOOD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4 * FLOOD, hard), hard))


def test_idle_flood_under_low_fd_limit_costs_no_thread_and_keeps_grpc_and_livez(tmp_path: Path) -> None:
    """On a listener other hosts can reach (worth one warning): peers that connect and leave (FIN,
    RST, half a request) print nothing; then 500 idle connections against a 256-descriptor
    plugin: Status and /livez still answer, no thread per connection, no spinning, SIGTERM still
    stops it; then at the descriptor limit itself (EMFILE on accept) it pauses instead of
    spinning, and recovers."""
    port = pm.free_port()
    p = pm.start(tmp_path / "p", ["--http-listen", f"0.0.0.0:{port}"])
    pid = p.proc.pid
    wait_until(lambda: _livez(port) == 200, 10, "/livez")
    for partial in (b"", b"GET /livez HTTP/1.1\r\nHost:", b"GET /metrics HTTP/1.1\r\n\r\n"):
        for reset in (False, True):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if partial:
                s.sendall(partial)
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            s.close()
    time.sleep(0.5)
    assert _livez(port) == 200
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    threads_before = procinfo.threads(pid)
    with _idle_connections(port, FLOOD):
        time.sleep(1.0)  # let the server take in what it will
        assert status_ok(p.socket, 5), "gRPC Status must answer during the flood"
        assert _livez(port) == 200, "/livez must answer during the flood"
        assert procinfo.threads(pid) <= threads_before + 8, "no thread per idle connection"
        assert procinfo.fds(pid) < FD_LIMIT - 32
        share = cpu_share(pid, CPU_WINDOW)
        assert share < CPU_SHARE_MAX, f"the plugin spins: {share:.0%} of a core while idle"
        # Now at the descriptor limit itself: accept() fails with EMFILE.
        held = procinfo.fds(pid)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 2, FD_LIMIT))  # soft only: raising it back needs no privilege
        with _idle_connections(port, 40):
            time.sleep(1.0)
            share = cpu_share(pid, CPU_WINDOW)
            assert share < CPU_SHARE_MAX, f"the plugin spins at EMFILE: {share:.0%} of a core"
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        wait_until(lambda: _livez(port) == 200, 10, "accepting below the limit again")
        assert status_ok(p.socket, 5)
    assert p.stop(timeout=15) == 0, "SIGTERM stops it cleanly"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    err = p.stderr.read_text()
    assert "Traceback" not in err and "Exception" not in err, err[-2000:]
    assert err.count("reachable from other hosts") == 1, err


@pytest.mark.parametrize("replaced", [False, True], ids=["deleted", "replaced"])
def test_lost_socket_fails_livez(tmp_path: Path, replaced: bool) -> None:
    """The socket file deleted, or replaced by another listener: /livez fails."""
    with pm.running(tmp_path / "p") as p, socket.socket(socket.AF_UNIX) as impostor:
        wait_until(lambda: _livez(p.http_port) == 200, 10, "/livez")
        p.socket.unlink()
        if replaced:
            impostor.bind(os.fspath(p.socket))
            impostor.listen(1)
        wait_until(lambda: _livez(p.http_port) == 503, 5, "/livez failing for a lost socket")
        if not replaced:
            assert "socket" in _reason(p.http_port)
            assert pm.http_get(p.http_port, "/readyz")[0] == 503


def test_wedged_grpc_server_fails_livez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Status never answers (a wedged server) while the socket file is intact: the self-probe
    through the path fails, and after a few consecutive failures so does /livez."""
    release = threading.Event()

    def wedged(self: V2Servicer, request: object, context: grpc.ServicerContext) -> object:
        release.wait(30)
        raise RuntimeError("wedged")

    monkeypatch.setattr(V2Servicer, "Status", wedged)
    inproc.local_backend(tmp_path, versions=1)  # the keyring (its KEK in the ledger) the App loads
    flags = {"server.backend": "local", "local.keyring": str(tmp_path / "keyring.json"),
             "server.socket": str(tmp_path / "run" / "kms.sock"),
             "observability.http_listen": "127.0.0.1:0",
             "observability.audit_log": str(tmp_path / "audit.log"),
             "observability.health_interval": "1s"}
    app = App(config.load(flags=flags, env={}, config_file=None))
    app.start()
    loop = threading.Thread(target=app.run_until_stopped, daemon=True)
    loop.start()
    try:
        addr = app.http_address
        assert addr is not None
        assert _livez(addr[1]) == 200
        wait_until(lambda: _livez(addr[1]) == 503, 20, "/livez failing for a wedged gRPC server")
        reason = _reason(addr[1])
        assert "Status" in reason, reason
        assert (tmp_path / "run" / "kms.sock").exists(), "the socket file itself is intact"
    finally:
        release.set()
        app.request_stop()
        loop.join(10)
        app.stop()


@pytest.mark.parametrize(("listen", "says"), [("127.0.0.1:{port}", "in use"), ("no-such-host.invalid:8787", "")],
                         ids=["port-in-use", "unresolvable-host"])
def test_bad_http_listen_is_one_line_exit_2(tmp_path: Path, listen: str, says: str) -> None:
    with socket.socket() as squatter:  # holds {port}
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        p = pm.start(tmp_path / "p", ["--http-listen", listen.format(port=squatter.getsockname()[1])], wait=False)
        try:
            rc = p.proc.wait(30)
        finally:
            p.stop(signal.SIGKILL)
    err = p.stderr.read_text()
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "observability.http_listen" in lines[0] and says in lines[0], err
    assert not p.socket.exists(), "nothing left serving"
