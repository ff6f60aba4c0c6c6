"""Shared machinery of the packaging and arm64 tests: artefacts, a bookworm root, nspawn,
and the checks every way of installing or running the package repeats.

Everything runs on this machine with no registry: the bookworm root comes
from Debian's apt mirror through mmdebstrap (cached under
.cache/packaging/, keyed by package list and ISO week, so CI on a fresh
machine builds it from nothing and a developer's re-run is fast).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support import steps
from tests.support.procs import children
from tests.support.steps import REPO, ROOT_PACKAGES, VERSION, Steps, run

DIST = Path(os.environ.get("PACKAGING_DIST", REPO / "dist"))
CACHE = REPO / ".cache" / "packaging"
MIRROR = os.environ.get("PACKAGING_MIRROR", "http://deb.debian.org/debian")
STEPS = Steps("packaging step durations")
step = STEPS.step
IMAGE_REF = f"localhost/kms-appliance:{VERSION}"
WANTS = "etc/systemd/system/multi-user.target.wants/kms-appliance.service"  # the unit enabled
# How the image runs as deployed (docs/deployment.md): read-only root, an exec-allowed tmpfs on /tmp.
PODMAN_RUN = ("run", "--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
              "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,exec,nosuid,nodev,size=128m")
# The documentation every artefact ships (.deb, .rpm, offline bundle), laid out as in the
# repository so the links between documents work: relative path -> the repository file.
DOCS = {"README.md": REPO / "README.md",
        **{f"docs/{p.name}": p for p in sorted((REPO / "docs").glob("*.md"))}}
# What an operator needs; named so that a lost glob cannot pass unnoticed.
REQUIRED_DOCS = ("README.md", "docs/troubleshooting.md", "docs/akeyless-permissions.md", "docs/backup.md",
                 "docs/k3s-rke2.md", "docs/configuration.md", "docs/deployment.md", "docs/akeyless.md",
                 "docs/verify.md")


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


def assert_shipped(directory: Path) -> None:
    """Every document is in ``directory``, byte for byte the repository's."""
    assert set(REQUIRED_DOCS) <= set(DOCS), f"missing from the repository: {set(REQUIRED_DOCS) - set(DOCS)}"
    for rel, source in DOCS.items():
        shipped = directory / rel
        assert shipped.is_file(), f"{shipped} missing"
        assert shipped.read_bytes() == source.read_bytes(), f"{shipped} differs from {source}"


def root_tarball(arch: str | None = None) -> Path:
    """The bootstrapped bookworm root as a tarball (``arch``: another architecture's, arm64 on
    x86_64 runs under qemu-user-static), made once a week and package list, not on every run:
    ``<name>-<hash of mirror and packages>-<ISO week>.tar``, older weeks' removed."""
    opts = [f"--arch={arch}"] if arch else []
    name = f"bookworm-{arch}" if arch else "bookworm"
    digest = hashlib.sha256(" ".join((MIRROR, *opts, *ROOT_PACKAGES)).encode()).hexdigest()[:12]
    path = CACHE / f"{name}-{digest}-{time.strftime('%G-W%V', time.gmtime())}.tar"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"{name}-{digest}-*.tar"):
        old.unlink()
    partial = path.with_suffix(".partial")
    with step(f"mmdebstrap bookworm {arch or 'host'} root (cache miss)"):
        run(["mmdebstrap", "--quiet", *opts, "--variant=apt", f"--include={','.join(ROOT_PACKAGES)}",
             "--format=tar", "bookworm", partial, MIRROR], timeout=1800 if arch else 900)
    partial.rename(path)
    return path


def fresh_root(dest: Path, arch: str | None = None) -> Path:
    """Unpack the cached root into ``dest`` (a new, private copy per test, its device nodes and
    owners on purpose)."""
    tarball = root_tarball(arch)
    with step(f"unpack root for {dest.name}"), tarfile.open(tarball) as tar:
        dest.mkdir(parents=True)
        tar.extractall(dest, numeric_owner=True, filter="fully_trusted")
    return dest


_MACHINES = itertools.count()


def machine_name() -> str:
    """A container name of its own for each nspawn run. Every test's root is a directory named
    ``root``, and nspawn keys its /run/systemd/nspawn/propagate/ directory on the name: a run
    that starts while the previous one's is still being removed would fail."""
    return f"kmsa-{os.getpid()}-{next(_MACHINES)}"


