"""A real Kubernetes node on this machine: containerd (CRI) and kubelet.

Both are built from their Go modules (tests/e2e/build_components.sh) and run
as root, as on a control-plane node, but inside a mount namespace of their own
(the "node namespace", held open by one ``sleep`` process):

- every mount kubelet and containerd make (the pod's memory-backed emptyDir,
  overlay snapshots, kubelet's rshared root dir) lives and dies with that
  namespace, so a failed run leaves no mount behind on the shared machine;
- ``/run`` there is a private tmpfs: containerd's shim sockets and runc's
  state (fixed paths under /run/containerd) are the node's own;
- kubelet insists on six kernel settings and, unless told to fail instead,
  writes them machine-wide (``kernel.panic_on_oops=1`` among them). On a
  machine other jobs share, the three that differ from the running kernel are
  bind-mounted, in the node namespace only, from files holding the values
  kubelet wants: kubelet reads them and has nothing to change. Nothing under
  test depends on them.

Everything else is real: kubelet's CRI calls, containerd's CRI plugin and
snapshots, runc (Debian's), the cgroup v1 hierarchies of this host (kubelet's
``kubepods`` tree, removed again at the end if the run created it).

Nothing listens beyond loopback and UNIX sockets: containerd's gRPC/ttrpc
sockets are in the work dir, its CRI streaming server on 127.0.0.1, kubelet's
healthz on 127.0.0.1 and its API server off (``enableServer: false``).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import steps
from tests.support.kube.components import BUILD_SCRIPT, default_bin_dir
from tests.support.procs import ManagedProcess, ProcessRegistry, free_port, wait_until

NODE_COMPONENTS = ("kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "pause")
BUILD_TIMEOUT_S = 3600
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


class NodeComponentsMissingError(RuntimeError):
    """kubelet, containerd, its shim, ctr or pause is absent and could not be built."""


def ensure_node_components(allow_build: bool) -> tuple[Path, float]:
    """The directory holding the node binaries (built if missing) and the seconds it took."""
    bin_dir = default_bin_dir()
    started = time.monotonic()
    missing = [n for n in NODE_COMPONENTS if not os.access(bin_dir / n, os.X_OK)]
    if missing and (os.environ.get("E2E_BIN_DIR") or not allow_build):
        raise NodeComponentsMissingError(
            f"missing {', '.join(missing)} in {bin_dir}; run `make deploy-components`")
    if missing:
        env = {**os.environ, "E2E_COMPONENTS": " ".join(NODE_COMPONENTS)}
        result = subprocess.run([str(BUILD_SCRIPT)], env=env, timeout=BUILD_TIMEOUT_S, check=False,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise NodeComponentsMissingError(f"{BUILD_SCRIPT} failed:\n{result.stdout[-4000:]}")
    return bin_dir, time.monotonic() - started


def run(argv: Sequence[str | os.PathLike[str]], timeout: float = CLI_TIMEOUT_S, check: bool = True,
        **kw: object) -> subprocess.CompletedProcess[str]:
    return steps.run(argv, timeout, check, **kw)


def mount_namespace(pid: int) -> str | None:
    """``mnt:[inode]`` of a process, or None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_mount_namespace(ns: str) -> list[int]:
    """Every live process whose mount namespace is ``ns``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and mount_namespace(int(entry)) == ns:
            out.append(int(entry))
    return out


class NodeNamespace:
    """The mount namespace kubelet, containerd and the pods run in (see the module docstring)."""

    def __init__(self, workdir: Path, registry: ProcessRegistry) -> None:
        self._sysctl_dir = workdir / "sysctl-view"
        self._sysctl_dir.mkdir(parents=True)
        binds = []
        for key, wanted in KUBELET_SYSCTLS.items():
            real = Path("/proc/sys", key)
            if real.read_text().strip() != wanted:
                view = self._sysctl_dir / key.replace("/", ".")
                view.write_text(wanted + "\n")
                binds.append(f"mount --bind {view} {real}")
        self.faked_sysctls = [b.split()[-1] for b in binds]
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

# Why containerd runs with restrict_oom_score_adj: kubelet gives the pod sandbox
# oom_score_adj -998 and a system-node-critical container -997. Lowering a
# process's oom_score_adj below 0 needs CAP_SYS_RESOURCE, which some sandboxed
# CI machines (this one included) keep out of every process's bounding set even
# for root: runc's init then dies with "nsexec: failed to update
# /proc/self/oom_score_adj: Permission denied" ("can't get final child's PID
# from pipe: EOF" in kubelet's log). The option, made for rootless containerd,
# clamps the value to containerd's own (0 here); nothing else changes. It is
# set only where the capability is missing.
CAP_SYS_RESOURCE = 24


def can_lower_oom_score_adj() -> bool:
    """True if CAP_SYS_RESOURCE is in this process's bounding set."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


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
        out = self.ctr("images", "ls", "-q").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def tasks(self) -> dict[str, tuple[int, str]]:
        """Running tasks: container id -> (host pid, status)."""
        out = self.ctr("tasks", "ls").stdout.splitlines()[1:]
        tasks = {}
        for line in out:
            cid, pid, status = line.split()[:3]
            tasks[cid] = (int(pid), status)
        return tasks

    def stop(self) -> None:
        self.process.stop(grace_s=20)


