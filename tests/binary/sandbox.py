"""Run the frozen binary the way a distroless container would, without a container engine.

Why this shape: the contract we promise operators is "the binary alone in an
empty, read-only root, plus /proc, four /dev nodes and an exec-allowed tmpfs
/tmp, as uid 65532 with no capabilities". We build exactly that with
util-linux: ``unshare --mount --pid`` gives a private mount table and PID
namespace, a tmpfs becomes the new root holding only the binary, the listed
nodes are bind-mounted in, the root is remounted read-only, then
``setpriv`` drops the capability bounding set and ``unshare --root --setuid
--setgid`` chroots and becomes 65532 (which clears every capability), and
execs the binary. Extra host directories or files (the socket directory, a keyring, a CA
file) are bind-mounted at the paths the caller names. Needs root on the host.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.plugin import wait_for_socket

NONROOT = 65532
DEV_NODES = ("null", "zero", "urandom", "random")
# What unshare needs to chroot and change user after setpriv shrank the bounding set.
SETUP_CAPS = "-all,+sys_chroot,+setuid,+setgid"


@dataclass
class Sandbox:
    """Description of the empty root the binary runs in."""

    binary: Path
    binds: dict[Path, str] = field(default_factory=dict)  # host dir/file -> absolute path inside
    tmp: str = "tmpfs"  # "tmpfs", "tmpfs-noexec", "tmpfs-ro" or "none"
    env: dict[str, str] = field(default_factory=dict)
    uid: int = NONROOT

    def script(self, root: Path, argv: Sequence[str]) -> str:
        """The shell run inside the new mount+PID namespace, ending in exec of the binary."""
        q = shlex.quote
        lines = [
            "set -eu",
            f"mount -t tmpfs -o size=64m,mode=0755 kmsroot {q(str(root))}",
            f"cd {q(str(root))}",
            "mkdir -p proc dev tmp",
            f"cp {q(str(self.binary))} kms-appliance && chmod 0755 kms-appliance",
            "mount -t proc -o nosuid,nodev,noexec proc proc",
        ]
        for node in DEV_NODES:
            lines += [f"touch dev/{node}", f"mount --bind /dev/{node} dev/{node}"]
        tmp_opts = {"tmpfs": "mode=1777,size=256m", "tmpfs-noexec": "mode=1777,size=256m,noexec",
                    "tmpfs-ro": "mode=1777,size=1m,ro"}
        if self.tmp in tmp_opts:
            lines.append(f"mount -t tmpfs -o {tmp_opts[self.tmp]} kmstmp tmp")
        for host, inside_path in sorted(self.binds.items()):
            inside = q(str(root / inside_path.lstrip("/")))
            if host.is_dir():
                lines.append(f"mkdir -p {inside}")
            else:
                lines.append(f"mkdir -p $(dirname {inside}) && touch {inside}")
            lines.append(f"mount --bind {q(str(host))} {inside}")
        lines.append(f"mount -o remount,ro,bind {q(str(root))}")
        env = " ".join(q(f"{k}={v}") for k, v in sorted(self.env.items()))
        lines.append(
            f"exec env -i {env} /usr/bin/setpriv --bounding-set={SETUP_CAPS} --no-new-privs "
            f"/usr/bin/unshare --root={q(str(root))} --wd=/ --setgid={self.uid} --setuid={self.uid} "
            + " ".join(q(a) for a in ["/kms-appliance", *argv]))
        return "\n".join(lines) + "\n"

    def popen(self, argv: Sequence[str], stdout: int | object = subprocess.PIPE,
              stderr: int | object = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], Path]:
        """Start the binary in the sandbox; returns the process and the root mount point."""
        if os.geteuid() != 0:
            raise RuntimeError("the distroless sandbox needs root (mount namespaces, chroot)")
        root = Path(tempfile.mkdtemp(prefix="kms-root-"))
        cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
               "--kill-child=SIGTERM", "sh", "-c", self.script(root, argv)]
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)  # type: ignore[arg-type]
        return proc, root

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """Run to completion (for commands that exit by themselves)."""
        proc, root = self.popen(argv)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            stop(proc, timeout=5)  # no-op when it already exited
            root.rmdir()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_serving(sock: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until *sock* accepts; on failure raise with what the binary wrote to stderr."""
    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before serving")

    try:
        wait_for_socket(sock, alive, timeout)
    except (RuntimeError, TimeoutError) as exc:
        stop(proc)
        err = proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else ""
        raise AssertionError(f"{exc}; stderr:\n{err}") from None


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM the binary (PID 1 inside the sandbox) and wait for the sandbox to end.

    The signal goes to the binary itself, as a container runtime sends it:
    signalling the outer ``unshare`` would not reach it (``--kill-child``
    relies on the parent-death signal, which the kernel clears when the
    inner ``unshare`` changes uid). If it does not exit in time, SIGKILL on
    PID 1 tears the whole PID namespace down. Returns the sandbox's status
    (unshare passes the binary's exit status through).
    """
    if proc.poll() is None:
        inner = _children(proc.pid)
        for pid in inner:
            _signal(pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in inner:
                _signal(pid, signal.SIGKILL)
            proc.kill()
            proc.wait(10)
    return proc.returncode


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


