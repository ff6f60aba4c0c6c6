"""What the root-run suites (packaging, arm64, deploy, e2e) share: commands
that fail with their output, timed steps printed at the end of a session,
podman with a store private to a test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.procs import REPO

# The .deb's dependencies (adduser, procps), and systemd and dbus to boot a root with it.
ROOT_PACKAGES = ("systemd", "systemd-sysv", "dbus", "adduser", "procps")
VERSION = next(line.split('"')[1] for line in (REPO / "kms_appliance/version.py").read_text().splitlines()
               if line.startswith("__version__"))


def run(cmd: Sequence[str | os.PathLike[str]], timeout: float = 300, check: bool = True,
        **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command, keep its output, and fail with that output (bounded) if asked to."""
    args = [os.fspath(c) for c in cmd]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} -> {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


NONROOT = 65532  # the image's user (distroless "nonroot"), and the static pod's


def nonroot_dirs(*dirs: Path) -> None:
    """Make each directory 0700 and owned by NONROOT: a volume only the container's user uses."""
    for d in dirs:
        d.mkdir(mode=0o700)
        os.chown(d, NONROOT, NONROOT)


class Steps:
    """A suite's timed steps (and measured facts), printed in a section of their own."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.timed: list[tuple[str, float]] = []
        self.facts: list[str] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timed.append((name, time.monotonic() - start))

    def report(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.timed:
            return
        terminalreporter.section(self.title)
        for name, seconds in self.timed:
            terminalreporter.write_line(f"{seconds:7.1f}s  {name}")
        terminalreporter.write_line(f"{sum(s for _, s in self.timed):7.1f}s  total of timed steps")
        for fact in self.facts:
            terminalreporter.write_line(f"measured: {fact}")


@contextlib.contextmanager
def podman(store: Path) -> Iterator[list[str]]:
    """A podman command line with vfs storage under ``store``; its containers and images removed after."""
    runroot = Path(tempfile.mkdtemp(prefix="kmsp-", dir="/tmp"))  # podman wants a short path
    cmd = ["podman", "--root", str(store), "--runroot", str(runroot), "--storage-driver", "vfs",
           "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    try:
        yield cmd
    finally:
        run([*cmd, "rm", "-af", "-t", "5"], check=False)
        run([*cmd, "rmi", "-af"], check=False)
        shutil.rmtree(runroot, ignore_errors=True)


def connects(path: Path) -> bool:
    """True if a UNIX socket accepts a connection."""
    with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
        s.settimeout(1)
        s.connect(str(path))
        return True
    return False


def wait_container_socket(podman_cmd: list[str], name: str, sock: Path, timeout: float) -> None:
    """Wait until the container ``name`` serves on ``sock``; fail with its log if it stops or times out."""
    deadline = time.monotonic() + timeout
    while not connects(sock):
        status = run([*podman_cmd, "inspect", "-f", "{{.State.Status}}", name]).stdout.strip()
        assert status == "running" and time.monotonic() < deadline, run([*podman_cmd, "logs", name], check=False).stderr
        time.sleep(0.2)
