"""Shared machinery of the packaging tests: artefacts, a bookworm root, nspawn.

Everything runs on this machine with no registry: the bookworm root comes
from Debian's apt mirror through mmdebstrap (cached under
.cache/packaging/, keyed by package list and ISO week, so CI on a fresh
machine builds it from nothing and a developer's re-run is fast).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.steps import REPO, ROOT_PACKAGES, VERSION, Steps, run, unpack_root, weekly_tarball

DIST = Path(os.environ.get("PACKAGING_DIST", REPO / "dist"))
CACHE = REPO / ".cache" / "packaging"
MIRROR = os.environ.get("PACKAGING_MIRROR", "http://deb.debian.org/debian")
STEPS = Steps("packaging step durations")
step = STEPS.step


def artefact(name: str) -> Path:
    path = DIST / name
    assert path.exists(), f"{path} missing: run `make deb rpm image` (or `make test-packaging`)"
    return path


def deb_path() -> Path:
    return artefact(f"kms-appliance_{VERSION}_amd64.deb")


def rpm_path() -> Path:
    return artefact(f"kms-appliance-{VERSION}-1.x86_64.rpm")


def image_path() -> Path:
    return artefact(f"kms-appliance_{VERSION}_oci.tar")


def root_tarball() -> Path:
    """The bootstrapped bookworm root as a tarball, built once per week and package list."""

    def make(partial: Path) -> None:
        with step("mmdebstrap bookworm root (cache miss)"):
            run(["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(ROOT_PACKAGES)}",
                 "--format=tar", "bookworm", partial, MIRROR], timeout=900)

    return weekly_tarball(CACHE / "bookworm", " ".join((MIRROR, *ROOT_PACKAGES)), make)


def fresh_root(dest: Path) -> Path:
    """Unpack the cached root into ``dest`` (a new, private copy per test)."""
    tarball = root_tarball()
    with step(f"unpack root for {dest.name}"):
        return unpack_root(tarball, dest)


def nspawn(root: Path, *cmd: str, check: bool = True, timeout: float = 120,
           binds: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run one command in ``root`` with /proc, /dev and /run set up (no boot)."""
    args = ["systemd-nspawn", "--quiet", "-D", str(root), "--register=no", "--keep-unit", "--pipe",
            *(f"--bind-ro={b}" for b in binds), "--", *cmd]
    return run(args, check=check, timeout=timeout, stdin=subprocess.DEVNULL)


class BootedRoot:
    """``systemd-nspawn --boot`` of a root, in the host's network namespace.

    The host reaches the container's files (and UNIX sockets) through
    /proc/<leader>/root and runs commands inside with nsenter: no machined is
    needed (PID 1 of a CI machine is not systemd).
    """

    def __init__(self, root: Path, log: Path, binds: Sequence[str] = ()) -> None:
        self.root = root
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--boot", "-D", str(root), "--register=no", "--keep-unit",
             "--console=pipe", *(f"--bind-ro={b}" for b in binds)],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self.leader = self._find_leader()

    def _find_leader(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nspawn exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            time.sleep(0.1)
        raise AssertionError("container init did not start")

    def path(self, inside: str) -> Path:
        return Path(f"/proc/{self.leader}/root{inside}")

    def exec(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "--", *cmd],
                   check=check, timeout=timeout)

    def wait_until(self, what: str, predicate: object, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(predicate) and predicate():
                return
            time.sleep(0.2)
        journal = self.exec("journalctl", "--no-pager", "-n", "60", check=False).stdout
        raise AssertionError(f"timed out waiting for {what}; journal:\n{journal}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM makes nspawn halt the container cleanly; SIGKILL after the timeout.

        The container's init is in a session of its own: killing nspawn's group
        alone would leave it (and its services) running, so it is killed too.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, signal.SIGKILL)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