def nspawn(root: Path, *cmd: str, check: bool = True, timeout: float = 120,
           binds: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run one command in ``root`` with /proc, /dev and /run set up (no boot)."""
    args = ["systemd-nspawn", "--quiet", "-D", str(root), f"--machine={machine_name()}", "--register=no",
            "--keep-unit", "--pipe",
            *(f"--bind-ro={b}" for b in binds), "--", *cmd]
    return run(args, check=check, timeout=timeout, stdin=subprocess.DEVNULL)


def dpkg_install(root: Path, deb: Path, timeout: float = 120) -> None:
    """``dpkg -i`` of a .deb copied into the root, maintainer scripts and all."""
    shutil.copy(deb, root / "var/tmp" / deb.name)
    nspawn(root, "dpkg", "-i", f"/var/tmp/{deb.name}", timeout=timeout)


def assert_installed(root: Path, timeout: float = 120, shell: str = "/usr/sbin/nologin") -> None:
    """What every way of installing the package leaves: a system user with no shell (the .rpm's
    useradd names ``/sbin/nologin``), the config readable by its group only, a private state
    directory, the binary, the unit enabled."""
    pw = nspawn(root, "getent", "passwd", "kms-appliance", timeout=timeout).stdout.strip().split(":")
    assert pw[5] == "/var/lib/kms-appliance" and pw[6] == shell and int(pw[2]) < 1000, pw
    stat = nspawn(root, "stat", "-c", "%U:%G %a", "/etc/kms-appliance/config.toml", "/var/lib/kms-appliance",
                  timeout=timeout).stdout.split("\n")
    assert stat[:2] == ["root:kms-appliance 640", "kms-appliance:kms-appliance 700"], stat
    assert nspawn(root, "kms-appliance", "version", timeout=timeout).stdout.startswith(f"kms-appliance {VERSION} ")
    assert (root / WANTS).is_symlink()


def configure_local(root: Path, http_port: int, *edits: tuple[str, str]) -> None:
    """The installed config.toml on the local keyring backend (no Akeyless here) with its health port
    on ``http_port`` (a booted root shares the host's network), and the keyring made as the service user."""
    conf = root / "etc/kms-appliance/config.toml"
    text = conf.read_text()
    for old, new in (('backend = "akeyless"', 'backend = "local"'),
                     ('#http_listen = "127.0.0.1:8787"', f'http_listen = "127.0.0.1:{http_port}"'), *edits):
        assert old in text, old
        text = text.replace(old, new)
    conf.write_text(text)
    nspawn(root, "runuser", "-u", "kms-appliance", "--", "env", "TMPDIR=/tmp", "kms-appliance",
           "keyring", "init", "/var/lib/kms-appliance/keyring.json")


def oci_blob(tar: tarfile.TarFile, digest: str) -> bytes:
    member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
    assert member is not None
    return member.read()


def oci_manifest(tar: tarfile.TarFile) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the one descriptor in an OCI archive's index.json, the manifest it names)."""
    (desc,) = json.loads(tar.extractfile("index.json").read())["manifests"]  # type: ignore[union-attr]
    return desc, json.loads(oci_blob(tar, desc["digest"]))


def serve_image(podman: list[str], work: Path, name: str, timeout: float) -> Path:
    """The loaded image as deployed: its keyring made by its own binary as its user, then serving
    with no capabilities and no_new_privs, socket and state directories from the host; the socket."""
    sock_dir, state = work / "sock", work / "state"
    steps.nonroot_dirs(sock_dir, state)
    run([*podman, *PODMAN_RUN, "--rm", "-v", f"{state}:/var/lib/kms-appliance", "--entrypoint",
         "/usr/bin/kms-appliance", IMAGE_REF, "keyring", "init", "/var/lib/kms-appliance/keyring.json"])
    run([*podman, *PODMAN_RUN, "-d", "--name", name, "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
         "-v", f"{sock_dir}:/run/kms-appliance", "-v", f"{state}:/var/lib/kms-appliance",
         IMAGE_REF, "--backend", "local", "--http-listen", ""])
    steps.wait_container_socket(podman, name, sock_dir / "kms.sock", timeout=timeout)
    return sock_dir / "kms.sock"


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
            ["systemd-nspawn", "--quiet", "--boot", "-D", str(root), f"--machine={machine_name()}",
             "--register=no", "--keep-unit",
             "--console=pipe", *(f"--bind-ro={b}" for b in binds)],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self.leader = self._find_leader()

    def _find_leader(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nspawn exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            for pid in children(self.proc.pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return pid
            time.sleep(0.1)
        raise AssertionError("container init did not start")

    def path(self, inside: str) -> Path:
        return Path(f"/proc/{self.leader}/root{inside}")

    def exec(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "--", *cmd],
                   check=check, timeout=timeout)

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float = 60,
                   units: Sequence[str] = ()) -> None:
        """Until ``predicate`` holds (an exception fails at once); on a timeout the journal (of ``units``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        journal = self.exec("journalctl", "--no-pager", "-n", "60", *(f"--unit={u}" for u in units), check=False).stdout
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
