"""A real Kubernetes node on this machine: containerd (CRI) and kubelet, built from their Go
modules, run as root inside a mount namespace of their own. Why each setting (that namespace,
the faked kernel settings, restrict_oom_score_adj, loopback only): docs/deployment-tests.md.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.plugin import http_get
from tests.support.procs import ManagedProcess, ProcessRegistry, free_port, status_fields, wait_until
from tests.support.steps import run

NODE_COMPONENTS = ("kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "pause")
CLI_TIMEOUT_S = 120
K8S_NS = "k8s.io"  # the containerd namespace of CRI (kubelet's) containers and images
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins

# What kubelet's setupKernelTunables wants (pkg/kubelet/cm/container_manager_linux.go).
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


def mount_namespace(pid: int) -> str | None:
    """``mnt:[inode]`` of a process, or None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_mount_namespace(ns: str) -> list[int]:
    """Every live process whose mount namespace is ``ns``."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and mount_namespace(int(entry)) == ns]


class NodeNamespace:
    """The mount namespace kubelet, containerd and the pods run in: their mounts die with it, /run is
    its own, and the kernel settings kubelet would write machine-wide are bind-mounted there only."""

    def __init__(self, workdir: Path, registry: ProcessRegistry) -> None:
        views = workdir / "sysctl-view"
        views.mkdir(parents=True)
        binds = []
        for key, wanted in KUBELET_SYSCTLS.items():
            real = Path("/proc/sys", key)
            if real.read_text().strip() != wanted:
                view = views / key.replace("/", ".")
                view.write_text(wanted + "\n")
                binds.append(f"mount --bind {view} {real}")
        script = "; ".join(["set -e", "mount -t tmpfs -o mode=0755,size=64m node-run /run", *binds,
                            "exec sleep 2147483647"])
        self.holder = registry.add(ManagedProcess(
            name="node-namespace",
            argv=["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script],
            log_path=workdir / "logs" / "node-namespace.log"))
        self.ns = ""

    def start(self) -> None:
        self.holder.start()
        wait_until(lambda: Path(f"/proc/{self.holder.pid}/comm").read_text().strip() == "sleep", 10,
                   "node namespace", alive=self.holder.check_alive)
        ns = mount_namespace(self.holder.pid)
        assert ns is not None and ns != mount_namespace(os.getpid()), "no mount namespace of its own"
        self.ns = ns

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the node namespace (nsenter execs it: same pid)."""
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *argv]

    def members(self) -> list[int]:
        return pids_in_mount_namespace(self.ns) if self.ns else []


# Lowering oom_score_adj below 0 (kubelet asks -998 for a sandbox) needs it; a machine whose
# bounding set lacks it gets containerd's restrict_oom_score_adj (docs/deployment-tests.md).
CAP_SYS_RESOURCE = 24


def can_lower_oom_score_adj() -> bool:
    """True if CAP_SYS_RESOURCE is in this process's bounding set."""
    return bool(int(status_fields(os.getpid())["CapBnd"], 16) >> CAP_SYS_RESOURCE & 1)


