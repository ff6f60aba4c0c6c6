"""Start, watch and stop the servers under test (each in its own 0700 dir).

Every server is started by the tests' launcher (tests/support/plugin.py), so
the bench measures the plugin exactly as the suites run it: its own process
group, one readiness wait, a stop that proves nothing of it is left. The
comparison servers (the bare grpcio servicer, the Go reference plugin) are
KMS plugins too and run the same way. The runner measures each from outside
(``/proc/PID``), so no server carries benchmark code.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import plugin as pm
from tests.support.emulator import EmulatorProcess
from tests.support.procs import REPO, parse_status

from . import load

PY = sys.executable
START_TIMEOUT = 60.0  # several plugins start at once on a shared two-core machine


@dataclass
class Server:
    """One running server under test, and the directory for its corpora."""

    plugin: pm.Plugin
    home: Path

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def sock(self) -> Path:
        return self.plugin.socket

    @property
    def pid(self) -> int:
        return self.plugin.proc.pid

    def rss_kib(self, key: str = "VmRSS") -> int:
        return proc_status(self.pid, key)

    def measure(self, method: str, shape: load.Shape, win: load.Window, **kw: Any) -> dict[str, Any]:
        """One load-generator run against this server (its ciphertext corpus kept per method)."""
        return load.run(self.sock, method, shape, win, self.pid,
                        corpus=self.home / f"corpus-{method}.json", **kw)

    def restart(self) -> Server:
        """Stop and start it again on the same keyring (a cold plugin)."""
        self.plugin.stop()
        return _started(self.plugin, self.home)

    def stop(self) -> None:
        if self.plugin.process.proc is not None:
            self.plugin.stop()


def proc_status(pid: int, key: str, file: str = "status") -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM) or smaps_rollup (Pss), in KiB; 0 if absent."""
    fields = parse_status(Path(f"/proc/{pid}/{file}").read_text())
    return int(fields.get(key, "0 kB").split()[0])


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


def _started(plugin: pm.Plugin, home: Path) -> Server:
    """Start ``plugin`` and wait until its socket accepts; a scenario that cannot have it
    catches RuntimeError (the launcher's error, with the plugin's stderr). It stays in the
    runner's session (a process group of its own only), so every server and the load generator
    share one scheduler autogroup: the machine's other work weighs against the bench as a
    whole, and a co-run's two servers compete thread by thread."""
    plugin.process.own_session = False
    try:
        plugin.start(timeout=START_TIMEOUT)
    except TimeoutError as exc:
        raise RuntimeError(str(exc)) from None
    return Server(plugin, home)


def start_plugin(name: str, *, allowlist: bool = False, variant: str | None = None,
                 tree: Path | None = None, emulator: EmulatorProcess | None = None,
                 env: Mapping[str, str] | None = None) -> Server:
    """The appliance with its audit to a file and no HTTP listener, on a fresh local keyring
    or, with ``emulator``, on Akeyless (``env``: more environment, e.g. KMS_APPLIANCE_*).

    ``variant`` runs it through bench/plugin_variant.py with one component ablated; ``tree``
    runs the ``kms_appliance`` package of another source tree (an A/B of two commits).
    """
    home = new_home(name)
    command = pm.Command.source()
    if variant is not None:
        command = pm.Command((PY, str(REPO / "bench" / "plugin_variant.py"), variant), REPO)
    elif tree is not None:
        command = pm.Command((PY, "-m", "kms_appliance"), tree)
        env = {**(env or {}), "PYTHONPATH": str(tree)}
    args = ["--allowed-uids", str(os.geteuid())] if allowlist else []
    plugin = pm.prepare(home, args, env, command=command, emulator=emulator, http=False, name=name)
    return _started(plugin, home)


@contextmanager
def running(starters: Mapping[str, Callable[[], Server]]) -> Iterator[dict[str, Server]]:
    """Start each server in turn; on the way out stop every one that started, even when a
    later one failed to start."""
    started: dict[str, Server] = {}
    try:
        for name, start in starters.items():
            started[name] = start()
        yield started
    finally:
        for srv in started.values():
            srv.stop()


def _start_other(name: str, argv: Sequence[str], sock_name: str) -> Server:
    home = new_home(name)
    sock = home / sock_name
    return _started(pm.other(home, [*argv, str(sock)], sock, name=name), home)


def start_bare() -> Server:
    return _start_other("bare", [PY, "-m", "bench.bare_servicer", "--socket"], "bare.sock")


def start_goref(binary: Path) -> Server:
    return _start_other("goref", [str(binary), "-socket"], "goref.sock")
