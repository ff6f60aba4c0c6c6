"""A real etcd + kube-apiserver pair on loopback, plus kubectl and etcdctl.

Why this shape: scenarios need to restart the apiserver (with or without a new
EncryptionConfiguration) while etcd keeps its data, and to read etcd raw to
see what was actually stored. So etcd and the apiserver are separate objects
with their own start/stop, and ``Cluster`` ties them to one tmp dir, one PKI
and one kubeconfig.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.kube.components import Components
from tests.support.kube.encryption import write_encryption_config
from tests.support.kube.pki import ClusterPki, make_cluster_pki
from tests.support.plugin import http_get
from tests.support.procs import ManagedProcess, ProcessRegistry, free_port, wait_until

ETCD_READY_TIMEOUT_S = 30.0
APISERVER_READY_TIMEOUT_S = 180.0
CLI_TIMEOUT_S = 60.0
KMS_HEALTH_CACHE_S = 20.0  # kube-apiserver's cache of a good KMS v2 health check


class EtcdServer:
    """Single-member etcd on 127.0.0.1 with its data in the test's tmp dir."""

    def __init__(self, components: Components, workdir: Path, registry: ProcessRegistry) -> None:
        self._etcdctl = components.path("etcdctl")
        self.client_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{free_port()}"
        argv = [str(components.path("etcd")), "--name=e2e", f"--data-dir={workdir / 'etcd-data'}",
                f"--listen-client-urls={self.endpoint}", f"--advertise-client-urls={self.endpoint}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}", "--log-level=warn",
                # Durability across a machine crash is not under test, and
                # fsync on a shared CI disk is the slowest part of a write.
                "--unsafe-no-fsync"]
        self.process = registry.add(ManagedProcess(name="etcd", argv=argv, log_path=workdir / "logs" / "etcd.log"))

    def start(self) -> float:
        """Start and wait for ``/health``; return seconds to healthy."""
        self.process.start()
        return wait_until(lambda: json.loads(http_get(self.client_port, "/health", 2)[1])["health"] == "true",
                          ETCD_READY_TIMEOUT_S, "etcd", alive=self.process.check_alive)

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self._etcdctl), f"--endpoints={self.endpoint}", *args], capture_output=True,
                              timeout=CLI_TIMEOUT_S, check=True)

    def get_raw(self, key: str) -> bytes | None:
        """The exact bytes stored under ``key``, or None if absent."""
        out = json.loads(self.etcdctl("get", key, "-w", "json").stdout)
        kvs = out.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]) if kvs else None

    def get_prefix_raw(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` with its exact stored bytes (one etcdctl call)."""
        out = json.loads(self.etcdctl("get", prefix, "--prefix", "-w", "json").stdout)
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in out.get("kvs") or []}


@dataclass
class ApiServerOptions:
    """What a scenario may vary between apiserver starts."""

    encryption_config: dict[str, Any]
    feature_gates: dict[str, bool] = field(default_factory=dict)
    # What "started" means: /readyz includes the KMS health check; a scenario
    # that starts the apiserver while the KMS is down waits for /livez instead.
    ready_path: str = "/readyz"


class KubeApiServer:
    """kube-apiserver on 127.0.0.1:<free port>, restartable with new options."""

    def __init__(self, components: Components, workdir: Path, pki: ClusterPki, etcd: EtcdServer,
                 registry: ProcessRegistry) -> None:
        self._components = components
        self._workdir = workdir
        self._pki = pki
        self._etcd = etcd
        self._registry = registry
        self.port = free_port()
        self.kubeconfig = write_kubeconfig(workdir / "kubeconfig", f"https://127.0.0.1:{self.port}", pki)
        self.encryption_config_path = workdir / "encryption-config.yaml"
        self.process: ManagedProcess | None = None
        self.options: ApiServerOptions | None = None

    def _argv(self, options: ApiServerOptions) -> list[str]:
        pki = self._pki
        argv = [
            str(self._components.path("kube-apiserver")), f"--etcd-servers={self._etcd.endpoint}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}", f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc", "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            # No nodes, no controllers: nothing to reconcile endpoints for.
            "--endpoint-reconciler-type=none", "--profiling=false",
            f"--encryption-provider-config={self.encryption_config_path}",
            "--encryption-provider-config-automatic-reload=true", "--v=2",
        ]
        if options.feature_gates:
            gates = ",".join(f"{k}={str(v).lower()}" for k, v in options.feature_gates.items())
            argv.append(f"--feature-gates={gates}")
        return argv

    def start(self, options: ApiServerOptions) -> float:
        """Write the EncryptionConfiguration, start, wait for ``/readyz``;
        return seconds from exec to ready."""
        if self.process is not None and self.process.running:
            raise RuntimeError("kube-apiserver already running")
        self._write_encryption_config(options)
        self.options = options
        argv = self._argv(options)
        if self.process is None:
            log = self._workdir / "logs" / "kube-apiserver.log"
            self.process = self._registry.add(ManagedProcess(name="kube-apiserver", argv=argv, log_path=log))
        else:
            self.process.argv = argv
        self.process.start()
        return wait_until(lambda: self.get(options.ready_path)[0] == 200, APISERVER_READY_TIMEOUT_S,
                          f"kube-apiserver {options.ready_path}", interval_s=0.5, alive=self.process.check_alive)

    def _write_encryption_config(self, options: ApiServerOptions) -> None:
        write_encryption_config(self.encryption_config_path, options.encryption_config)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self, options: ApiServerOptions | None = None) -> float:
        """Stop gracefully and start again (same etcd, same port, same PKI)."""
        self.stop()
        new = options or self.options
        assert new is not None
        return self.start(new)

    def connect(self, timeout_s: float = 10.0) -> http.client.HTTPSConnection:
        """A keep-alive HTTPS connection as the admin user (for bulk requests)."""
        ctx = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        ctx.load_cert_chain(str(self._pki.admin_cert), str(self._pki.admin_key))
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=timeout_s)

    def outlive_kms_health_cache(self) -> None:
        """Sleep past the 20 s for which the apiserver caches a good KMS v2 health check: its next
        /healthz runs Status on its own connection (how it reaches a restarted plugin, and learns
        a new key_id sooner than its 60 s poll)."""
        time.sleep(KMS_HEALTH_CACHE_S + 1)

    def kms_healthy(self) -> bool:
        """The apiserver's KMS providers answer healthy (past its 20 s cache, by a fresh Status)."""
        status, body = self.get("/healthz/kms-providers")
        return status == 200 and body.strip() == "ok"

    def get(self, path: str, timeout_s: float = 10.0) -> tuple[int, str]:
        """GET ``path`` as the admin user; return (status, body text)."""
        conn = self.connect(timeout_s)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()


@dataclass
class Cluster:
    """etcd + kube-apiserver for one test."""

    components: Components
    workdir: Path
    registry: ProcessRegistry
    pki: ClusterPki
    etcd: EtcdServer
    apiserver: KubeApiServer

    @property
    def kubeconfig(self) -> Path:
        return self.apiserver.kubeconfig

    def kubectl(self, *args: str, check: bool = True,
                input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl with the admin kubeconfig; raise with its stderr on failure."""
        result = subprocess.run([str(self.components.path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
                                capture_output=True, text=True, input=input_text, timeout=CLI_TIMEOUT_S, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def secret_key(self, name: str, namespace: str = "default") -> str:
        return f"/registry/secrets/{namespace}/{name}"


def write_kubeconfig(path: Path, server: str, pki: ClusterPki) -> Path:
    """An admin kubeconfig (JSON is valid YAML) with the CA embedded."""
    ca = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    user = {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "e2e-admin", "user": user}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e-admin"}}],
        "current-context": "e2e",
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)
    return path


def new_cluster(components: Components, workdir: Path, registry: ProcessRegistry,
                apiserver: Callable[..., KubeApiServer] = KubeApiServer) -> Cluster:
    """Make the PKI, start etcd, and prepare (not start) the apiserver (made by ``apiserver``)."""
    pki = make_cluster_pki(workdir / "pki")
    etcd = EtcdServer(components, workdir, registry)
    etcd.start()
    return Cluster(components, workdir, registry, pki, etcd, apiserver(components, workdir, pki, etcd, registry))
