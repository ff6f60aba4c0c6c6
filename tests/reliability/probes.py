"""What several attack tests ask of a running plugin, or of the CLI, written once."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from kms_appliance.kms import v2_pb2, v2_pb2_grpc
from tests.support import attacks
from tests.support import plugin as pm
from tests.support.procs import cpu_seconds


def status_ok(sock: Path, timeout: float = 2.0, wait_for_ready: bool = False, **options: int) -> bool:
    """KMS v2 Status answers ``ok`` on a connection of its own, made with grpc ``options`` (for
    ``wait_until``: an error means not yet)."""
    with attacks.channel(sock, **options) as channel:
        stub = v2_pb2_grpc.KeyManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        return bool(stub.Status(v2_pb2.StatusRequest(), timeout=timeout, wait_for_ready=wait_for_ready).healthz == "ok")


def cpu_share(pid: int, window: float) -> float:
    """Cores ``pid`` used over the next ``window`` seconds (a spinning loop shows as ~1)."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0)


def connect_many(sock: Path, count: int, timeout: float | None = None) -> list[socket.socket]:
    """Up to ``count`` idle connections, fewer if a connect fails (the backlog is full: the
    server stopped accepting) or, with ``timeout``, waits that long for the backlog."""
    conns = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(str(sock))
        except OSError:
            s.close()
            break
        conns.append(s)
    return conns


def metric(p: pm.Plugin, name: str, labels: str | None = None) -> float:
    """The sum of the samples of ``name`` on /metrics: those with exactly ``labels`` (the text
    between the braces, "" for none), or every label set when None; 0 when there is none."""
    samples = p.metrics()
    if labels is not None:
        return samples.get(name + (f"{{{labels}}}" if labels else ""), 0.0)
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def one_line(proc: subprocess.CompletedProcess[str], code: int, setting: str) -> str:
    """A mistake's answer: exit ``code``, no traceback, one short stderr line naming ``setting``."""
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == code, proc.stderr[-2000:]
    assert len(lines) == 1 and setting in lines[0], proc.stderr[-2000:]
    assert len(proc.stderr) < 400, "no value may be echoed at length"
    return lines[0]


def serve_args(keyring: Path, sock: Path, *extra: str) -> list[str]:
    """``serve`` on a local keyring with no config file and no HTTP endpoint."""
    return ["serve", "--backend", "local", "--keyring", str(keyring), "--socket", str(sock),
            "--http-listen", "", "--config", os.devnull, *extra]


def as_nobody(code: str, *args: str, groups: str = "") -> str:
    """Python ``code`` run as uid/gid 65534 (in ``groups`` if given); its output."""
    cmd = ["setpriv", "--reuid", "65534", "--regid", "65534"]
    cmd += ["--groups", groups] if groups else ["--clear-groups"]
    out = subprocess.run([*cmd, "/usr/bin/python3", "-c", code, *args], capture_output=True,
                         text=True, timeout=30)
    return out.stdout.strip() + out.stderr.strip()[-300:]


# Connects to the socket argv[1]: DENIED by the kernel (file modes), SERVED (an HTTP/2 server
# answered the client preface) or CLOSED (accepted, then closed: the peer gate refused it).
PEER_PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("DENIED"); raise SystemExit
# the HTTP/2 client preface: an allowed peer gets a SETTINGS frame back, a refused one EOF
try:
    s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    data = s.recv(64)
except OSError:
    data = b""
print("SERVED" if data else "CLOSED")
"""
