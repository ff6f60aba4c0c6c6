"""Run the frozen binary the way a distroless container would, without a container engine.

Why this shape: the contract we promise operators is "the binary alone in an empty, read-only
root, plus /proc, four /dev nodes and an exec-allowed tmpfs /tmp, as uid 65532 with no
capabilities". util-linux builds exactly that: ``unshare --mount --pid`` gives a private mount
table and PID namespace, a tmpfs root holds only the binary, the nodes and the caller's binds
(socket directory, keyring, CA file) are bind-mounted in, the root is remounted read-only, then
``setpriv`` drops the bounding set and ``unshare --root --setuid --setgid`` chroots and becomes
65532 (which clears every capability) and execs the binary. Needs root on the host.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ledger
from tests.support.plugin import Command, Plugin
from tests.support.procs import STOP_GRACE_S, ManagedProcess, children, descendants, status_fields
from tests.support.steps import NONROOT

START_TIMEOUT = 60.0  # the machine is shared; start-up itself is measured in bench/startup.py
DEV_NODES = ("null", "zero", "urandom", "random")
# What unshare needs to chroot and change user after setpriv shrank the bounding set.
SETUP_CAPS = "-all,+sys_chroot,+setuid,+setgid"
LAUNCHER = ("sh", "unshare", "setpriv", "env")  # the processes that build the root, not the binary's


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

    def command(self, root: Path, argv: Sequence[str]) -> list[str]:
        """The host command that builds the empty root at ``root`` and runs the binary in it."""
        if os.geteuid() != 0:
            raise RuntimeError("the distroless sandbox needs root (mount namespaces, chroot)")
        return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                "--kill-child=SIGTERM", "sh", "-c", self.script(root, argv)]

    @contextlib.contextmanager
    def serving(self, workdir: Path, sock_dir: Path, *args: str) -> Iterator[Plugin]:
        """``serve`` on /run/kms/kms.sock (``sock_dir`` must be bound there) with ``args``, started
        as the launcher's Plugin (one readiness wait, a stop that proves nothing of the sandbox is
        left, stdout and stderr in ``workdir`` registered with the secret ledger). At the end
        SIGTERM to PID 1 of the empty root must exit 0 and remove the socket from ``sock_dir``."""
        root = workdir / "root"  # empty mount point of the private tmpfs root
        root.mkdir(mode=0o700, parents=True)
        argv = self.command(root, ["serve", "--socket", "/run/kms/kms.sock", "--http-listen", "", "--audit-log",
                                   "-", "--log-format", "json", *args])
        process = SandboxProcess(name="sandboxed", argv=argv, log_path=workdir / "stdout.log",
                                 err_path=workdir / "stderr.log", banner=False)
        p = ledger.plugin(Plugin(workdir, sock_dir / "kms.sock", None, None, process, Command(tuple(argv)),
                                 name="sandboxed"))
        p.start(timeout=START_TIMEOUT)
        try:
            yield p
        finally:
            rc = p.stop()
        assert rc == 0, p.stderr.read_text()[-2000:]
        assert not p.socket.exists()

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """Run to completion (for commands that exit by themselves)."""
        root = Path(tempfile.mkdtemp(prefix="kms-root-"))
        proc = subprocess.Popen(self.command(root, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            _kill(proc)  # no-op when it already exited
            root.rmdir()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class SandboxProcess(ManagedProcess):
    """The sandbox as a launcher process whose stop signal goes to the binary, PID 1 of the empty
    root, as a container runtime sends it: signalling the outer ``unshare`` would not reach it
    (``--kill-child`` relies on the parent-death signal, which the kernel clears when the inner
    ``unshare`` changes uid). A binary that outlives the stop's grace is killed with its whole
    group, which tears the PID namespace down; the stop then proves the group empty."""

    def stop(self, grace_s: float = STOP_GRACE_S, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` to the binary; unshare passes its exit status through."""
        if self.running:
            _signal_children(self.pid, sig)
        return super().stop(grace_s, sig)


def _kill(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """End a ``run`` that has not exited by itself (SIGKILL on PID 1 ends the PID namespace)."""
    if proc.poll() is None:
        _signal_children(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout)


def _signal_children(pid: int, sig: int) -> None:
    for child in children(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, sig)


def binary_pids(pid: int) -> list[int]:
    """The binary's processes under the sandbox's launcher ``pid`` (the launcher's own left out)."""
    return [p for p in descendants(pid) if status_fields(p).get("Name") not in LAUNCHER]


