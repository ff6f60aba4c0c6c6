"""The static pod under a real kubelet, next to a real kube-apiserver, deployed as
docs/deployment.md section 3 says; what each step proves and why the node is set up
so: docs/deployment-tests.md. At the end every process the run started is gone, the
node's mount namespace is empty and no port stays open, or the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support import procs
from tests.support.kmsclient import round_trip
from tests.support.kube.cluster import ApiServerOptions, Cluster, KubeApiServer, new_cluster
from tests.support.kube.components import Components, ensure_components
from tests.support.kube.workload import create_secret, read_secret, stored_envelopes
from tests.support.plugin import http_get
from tests.support.procs import ProcessRegistry, free_port, wait_until
from tests.support.steps import NONROOT, REPO, VERSION, nonroot_dirs, run

from . import node
from .conftest import FACTS, step
from .node import Containerd, Kubelet, NodeNamespace

pytestmark = [pytest.mark.deploy]

APPLIANCE = Path(os.environ.get("DEPLOY_APPLIANCE_CMD") or REPO / "dist" / "kms-appliance")
IMAGE_ARCHIVE = Path(os.environ.get("DEPLOY_IMAGE_ARCHIVE") or REPO / "dist" / f"kms-appliance_{VERSION}_oci.tar")
IMAGE_REF = f"localhost/kms-appliance:{VERSION}"
STATE_DIR = Path("/var/lib/kms-appliance")  # the static pod's state hostPath (docs/deployment.md, step 2)
STATE_MARK = ".kms-deploy-test"
NODE_NAME = "kms-deploy-node"
POD = "kms-appliance"
MIRROR = f"{POD}-{NODE_NAME}"
PREFIX = b"k8s:enc:kms:v2:kms-appliance:"
# Image unpack, the binary's own unpack into its tmpfs and start, on 2 shared cores.
POD_START_TIMEOUT_S = 240.0
# Liveness: 3 failures 10 s apart, then the restart and a new start with 5 s initial delay.
LIVENESS_RESTART_TIMEOUT_S = 180.0
# A rotation reaches the apiserver with its next KMS Status (health checks are cached 20 s).
ADOPTION_TIMEOUT_S = 120.0


class Paths:
    """The host side of the deployment (every path short: UNIX socket names are <108 bytes)."""

    def __init__(self, work: Path) -> None:
        self.work, self.etc, self.run, self.enc = work, work / "etc", work / "run", work / "enc"
        self.config, self.socket = self.etc / "config.toml", self.run / "kms.sock"
        self.keyring, self.user_tmp = STATE_DIR / "keyring.json", work / "tmp-65532"


def appliance(*args: str, user: int | None = None, tmp: Path | None = None) -> str:
    """The release binary, as root or (``user``) as the pod's uid via setpriv."""
    argv = [str(APPLIANCE), *args]
    env = dict(os.environ)
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        env["TMPDIR"] = str(tmp)
    return run(argv, env=env, timeout=120).stdout


def prepare_host(paths: Paths, http_port: int) -> None:
    """docs/deployment.md section 3, steps 2 and 3, with this run's socket directory and port."""
    paths.work.chmod(0o755)
    paths.etc.mkdir(mode=0o755)
    paths.enc.mkdir(mode=0o700)
    nonroot_dirs(paths.run, paths.user_tmp)
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    os.chown(STATE_DIR, NONROOT, NONROOT)
    (STATE_DIR / STATE_MARK).touch()
    shipped = (REPO / "packaging" / "config.toml").read_text()
    edited = (shipped.replace('backend = "akeyless"', 'backend = "local"')
              .replace('#socket = "/run/kms-appliance/kms.sock"', f'socket = "{paths.socket}"')
              .replace('#http_listen = "127.0.0.1:8787"', f'http_listen = "127.0.0.1:{http_port}"')
              .replace('#reload_interval = "5s"', 'reload_interval = "1s"'))
    assert edited.count(str(paths.socket)) == 1 and f":{http_port}" in edited, "config.toml lines moved"
    paths.config.write_text(edited)
    os.chown(paths.config, 0, NONROOT)
    paths.config.chmod(0o640)
    appliance("keyring", "init", str(paths.keyring), user=NONROOT, tmp=paths.user_tmp)


