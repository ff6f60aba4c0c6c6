"""Start the real plugin (``python -m kms_appliance serve``) as a process.

Everything it writes (stdout, stderr, the audit file) is kept in files so a
test can scan every byte for secrets afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
AUDIT_FLUSH_BOUND = 0.1  # 5x the default observability.audit_flush_interval


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes] | None, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"plugin exited with {proc.returncode} before serving")
        with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
            s.connect(os.fspath(path))
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {path} after {timeout}s")


@dataclass
class Plugin:
    """A running plugin process and where its output goes."""

    workdir: Path
    socket: Path
    audit: Path
    http_port: int
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    extra_outputs: list[bytes] = field(default_factory=list)

    def http(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            body, status = err.read(), err.code
        self.extra_outputs.append(body)
        return status, body

    def audit_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]

    def audit_settled(self) -> list[dict[str, Any]]:
        """Every record of the calls answered so far (a record may wait one flush interval)."""
        time.sleep(AUDIT_FLUSH_BOUND)
        return self.audit_records()

    def audit_until(self, predicate: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 10.0) -> list[dict[str, Any]]:
        """Audit records once ``predicate`` holds (the writer thread is asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.audit_records()
            if predicate(records) or time.monotonic() > deadline:
                return records
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def written(self) -> bytes:
        """Every byte the process wrote that a test could see."""
        parts = [self.stdout.read_bytes(), self.stderr.read_bytes(), *self.extra_outputs]
        if self.audit.exists():
            parts.append(self.audit.read_bytes())
        return b"\n".join(parts)


def python() -> str:
    return sys.executable


def keyring_init(path: Path) -> None:
    subprocess.run([python(), "-m", "kms_appliance", "keyring", "init", str(path)], cwd=REPO,
                   check=True, capture_output=True)


def start(workdir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None,
          keyring: Path | None = None, wait: bool = True, socket_path: Path | None = None) -> Plugin:
    """Start ``serve`` with the local backend in ``workdir`` (created 0700)."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = socket_path or workdir / "run" / "kms.sock"
    audit = workdir / "audit.log"
    port = free_port()
    if keyring is None:
        keyring = workdir / "keyring.json"
        if not keyring.exists():
            keyring_init(keyring)
    cmd = [python(), "-m", "kms_appliance", "serve", "--backend", "local", "--keyring", str(keyring),
           "--socket", str(sock), "--audit-log", str(audit), "--http-listen", f"127.0.0.1:{port}",
           "--config", str(workdir / "none.toml"), *args]
    (workdir / "none.toml").touch()
    out, err = workdir / "stdout.log", workdir / "stderr.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_APPLIANCE_", "AKEYLESS_"))}
    full_env.update(env or {})
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=o, stderr=e, env=full_env)
    plugin = Plugin(workdir, sock, audit, port, proc, out, err)
    if wait:
        try:
            wait_for_socket(sock, proc)
        except Exception:
            plugin.stop(signal.SIGKILL)
            raise
    return plugin


@contextlib.contextmanager
def running(workdir: Path, args: Sequence[str] = (), **kw: object) -> Iterator[Plugin]:
    plugin = start(workdir, args, **kw)  # type: ignore[arg-type]
    try:
        yield plugin
    finally:
        plugin.stop()
