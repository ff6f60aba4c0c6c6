"""The one way every suite and the bench start the plugin as a process.

What varies is declared, not rewritten: the command (this source tree, a frozen binary, a
wrapper such as a DNS shim), the backend (a keyring made by that same command, or Akeyless),
the environment it starts from, where the audit stream goes. What does not: stdout, stderr and
the audit file are files in the work directory, registered with the secret ledger as the plugin
is made (the secret scan covers every plugin any test started); readiness is one wait; a stop
leaves no process of the plugin's group behind, or says which.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kms_appliance.backends import keyring as keyring_file
from kms_appliance.errors import SetupError

from . import ledger
from .emulator import EmulatorProcess
from .kmsclient import Client
from .procs import REPO, ManagedProcess, ProcessRegistry, free_port, wait_until

START_TIMEOUT = 30.0  # a liveness bound: a loaded machine starts a frozen binary slowly
AUDIT_FLUSH_BOUND = 0.1  # 5x the default observability.audit_flush_interval
OWN_SETTINGS = ("KMS_APPLIANCE_", "AKEYLESS_")  # never inherited from the caller's environment


@dataclass(frozen=True)
class Command:
    """How to run kms-appliance: the argv prefix and the directory to run it in."""

    argv: tuple[str, ...]
    cwd: Path | None = None

    @classmethod
    def source(cls) -> Command:
        """This checkout as a module (the package need not be installed)."""
        return cls((sys.executable, "-m", "kms_appliance"), REPO)

    @classmethod
    def frozen(cls, binary: Path) -> Command:
        return cls((str(binary),))

    @classmethod
    def from_env(cls, variable: str) -> Command:
        """The command a variable names (an installed command, a frozen binary), else the source."""
        explicit = os.environ.get(variable)
        return cls(tuple(shlex.split(explicit))) if explicit else cls.source()

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """A command that ends by itself (``keyring init``, ``keyring rotate``); raises on failure."""
        return subprocess.run([*self.argv, *args], cwd=self.cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Plugin:
    """A plugin process, where its output goes, and what it serves on."""

    workdir: Path
    socket: Path
    audit: Path | None  # None: the audit stream is stdout
    http_port: int | None
    process: ManagedProcess
    command: Command
    keyring: Path | None = None
    backend: EmulatorProcess | None = None  # stop it for an Akeyless outage
    name: str = "plugin"
    status_ok: bool = False  # ready means Status answers ok, not only that the socket accepts
    extra_outputs: list[bytes] = field(default_factory=list)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self.process.proc is None:
            raise RuntimeError(f"{self.name} never started")
        return self.process.proc

    @property
    def stdout(self) -> Path:
        return self.process.log_path

    @property
    def stderr(self) -> Path:
        return self.process.err_path or self.process.log_path

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = START_TIMEOUT) -> float:
        """Start (or start again) and, with ``wait``, wait until the socket accepts (``status_ok``:
        and Status answers ``ok``); returns the seconds waited. A plugin that exits or misses the
        deadline is killed and the error carries its stderr."""
        self.process.start()
        if not wait:
            return 0.0
        try:
            return wait_for_socket(self.socket, self.process.check_alive, timeout, self.status_ok)
        except (RuntimeError, TimeoutError) as exc:
            self.stop(signal.SIGKILL)
            raise type(exc)(f"{exc}\nstderr:\n{self.stderr.read_text(errors='replace')[-3000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """``sig`` to the plugin, its whole group killed after ``timeout``; no process of it
        may be left (``procs.LeftoverProcessError``). Returns its exit status."""
        self.process.stop(timeout, sig)
        return self.proc.returncode

    def kill(self) -> int | None:
        """kill -9 of the pid an operator sees (the rest of the chain must follow by itself)."""
        return self.process.kill()

    def restart(self, sig: int = signal.SIGTERM) -> float:
        """Stop with ``sig`` (SIGKILL: a crash), start again, wait until ready."""
        self.stop(sig)
        return self.start()

    # -- talking to it -----------------------------------------------------------------
    def status(self, timeout: float = 3.0) -> Any:
        """KMS v2 Status over the socket, as kube-apiserver asks it."""
        with Client(self.socket, timeout) as client:
            return client.status()

    def rotate_key(self) -> None:
        """A new current key: in the keyring file (``keyring rotate``) or in Akeyless."""
        if self.backend is not None:
            self.backend.rotate_key()
        elif self.keyring is not None:
            self.command.run("keyring", "rotate", str(self.keyring))
        else:
            raise RuntimeError(f"{self.name}: no keyring or backend to rotate")

    def http(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """``http_get`` on its HTTP endpoint; the body is also part of what it ``written``."""
        status, body = http_get(self.http_port or 0, path, timeout)
        self.extra_outputs.append(body)
        return status, body

    def metrics(self) -> dict[str, float]:
        """Every sample on /metrics, keyed by its name with its labels as the text format writes them."""
        status, body = self.http("/metrics")
        assert status == 200
        samples = (line.rsplit(" ", 1) for line in body.decode().splitlines() if line and not line.startswith("#"))
        return {name: float(value) for name, value in samples}

    # -- what it wrote -------------------------------------------------------------------
    def audit_records(self) -> list[dict[str, Any]]:
        """The JSON audit records (from the audit file, or the lines of stdout that are records)."""
        if self.audit is not None:
            lines = self.audit.read_text().splitlines() if self.audit.exists() else []
            return [json.loads(line) for line in lines if line.strip()]
        text = self.stdout.read_text(errors="replace")
        return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{") and '"schema"' in ln]

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

    def written(self) -> bytes:
        """Every byte the process wrote that a test could see."""
        files = {self.stdout, self.stderr, *([self.audit] if self.audit else [])}
        return b"\n".join([*(f.read_bytes() for f in sorted(files) if f.exists()), *self.extra_outputs])


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``path`` on a fresh connection to 127.0.0.1:``port``: the status and the body (0 and
    the error's name when nothing answered within ``timeout``); the body goes to the ledger."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            status, body = int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        status, body = int(err.code), err.read()
    except OSError as exc:
        return 0, type(exc).__name__.encode()
    ledger.text(body)
    return status, body


def wait_for_socket(path: Path, alive: Callable[[], None], timeout: float = START_TIMEOUT,
                    status_ok: bool = False, interval: float = 0.05) -> float:
    """The readiness wait: until ``path`` accepts a connection (``status_ok``: and KMS v2
    Status answers ``ok``); ``alive`` raises when the process died. Returns seconds waited."""
    clients: list[Client] = []  # one channel, made once the socket accepts

    def ready() -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(os.fspath(path))
        if not status_ok:
            return True
        clients[:] = clients or [Client(path, 3.0)]
        return bool(clients[0].status().healthz == "ok")

    try:
        return wait_until(ready, timeout, f"plugin on {path}", interval_s=interval, alive=alive)
    finally:
        for client in clients:
            client.close()


def operator_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``kms-appliance ARGS`` as an operator runs it (no KMS_APPLIANCE_*/AKEYLESS_* settings
    inherited, no raise on failure); its output goes to the secret ledger."""
    proc = subprocess.run([sys.executable, "-m", "kms_appliance", *args], cwd=REPO, env=environment(),
                          capture_output=True, text=True, timeout=timeout)
    ledger.text(proc.stdout, proc.stderr)
    return proc


def cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``operator_cli`` with a local-backend config file of its own (``workdir``/etc/kms.toml),
    as an operator runs the generators."""
    conf = workdir / "etc" / "kms.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('[server]\nbackend = "local"\n')
    return operator_cli(*args, "--config", str(conf))


def keyring_init(path: Path, command: Command | None = None) -> None:
    """A fresh keyring made by the plugin's own command (a frozen binary is tested whole)."""
    (command or Command.source()).run("keyring", "init", str(path))


def start(workdir: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
          keyring: Path | None = None, wait: bool = True, socket_path: Path | None = None, *,
          timeout: float = START_TIMEOUT, **kw: Any) -> Plugin:
    """``prepare`` (``kw``: its keyword arguments), then start and wait until the socket accepts."""
    plugin = prepare(workdir, args, env, keyring, socket_path, **kw)
    plugin.start(wait, timeout)
    return plugin


def prepare(workdir: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
            keyring: Path | None = None, socket_path: Path | None = None, *,
            command: Command | None = None, emulator: EmulatorProcess | None = None,
            akeyless: bool = False, base_env: Mapping[str, str] | None = None,
            audit_file: bool = True, http: bool = True, name: str = "plugin",
            registry: ProcessRegistry | None = None, status_ok: bool = False) -> Plugin:
    """``serve`` in ``workdir`` (created 0700), made and registered but not started.

    The backend is the local keyring (``keyring``, else a fresh one) unless ``emulator`` (an
    emulator process) or ``akeyless`` (the Akeyless settings are in ``env``) says Akeyless.
    The environment is ``base_env`` (default: the caller's, without KMS_APPLIANCE_*/AKEYLESS_*
    settings) plus ``env``; ``args`` come last and win over the defaults given here.
    """
    command = command or Command.source()
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = socket_path or workdir / "run" / "kms.sock"
    audit = workdir / "audit.log" if audit_file else None
    port = free_port() if http else None
    (workdir / "none.toml").touch()
    cmd = [*command.argv, "serve", "--socket", str(sock), "--config", str(workdir / "none.toml"),
           "--audit-log", str(audit or "-"), "--http-listen", f"127.0.0.1:{port}" if port else ""]
    if emulator is not None or akeyless:
        cmd += ["--backend", "akeyless"]
    else:
        keyring = keyring or workdir / "keyring.json"
        if not keyring.exists():
            keyring_init(keyring, command)
        with contextlib.suppress(SetupError):  # one a test made unreadable on purpose
            ledger.secrets(e.material for e in keyring_file.load(keyring).entries)
        cmd += ["--backend", "local", "--keyring", str(keyring)]
    process = ManagedProcess(name=name, argv=[*cmd, *args], log_path=workdir / "stdout.log",
                             err_path=workdir / "stderr.log", env=environment(env, emulator, base_env),
                             cwd=command.cwd, banner=False)
    if registry is not None:
        registry.add(process)
    plugin = Plugin(workdir, sock, audit, port, process, command, keyring, emulator, name, status_ok)
    return ledger.plugin(plugin)


def other(workdir: Path, argv: Sequence[str], socket_path: Path, *, name: str) -> Plugin:
    """A KMS plugin that is not kms-appliance (the bench's bare grpcio servicer and Go
    reference), prepared to run, wait on and stop exactly as ours is, so a comparison
    differs only in the server. Its output is ``workdir``/stdout.log; not started."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    process = ManagedProcess(name=name, argv=list(argv), log_path=workdir / "stdout.log", cwd=REPO, banner=False)
    return Plugin(workdir, socket_path, None, None, process, Command(tuple(argv), REPO), name=name)


def environment(env: Mapping[str, str] | None = None, emulator: EmulatorProcess | None = None,
                base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The plugin's environment: ``base_env`` (default: the caller's, without KMS_APPLIANCE_*
    and AKEYLESS_* settings), then the emulator's Akeyless settings, then ``env``."""
    if base_env is None:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_SETTINGS)}
    return {**base_env, **(emulator.plugin_env() if emulator else {}), **(env or {})}


@contextlib.contextmanager
def running(workdir: Path, args: Sequence[str] = (), **kw: Any) -> Iterator[Plugin]:
    plugin = start(workdir, args, **kw)
    try:
        yield plugin
    finally:
        plugin.stop()