def claim_state_dir() -> bool:
    """Use the host's /var/lib/kms-appliance; True if this run created it (and so removes it).

    A directory left by an earlier run of this test (its mark file) is reused;
    anything else is someone's real state and the test refuses to touch it.
    """
    if not STATE_DIR.exists():
        return True
    entries = {p.name for p in STATE_DIR.iterdir()}
    if STATE_MARK in entries:
        shutil.rmtree(STATE_DIR)
        return True
    if entries:
        pytest.fail(f"{STATE_DIR} exists and is not this test's: refusing to use it")
    return False


class FileConfigApiServer(KubeApiServer):
    """kube-apiserver on the EncryptionConfiguration file exactly as the generator wrote it."""

    def __init__(self, *args: Any, encryption_config: Path, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.encryption_config_path = encryption_config
        # Registered now, before the kubelet, so that stop_all (reverse order) stops the kubelet
        # first: with a kubelet still connected, kube-apiserver outlived the 15 s stop grace.
        self.process = self._registry.add(procs.ManagedProcess(
            name="kube-apiserver", argv=[], log_path=self._workdir / "logs" / "kube-apiserver.log"))

    def _write_encryption_config(self, options: ApiServerOptions) -> None:
        """The generator's file is the one under test: start() must not rewrite it."""


def mirror_pod(cluster: Cluster) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", "pod", "-n", "kube-system", MIRROR, "-o", "json").stdout))


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def pod_ready(cluster: Cluster) -> bool:
    pod = mirror_pod(cluster)
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and bool(container_status(pod).get("ready"))


def mounts_of(pid: int) -> dict[str, tuple[str, str, str]]:
    """mount point -> (per-mount options, fs type, super options), from /proc/<pid>/mountinfo."""
    table = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, _source, super_opts = right.split(maxsplit=2)
        table[fields[4]] = (fields[5], fstype, super_opts)
    return table


def stored_key_id(cluster: Cluster, name: str, value: str) -> str:
    """The key_id of the KMS v2 envelope etcd holds for the Secret (its plaintext absent)."""
    return stored_envelopes(cluster, PREFIX, {name: value})[name].key_id


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Deployment:
    paths: Paths
    http_port: int
    components: Components
    node_bin: Path
    registry: ProcessRegistry = field(default_factory=ProcessRegistry)
    node: NodeNamespace | None = None
    containerd: Containerd | None = None
    kubelet: Kubelet | None = None
    cluster: Cluster | None = None
    state_dir_ours: bool = False
    kubepods_ours: bool = False


def pause_image(pause: Path, ref: str, work: Path) -> Path:
    """The pause binary alone as an OCI archive named ``ref`` (no registry is reachable): the
    pod sandbox image. buildah with a store in the work dir, removed with it."""
    buildah = ["buildah", "--root", str(work / "buildah"), "--runroot", str(work / "buildah-run"),
               "--storage-driver", "vfs"]
    box = run([*buildah, "from", "scratch"]).stdout.strip()
    run([*buildah, "copy", box, str(pause), "/pause"])
    run([*buildah, "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", box])
    run([*buildah, "commit", "-q", "--rm", box, ref])
    archive = work / "pause_oci.tar"
    run([*buildah, "push", "-q", ref, f"oci-archive:{archive}:{ref}"])
    return archive


def start_node(d: Deployment) -> None:
    work = d.paths.work
    pause_ref = f"localhost/kms-deploy/pause:{d.components.kubernetes_version}"
    pause_archive = pause_image(d.node_bin / "pause", pause_ref, work)
    d.node = NodeNamespace(work, d.registry)
    d.node.start()
    d.containerd = Containerd(d.node_bin, work, d.node, d.registry, sandbox_image=pause_ref)
    with step("containerd start to serving"):
        d.containerd.start()
    with step("ctr import: pause + kms-appliance OCI archives"):
        d.containerd.import_image(pause_archive)
        d.containerd.import_image(IMAGE_ARCHIVE)
    names = d.containerd.image_names()
    assert pause_ref in names and IMAGE_REF in names, names


def memory_cgroup(pid: int) -> Path:
    """The v1 memory cgroup directory of a process."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    raise AssertionError(f"pid {pid}: no memory cgroup")


def container_pid(d: Deployment, cluster: Cluster) -> tuple[str, int]:
    """The running kms-appliance container: (containerd id, host pid of its init)."""
    assert d.containerd is not None
    cid = str(container_status(mirror_pod(cluster))["containerID"]).removeprefix("containerd://")
    pid, state = d.containerd.tasks()[cid]
    assert state == "RUNNING", state
    return cid, pid


def check_container_runtime(d: Deployment, cluster: Cluster) -> str:
    """The container as kubelet and containerd made it; returns its id."""
    cid, pid = container_pid(d, cluster)
    st = procs.status_fields(pid)
    assert st["Uid"].split() == [str(NONROOT)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(NONROOT)] * 4, st["Gid"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, (st["CapEff"], st["CapPrm"])
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", (st["NoNewPrivs"], st["Seccomp"])
    mounts = mounts_of(pid)
    assert "ro" in mounts["/"][0].split(","), mounts["/"]
    opts, fstype, super_opts = mounts["/tmp"]
    assert fstype == "tmpfs" and "noexec" not in opts.split(","), mounts["/tmp"]
    assert "size=262144k" in super_opts, super_opts  # the emptyDir's sizeLimit, 256Mi
    assert "ro" in mounts[str(d.paths.etc)][0].split(","), mounts[str(d.paths.etc)]
    assert "ro" not in mounts[str(d.paths.run)][0].split(","), mounts[str(d.paths.run)]
    tmp = os.statvfs(f"/proc/{pid}/root/tmp")
    tmp_used = (tmp.f_blocks - tmp.f_bfree) * tmp.f_frsize
    assert tmp_used > 50 * 2**20, f"only {tmp_used / 2**20:.0f} MiB in the unpack tmpfs"
    # The unpacked binary lives in memory charged to the container: the reason for
    # the 192Mi request and 384Mi limit (manifests.py).
    cgroup = memory_cgroup(pid)
    limit = int((cgroup / "memory.limit_in_bytes").read_text())
    usage = int((cgroup / "memory.usage_in_bytes").read_text())
    assert limit == 384 * 2**20, limit
    assert usage >= tmp_used, (usage, tmp_used)
    FACTS.append(f"unpack tmpfs {tmp_used / 2**20:.0f} MiB; container memory {usage / 2**20:.0f} MiB "
                 f"of a {limit / 2**20:.0f} MiB limit (cgroup {cgroup.relative_to('/sys/fs/cgroup')})")
    return cid


def liveness_events(cluster: Cluster) -> list[str]:
    out = cluster.kubectl("get", "events", "-n", "kube-system", "--field-selector",
                          f"involvedObject.name={MIRROR}", "-o", "json").stdout
    return [f"{e.get('reason')}: {e.get('message', '')}" for e in json.loads(out)["items"]]


def container_log_tail(d: Deployment, lines: int = 5) -> str:
    """The last lines kubelet logged for the newest kms-appliance container."""
    assert d.kubelet is not None
    logs = sorted(d.kubelet.pod_logs.glob(f"kube-system_{MIRROR}_*/{POD}/*.log"), key=lambda p: p.stat().st_mtime)
    return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:]) if logs else "(no log)"


def ready_again(d: Deployment, cluster: Cluster, restarts: int) -> bool:
    """True once the restarted container is Ready; a crash of the new container fails at once."""
    status = container_status(mirror_pod(cluster))
    waiting = (status.get("state") or {}).get("waiting") or {}
    if int(status.get("restartCount", 0)) > restarts or waiting.get("reason") == "CrashLoopBackOff":
        crash = (f"the restarted container crashed ({status.get('lastState')}); "
                 f"its log ends:\n{container_log_tail(d)}")
        FACTS.append(crash)
        raise AssertionError(crash)
    return pod_ready(cluster)


def wait_restarted(d: Deployment, cluster: Cluster, old_cid: str, restarts: int, why: str) -> dict[str, Any]:
    """Wait for kubelet's restart number ``restarts``, then for the new container to be
    Ready and to serve on the socket; return the container status."""
    started = time.monotonic()

    def restarted() -> bool:
        return int(container_status(mirror_pod(cluster)).get("restartCount", 0)) >= restarts

    wait_until(restarted, LIVENESS_RESTART_TIMEOUT_S, f"kubelet restarting the container ({why})", interval_s=2)
    FACTS.append(f"{why}: kubelet restarted the container {time.monotonic() - started:.0f} s later")
    assert procs.eventually(partial(ready_again, d, cluster, restarts), POD_START_TIMEOUT_S, 2), \
        f"pod not Ready {POD_START_TIMEOUT_S:.0f} s after the restart"
    status = container_status(mirror_pod(cluster))
    assert status["containerID"].removeprefix("containerd://") != old_cid
    wait_until(lambda: bool(round_trip(d.paths.socket, timeout=3)), 60, "plugin Status ok on the new socket")
    return status


def socket_deleted(d: Deployment, cluster: Cluster, old_cid: str) -> None:
    """Delete the socket: /livez fails, kubelet's liveness probe restarts the container."""
    assert d.paths.socket.is_socket()
    d.paths.socket.unlink()
    wait_until(lambda: http_get(d.http_port, "/livez", 3)[0] == 503, 30, "/livez failing without the socket")
    status = wait_restarted(d, cluster, old_cid, 1, "socket deleted")
    events = liveness_events(cluster)
    assert any("Liveness probe failed" in e and "503" in e for e in events), events
    assert any("failed liveness probe, will be restarted" in e for e in events), events
    FACTS.append(f"socket deleted: last state {status['lastState'].get('terminated')}")


def wedged(d: Deployment, cluster: Cluster, restarts: int) -> None:
    """SIGSTOP every process of the container: probes time out, kubelet kills it and makes
    restart number ``restarts``."""
    old_cid, pid = container_pid(d, cluster)
    members = [int(p) for p in (memory_cgroup(pid) / "cgroup.procs").read_text().split()]
    assert pid in members, members
    for p in members:
        os.kill(p, signal.SIGSTOP)
    wait_until(lambda: http_get(d.http_port, "/livez", 3)[0] == 0, 30, "/livez not answering while stopped")
    status = wait_restarted(d, cluster, old_cid, restarts, "plugin wedged (SIGSTOP)")
    terminated = status["lastState"].get("terminated") or {}
    assert terminated.get("exitCode") == 137, terminated  # SIGKILLed after the grace period
    events = liveness_events(cluster)
    assert any("Liveness probe failed" in e and "deadline exceeded" in e for e in events), events


def rotation(d: Deployment, cluster: Cluster, before: str, kept: dict[str, str]) -> str:
    """Rotate the keyring on the host; plugin and apiserver take the new key_id."""
    appliance("keyring", "rotate", str(d.paths.keyring), user=NONROOT, tmp=d.paths.user_tmp)
    wait_until(lambda: round_trip(d.paths.socket, timeout=3) != before, 30, "plugin reloading the rotated keyring")
    after = round_trip(d.paths.socket, timeout=3)
    probe = iter(range(1000))

    def adopted() -> bool:
        name = f"after-rotation-{next(probe)}"
        value = create_secret(cluster, name)
        kept[name] = value
        return stored_key_id(cluster, name, value) == after

    wait_until(adopted, ADOPTION_TIMEOUT_S, "apiserver writing under the rotated key", interval_s=3)
    return after


def teardown(d: Deployment) -> list[str]:
    """Stop everything the run started and say what, if anything, is left."""
    problems: list[str] = []
    manifest = d.kubelet.manifests / f"{POD}.yaml" if d.kubelet else None
    if manifest is not None and manifest.exists() and d.kubelet is not None and d.kubelet.process.running:
        manifest.unlink()
        with contextlib.suppress(Exception), step("kubelet stopping the pod after the manifest is removed"):
            assert d.containerd is not None
            wait_until(lambda: not d.containerd.tasks(), 90, "pod tasks gone", interval_s=1)  # type: ignore[union-attr]
    ns = d.node.ns if d.node else ""
    try:
        d.registry.stop_all()
    except procs.LeftoverProcessError as exc:
        problems.append(str(exc))
    if ns:
        # containerd's shims outlive containerd by design (and a pod kubelet did not
        # stop keeps its processes): whatever is still in the node namespace is ours.
        outlived = node.pids_in_mount_namespace(ns)
        if outlived:
            FACTS.append(f"{len(outlived)} processes outlived kubelet and containerd in the node namespace "
                         f"({', '.join(sorted({comm(p) for p in outlived}))}); killed")
        for pid in outlived:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not node.pids_in_mount_namespace(ns), 20, "node namespace empty")
        left = node.pids_in_mount_namespace(ns)
        if left:
            problems.append(f"processes left in the node namespace: {left}")
    for p in d.registry.processes:
        if p.running:
            problems.append(f"{p.name} (pid {p.pid}) still running")
    ports = [d.http_port]
    if d.kubelet:
        ports.append(d.kubelet.healthz_port)
    if d.cluster:
        ports += [d.cluster.apiserver.port, d.cluster.etcd.client_port]
    problems += [f"127.0.0.1:{port} still open" for port in ports if not port_closed(port)]
    if d.kubepods_ours:
        problems += node.remove_cgroup_tree("kubepods")
        problems += [f"{h}/kubepods left" for h in node.cgroup_hierarchies() if (h / "kubepods").exists()]
    if d.state_dir_ours:
        shutil.rmtree(STATE_DIR, ignore_errors=True)
    return problems