@dataclass(frozen=True)
class KubeletPorts:
    healthz: int


class Kubelet:
    """kubelet for this host: cgroup v1 allowed, cgroupfs, no swap check, one static pod dir."""

    def __init__(self, bin_dir: Path, workdir: Path, node: NodeNamespace, registry: ProcessRegistry,
                 containerd: Containerd, node_name: str, kubeconfig: Path | None) -> None:
        self.root_dir = workdir / "kubelet"
        self.manifests = workdir / "manifests"
        self.pod_logs = workdir / "logs" / "pods"  # kept with the component logs on a failure
        for d in (self.root_dir, self.manifests, self.pod_logs):
            d.mkdir(parents=True)
        self.ports = KubeletPorts(healthz=free_port())
        self.node_name = node_name
        self.config = workdir / "kubelet-config.json"
        self.config.write_text(json.dumps(self._config(containerd), indent=2))
        argv = [str(bin_dir / "kubelet"), f"--config={self.config}", f"--root-dir={self.root_dir}",
                f"--cert-dir={self.root_dir / 'pki'}", f"--hostname-override={node_name}",
                "--v=2"]
        if kubeconfig is not None:
            argv.append(f"--kubeconfig={kubeconfig}")
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
            "healthzPort": self.ports.healthz,
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
        return wait_until(self.healthy, 120, "kubelet /healthz", interval_s=0.5, alive=self.process.check_alive)

    def healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports.healthz, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def stop(self) -> None:
        self.process.stop(grace_s=20)


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: the v1 ones (cpu, memory, ..., name=systemd) and,
    on a hybrid host, the unified v2 one (runc and kubelet create cgroups there too)."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            out.append(Path(fields[1]))
    return out


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


def _tcp_listeners() -> dict[int, str]:
    """socket inode -> "address:port" of every listening TCP socket (this network namespace)."""
    out = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                addr_hex, port_hex = fields[1].split(":")
                raw = bytes.fromhex(addr_hex)
                if v6:
                    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                    addr = str(ipaddress.IPv6Address(b"".join(words)))
                else:
                    addr = str(ipaddress.IPv4Address(raw[::-1]))
                port = int(port_hex, 16)
                out[int(fields[9])] = f"[{addr}]:{port}" if v6 else f"{addr}:{port}"
    return out


def is_loopback(address: str) -> bool:
    """``127.0.0.1:80`` or ``[::1]:80`` -> True."""
    host = address.rsplit(":", 1)[0].strip("[]")
    return ipaddress.ip_address(host).is_loopback


def tcp_listen_addresses(pids: Sequence[int]) -> dict[int, list[str]]:
    """The TCP addresses each process listens on (from its socket file descriptors)."""
    listeners = _tcp_listeners()
    found: dict[int, list[str]] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and int(target[8:-1]) in listeners:
                        found.setdefault(pid, []).append(listeners[int(target[8:-1])])
    return found
