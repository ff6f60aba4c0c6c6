"""Start, watch and stop the servers under test (each in its own 0700 dir).

Every server is a child process with its own socket; the runner measures it
from outside (``/proc/PID``), so no server carries benchmark code.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.plugin import keyring_init, wait_for_socket

from . import load

REPO = Path(__file__).resolve().parent.parent.parent
PY = sys.executable


@dataclass
class Server:
    """One running server under test."""

    name: str
    sock: Path
    proc: subprocess.Popen[bytes]
    home: Path
    keyring: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self, key: str = "VmRSS") -> int:
        return proc_status(self.pid, key)

    def measure(self, method: str, shape: load.Shape, win: load.Window, **kw: Any) -> dict[str, Any]:
        """One load-generator run against this server (its ciphertext corpus kept per method)."""
        return load.run(self.sock, method, shape, win, self.pid,
                        corpus=self.home / f"corpus-{method}.json", **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def proc_status(pid: int, key: str, file: str = "status") -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM) or smaps_rollup (Pss), in KiB; 0 if absent."""
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    """utime + stime of all threads of ``pid``, from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_HOMES: list[Path] = []


def new_home(prefix: str) -> Path:
    """A fresh 0700 directory (the plugin refuses looser socket dirs)."""
    home = Path(tempfile.mkdtemp(prefix=f"kms-bench-{prefix}-"))
    _HOMES.append(home)
    return home


def remove_homes() -> None:
    """Delete every directory made by new_home (keyrings, corpora, audit logs)."""
    while _HOMES:
        shutil.rmtree(_HOMES.pop(), ignore_errors=True)


def wait_ready(srv: Server, timeout: float = 30.0) -> None:
    """Until a connect() on the socket succeeds (the tests' readiness wait); raise with the log
    if it dies or the time is up."""

    def alive() -> None:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"{srv.name} exited with {srv.proc.returncode}")

    try:
        wait_for_socket(srv.sock, alive, timeout)
    except (RuntimeError, TimeoutError) as exc:
        srv.stop()
        log = (srv.home / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{exc}:\n{log}") from None


def spawn(name: str, home: Path, argv: list[str], sock: Path,
          env: dict[str, str] | None = None) -> Server:
    """Start ``argv`` logging to home/server.log and wait until its socket answers."""
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    log.close()
    srv = Server(name, sock, proc, home, env=env)
    wait_ready(srv, timeout=60)
    return srv


def make_keyring(home: Path) -> Path:
    ring = home / "keyring.json"
    keyring_init(ring)
    return ring


def start_plugin(name: str, *, allowlist: bool = False, keyring: Path | None = None,
                 extra_args: list[str] | None = None, home: Path | None = None,
                 variant: str | None = None) -> Server:
    """The appliance on the local keyring (or as ``extra_args`` say), audit to a file.

    ``variant`` runs it through bench/plugin_variant.py with one component ablated.
    """
    home = home or new_home(name)
    sock_dir = home / "sock"
    sock_dir.mkdir(mode=0o700, exist_ok=True)
    ring = keyring or make_keyring(home)
    sock = sock_dir / "kms.sock"
    head = [PY, "-m", "kms_appliance"] if variant is None else \
        [PY, str(REPO / "bench" / "plugin_variant.py"), variant]
    argv = [*head, "serve", "--backend", "local", "--keyring", str(ring),
            "--socket", str(sock), "--http-listen", "", "--audit-log", str(home / "audit.log")]
    if allowlist:
        argv += ["--allowed-uids", str(os.geteuid())]
    argv += extra_args or []
    srv = spawn(name, home, argv, sock)
    srv.keyring = ring
    return srv


def start_bare(name: str = "bare", workers: int = 32) -> Server:
    home = new_home(name)
    sock = home / "bare.sock"
    argv = [PY, "-m", "bench.bare_servicer", "--socket", str(sock),
            "--workers", str(workers)]
    return spawn(name, home, argv, sock)


def start_goref(binary: Path, name: str = "goref") -> Server:
    home = new_home(name)
    sock = home / "goref.sock"
    return spawn(name, home, [str(binary), "-socket", str(sock)], sock)


def restart(srv: Server) -> Server:
    """Stop and start the same server again on the same keyring (a cold plugin)."""
    srv.stop()
    argv = [str(a) for a in srv.proc.args]  # type: ignore[union-attr]
    return spawn(srv.name, srv.home, argv, srv.sock, env=srv.env)