def bring_up(d: Deployment) -> tuple[Cluster, str]:
    """docs/deployment.md section 3 on this node; returns the cluster and the container id."""
    paths = d.paths
    prepare_host(paths, d.http_port)
    staging = paths.work / "staging"
    staging.mkdir()
    with step("generate: static-pod and encryption-config"):
        appliance("static-pod", f"--config={paths.config}", f"--image={IMAGE_REF}",
                  f"--output={staging / f'{POD}.yaml'}")
        appliance("encryption-config", f"--config={paths.config}",
                  f"--output={paths.enc / 'encryption-config.yaml'}")
    assert f"unix://{paths.socket}" in (paths.enc / "encryption-config.yaml").read_text()
    start_node(d)
    api = partial(FileConfigApiServer, encryption_config=paths.enc / "encryption-config.yaml")
    d.cluster = cluster = new_cluster(d.components, paths.work, d.registry, api)  # the apiserver starts below
    assert d.node is not None and d.containerd is not None
    d.kubelet = Kubelet(d.node_bin, paths.work, d.node, d.registry, d.containerd, NODE_NAME, cluster.kubeconfig)
    with step("kubelet start to healthz"):
        d.kubelet.start()
    shutil.move(staging / f"{POD}.yaml", d.kubelet.manifests / f"{POD}.yaml")
    with step("manifest in staticPodPath to plugin Status ok"):
        wait_until(lambda: bool(round_trip(paths.socket, timeout=3)), POD_START_TIMEOUT_S, "the static pod's plugin",
                   interval_s=1, alive=d.kubelet.process.check_alive)
    with step("kube-apiserver start to /readyz (KMS via the pod's socket)"):
        cluster.apiserver.start(ApiServerOptions(encryption_config={}))
    with step("mirror pod Ready (readiness probe)"):
        wait_until(lambda: pod_ready(cluster), POD_START_TIMEOUT_S, "mirror pod Ready", interval_s=2)
    pod = mirror_pod(cluster)
    assert pod["metadata"]["annotations"].get("kubernetes.io/config.source") == "file"
    assert container_status(pod)["restartCount"] == 0
    cid = check_container_runtime(d, cluster)
    check_loopback_only(d)
    return cluster, cid