CONTAINERD_CONFIG = """\
version = 3
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = {restrict_oom}
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


class Containerd:
    """containerd with its CRI plugin, configured for this host (cgroupfs, runc, overlayfs)."""

    def __init__(self, bin_dir: Path, workdir: Path, node: NodeNamespace, registry: ProcessRegistry,
                 sandbox_image: str) -> None:
        self.bin_dir = bin_dir
        self.node = node
        base = workdir / "containerd"
        base.mkdir(parents=True)
        self.socket = base / "containerd.sock"
        self.config = base / "config.toml"
        self.config.write_text(CONTAINERD_CONFIG.format(
            root=base / "root", state=base / "state", sock=self.socket, opt=base / "opt",
            sandbox=sandbox_image, cni_bin=CNI_BIN_DIR, cni_conf=base / "cni", runc=RUNC,
            restrict_oom=str(not can_lower_oom_score_adj()).lower()))
        env = {"PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "TMPDIR": str(workdir / "tmp")}
        (workdir / "tmp").mkdir(exist_ok=True)
        self.process = registry.add(ManagedProcess(
            name="containerd", argv=node.wrap([str(bin_dir / "containerd"), f"--config={self.config}"]),
            log_path=workdir / "logs" / "containerd.log", env=env))

    def start(self) -> float:
        self.process.start()
        return wait_until(lambda: self.ctr("version", check=False).returncode == 0, 60, "containerd",
                          interval_s=0.5, alive=self.process.check_alive)

    def ctr(self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """``ctr`` in the CRI namespace, run inside the node namespace."""
        argv = self.node.wrap([str(self.bin_dir / "ctr"), f"--address={self.socket}", "-n", K8S_NS, *args])
        return run(argv, timeout=timeout, check=check)

    def import_image(self, archive: Path) -> str:
        return self.ctr("images", "import", "--platform", "linux/amd64", str(archive), timeout=300).stdout

    def image_names(self) -> list[str]:
        return self.ctr("images", "ls", "-q").stdout.split()

    def tasks(self) -> dict[str, tuple[int, str]]:
        """Running tasks: container id -> (host pid, status)."""
        rows = [line.split() for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]]
        return {row[0]: (int(row[1]), row[2]) for row in rows}


class Kubelet:
    """kubelet for this host: cgroup v1 allowed, cgroupfs, no swap check, one static pod dir."""

    def __init__(self, bin_dir: Path, workdir: Path, node: NodeNamespace, registry: ProcessRegistry,
                 containerd: Containerd, node_name: str, kubeconfig: Path) -> None:
        self.root_dir = workdir / "kubelet"
        self.manifests = workdir / "manifests"
        self.pod_logs = workdir / "logs" / "pods"  # kept with the component logs on a failure
        for d in (self.root_dir, self.manifests, self.pod_logs):
            d.mkdir(parents=True)
        self.healthz_port = free_port()
        self.config = workdir / "kubelet-config.json"
        self.config.write_text(json.dumps(self._config(containerd), indent=2))
        argv = [str(bin_dir / "kubelet"), f"--config={self.config}", f"--root-dir={self.root_dir}",
                f"--cert-dir={self.root_dir / 'pki'}", f"--hostname-override={node_name}", "--v=2",
                f"--kubeconfig={kubeconfig}"]
        self.process = registry.add(ManagedProcess(
            name="kubelet", argv=node.wrap(argv), log_path=workdir / "logs" / "kubelet.log",
            env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}))

    def _config(self, containerd: Containerd) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This host: cgroup v1 (hybrid), no systemd as PID 1, no swap accounting wanted.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{containerd.socket}",
            "staticPodPath": str(self.manifests),
            "fileCheckFrequency": "2s",
            "podLogsDir": str(self.pod_logs),
            # Loopback only: healthz on 127.0.0.1, no kubelet API server, no read-only port.
            "enableServer": False,
            "address": "127.0.0.1",
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "resolvConf": "",
            # A shared CI disk fills up for reasons of its own; the test is not about eviction.
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }

    def start(self) -> float:
        self.process.start()
        return wait_until(lambda: http_get(self.healthz_port, "/healthz", 3)[0] == 200, 120, "kubelet /healthz",
                          interval_s=0.5, alive=self.process.check_alive)


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: the v1 ones (cpu, memory, ..., name=systemd) and,
    on a hybrid host, the unified v2 one (runc and kubelet create cgroups there too)."""
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [Path(fields[1]) for fields in mounts if fields[2] in ("cgroup", "cgroup2")]


def remove_cgroup_tree(name: str) -> list[str]:
    """rmdir ``/<name>`` and everything under it in every hierarchy, deepest first.

    Only empty cgroups can be removed (the kernel refuses one with tasks), so
    this cannot touch anything still running. Returns what could not be removed.
    """
    left = []
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / name
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except OSError as exc:
                left.append(f"{d}: {exc.strerror}")
    return left


def is_loopback(address: str) -> bool:
    """``127.0.0.1:80``, ``[::1]:80`` or ``127.0.0.1%lo:80`` -> True; ``*:80`` -> False."""
    host = address.rsplit(":", 1)[0].strip("[]").split("%", 1)[0]
    return host != "*" and ipaddress.ip_address(host).is_loopback


def tcp_listen_addresses(pids: Sequence[int]) -> dict[int, list[str]]:
    """The TCP addresses each process listens on (``ss``: every listening socket and its owners)."""
    found: dict[int, list[str]] = {}
    wanted = set(pids)
    for line in run(["ss", "-Hltnp"]).stdout.splitlines():
        for pid in {int(p) for p in re.findall(r"pid=(\d+)", line)} & wanted:
            found.setdefault(pid, []).append(line.split()[3])
    return found