def check_loopback_only(d: Deployment) -> None:
    """Every TCP listener of every process the run started (the pod's included) is on loopback."""
    assert d.node is not None
    pids = [*d.node.members(), *(p.pid for p in d.registry.processes if p.running)]
    listening = node.tcp_listen_addresses(pids)
    addresses = sorted({a for found in listening.values() for a in found})
    assert addresses and all(node.is_loopback(a) for a in addresses), listening
    FACTS.append(f"TCP listeners of the run's {len(pids)} processes: {', '.join(addresses)}")


class LeftoversError(RuntimeError):
    """Something the run started or made outlived its teardown."""


@contextlib.contextmanager
def deployed() -> Iterator[tuple[Deployment, Cluster, str]]:
    """A node running the static pod next to kube-apiserver; on exit everything is
    stopped and the run fails if any process, port, mount, cgroup or state dir is left."""
    allow_build = os.environ.get("E2E_BUILD", "1") != "0"
    with step("components: kube-apiserver, etcd (build/check)"):
        components = ensure_components(allow_build=allow_build)
    with step("components: kubelet, containerd, shim, ctr, pause (build/check)"):
        node_bin = ensure_components(allow_build, node.NODE_COMPONENTS).bin_dir
    for artefact in (APPLIANCE, IMAGE_ARCHIVE):
        assert artefact.exists(), f"{artefact} missing: `make image` (make test-deploy builds it)"
    work = Path(tempfile.mkdtemp(prefix="kmsdeploy-", dir="/var/tmp"))
    d = Deployment(Paths(work), free_port(), components, node_bin)
    d.state_dir_ours = claim_state_dir()
    d.kubepods_ours = not any((h / "kubepods").exists() for h in node.cgroup_hierarchies())
    problems: list[str] = []
    passed = False
    try:
        cluster, cid = bring_up(d)
        yield d, cluster, cid
        passed = True
    finally:
        with step("teardown"):
            problems = teardown(d)
        host_mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(work) in line]
        problems += [f"mount left on the host: {line}" for line in host_mounts]
        keep_logs(work, passed and not problems)
        shutil.rmtree(work, ignore_errors=True)
        if problems:  # raised even when the test body failed: leftovers are never hidden
            raise LeftoversError(problems)


def keep_logs(work: Path, passed: bool) -> None:
    """Copy the component and pod logs out of the work dir on a failure (or into DEPLOY_KEEP_LOGS)."""
    logs = work / "logs"
    target = os.environ.get("DEPLOY_KEEP_LOGS")
    if not logs.exists() or (passed and not target):
        return
    keep = Path(target or tempfile.gettempdir()) / f"{work.name}-logs"
    shutil.copytree(logs, keep, dirs_exist_ok=True)
    print(f"component logs kept in {keep}")


def test_static_pod_under_real_kubelet() -> None:
    """Secrets round trip through the pod; deleting the socket gets it restarted by its
    liveness probe; a keyring rotation then reaches new writes (the apiserver reconnected
    after that graceful stop); old Secrets stay readable. Then every process of the container
    is stopped (SIGSTOP): /livez times out, kubelet kills the container (SIGKILL after the
    grace period) and the new one serves the same key. The killed start's unpack stays in the
    pod's emptyDir; the new start unpacks beside it and removes it (kms_appliance/unpack.py)."""
    with deployed() as (d, cluster, cid):
        key_id = round_trip(d.paths.socket, timeout=3)
        kept = {"first": create_secret(cluster, "first")}
        assert read_secret(cluster, "first") == kept["first"]
        assert stored_key_id(cluster, "first", kept["first"]) == key_id

        with step("socket deleted to container restarted by liveness"):
            socket_deleted(d, cluster, cid)
        assert round_trip(d.paths.socket, timeout=3) == key_id
        kept["after-restart"] = create_secret(cluster, "after-restart")
        for name, value in kept.items():
            assert read_secret(cluster, name) == value

        with step("keyring rotate to new key_id in etcd"):
            new_key = rotation(d, cluster, key_id, kept)
        assert new_key != key_id
        for name, value in kept.items():
            assert read_secret(cluster, name) == value
        assert stored_key_id(cluster, "first", kept["first"]) == key_id

        with step("plugin wedged (SIGSTOP) to container restarted by liveness"):
            wedged(d, cluster, restarts=2)
        assert round_trip(d.paths.socket, timeout=3) == new_key
        for name, value in kept.items():
            assert read_secret(cluster, name) == value
        _, pid = container_pid(d, cluster)
        left = sorted(n for n in os.listdir(f"/proc/{pid}/root/tmp") if n.startswith(("staticx-", "_MEI")))
        assert len(left) == 2, left  # the new start's own two: the killed start's were removed
