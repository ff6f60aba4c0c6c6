"""The .deb under systemd next to a real kube-apiserver, as a control-plane host runs it
(what it proves: docs/deployment.md). The .deb is configured the way that guide says; etcd and
kube-apiserver (the binaries of `make e2e-components`, bind-mounted read-only) run inside the
booted container as root, as kubeadm runs them, as transient units.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.kmsclient import Client
from tests.support.kube.cluster import Cluster, EtcdServer, KubeApiServer, write_kubeconfig
from tests.support.kube.components import Components, ensure_components
from tests.support.kube.pki import ClusterPki, make_cluster_pki
from tests.support.kube.workload import create_secret, read_secret, stored_envelopes
from tests.support.packaging import BootedRoot, configure_local, deb_path, dpkg_install, step
from tests.support.procs import ProcessRegistry, free_port

pytestmark = [pytest.mark.packaging, pytest.mark.e2e]

BIN = "/opt/k8s/bin"  # where the component binaries are bind-mounted in the container
PKI = "/etc/kubernetes/pki"
ENC = "/etc/kubernetes/enc/encryption-config.yaml"
KEYRING = "/var/lib/kms-appliance/keyring.json"
PREFIX = b"k8s:enc:kms:v2:kms-appliance:"
# The apiserver learns a new key_id from a Status call; a good health check is
# cached for 20 s, so a rotation is adopted within about that much after a
# /healthz/kms-providers (tests/e2e/test_migrations.py measures the same).
ADOPTION_TIMEOUT_S = 90.0


class Host:
    """The booted container with etcd and kube-apiserver, seen from the host as a ``Cluster``.

    The container shares the host's network namespace, so kubectl, etcdctl and the workload
    helpers run here against the 127.0.0.1 ports the container's processes listen on; the
    ``Cluster``'s etcd and apiserver objects are only their clients (nothing is started here).
    """

    def __init__(self, booted: BootedRoot, components: Components, pki: ClusterPki, workdir: Path) -> None:
        self.booted = booted
        registry = ProcessRegistry()
        etcd = EtcdServer(components, workdir, registry)
        api = KubeApiServer(components, workdir, pki, etcd, registry)
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", f"https://127.0.0.1:{api.port}", pki)
        self.cluster = Cluster(components, workdir, registry, pki, etcd, api, kubeconfig)

    def start_etcd(self) -> None:
        url = self.cluster.etcd.endpoint
        peer = f"http://127.0.0.1:{free_port()}"
        self.booted.exec("systemd-run", "--unit=etcd", "--quiet", "--collect", "--", f"{BIN}/etcd", "--name=n",
                         "--data-dir=/var/lib/etcd", f"--listen-client-urls={url}",
                         f"--advertise-client-urls={url}", f"--listen-peer-urls={peer}",
                         f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=n={peer}",
                         "--log-level=warn", "--unsafe-no-fsync")
        self.wait("etcd", _answering(lambda: self.cluster.etcd.get_raw("/health-probe") is None))

    def start_apiserver(self) -> None:
        """kube-apiserver as root in the container (systemd-run's default user), as kubeadm runs it."""
        self.booted.exec(
            "systemd-run", "--unit=kube-apiserver", "--quiet", "--collect", "--", f"{BIN}/kube-apiserver",
            f"--etcd-servers={self.cluster.etcd.endpoint}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", f"--secure-port={self.cluster.apiserver.port}",
            f"--tls-cert-file={PKI}/apiserver.pem", f"--tls-private-key-file={PKI}/apiserver.key",
            f"--client-ca-file={PKI}/ca.pem", f"--service-account-key-file={PKI}/sa.pub",
            f"--service-account-signing-key-file={PKI}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=RBAC",
            "--endpoint-reconciler-type=none", "--profiling=false",
            f"--encryption-provider-config={ENC}", "--encryption-provider-config-automatic-reload=true")
        self.wait("kube-apiserver /readyz", _answering(lambda: self.cluster.apiserver.get("/readyz")[0] == 200),
                  timeout=180)

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
        self.booted.wait_until(what, predicate, timeout, units=("kube-apiserver", "etcd"))

    def stored_key_id(self, name: str, value: str) -> str:
        """The key_id of the KMS v2 envelope etcd holds for ``name`` (its plaintext absent)."""
        return stored_envelopes(self.cluster, PREFIX, {name: value})[name].key_id


def _plugin_key_id(booted: BootedRoot) -> str:
    with Client(booted.path("/run/kms-appliance/kms.sock")) as client:
        return str(client.status().key_id)


def _main_pid(booted: BootedRoot) -> str:
    return booted.exec("systemctl", "show", "-p", "MainPID", "--value", "kms-appliance").stdout.strip()


def _answering(probe: Callable[[], bool]) -> Callable[[], bool]:
    """``probe``, with a component that does not answer yet (it raises) counted as not ready."""
    def ready() -> bool:
        try:
            return probe()
        except Exception:
            return False
    return ready


def _sock_ready(booted: BootedRoot) -> Callable[[], bool]:
    return _answering(lambda: bool(_plugin_key_id(booted)))


def test_deb_under_systemd_with_kube_apiserver(root: Path, tmp_path: Path) -> None:
    components = ensure_components(allow_build=os.environ.get("E2E_BUILD", "1") != "0")
    booted = None
    try:
        with step("apiserver: install and configure the .deb"):
            dpkg_install(root, deb_path())
            # reload_interval is an hour so that only `systemctl reload` can explain a rotation.
            configure_local(root, free_port(), ('#reload_interval = "5s"', 'reload_interval = "3600s"'))
            pki = make_cluster_pki(root / PKI.lstrip("/"))

        with step("apiserver: boot, kms-appliance up"):
            booted = BootedRoot(root, tmp_path / "boot.log", binds=[f"{components.bin_dir}:{BIN}"])
            # Enabled by the package, so the boot starts it (the configuration is valid).
            booted.wait_until("the plugin's socket", _sock_ready(booted), timeout=90)
            booted.exec("install", "-d", "-m", "0700", "/etc/kubernetes/enc")
            booted.exec("kms-appliance", "encryption-config", "-o", ENC)
        host = Host(booted, components, pki, tmp_path)
        with step("apiserver: etcd and kube-apiserver ready in the container"):
            host.start_etcd()
            host.start_apiserver()

        # Root (the apiserver) is served; any other local user cannot reach the socket.
        unix_connect = ["perl", "-MIO::Socket::UNIX", "-e",
                        'exit(IO::Socket::UNIX->new(Peer => "/run/kms-appliance/kms.sock") ? 0 : 3)']
        assert booted.exec(*unix_connect, check=False).returncode == 0
        assert booted.exec("runuser", "-u", "nobody", "--", *unix_connect, check=False).returncode == 3

        with step("apiserver: Secrets round trip, KMS v2 envelopes in etcd"):
            key1 = _plugin_key_id(booted)
            values = {"before-rotation": create_secret(host.cluster, "before-rotation")}
            assert read_secret(host.cluster, "before-rotation") == values["before-rotation"]
            assert host.stored_key_id("before-rotation", values["before-rotation"]) == key1

        with step("apiserver: systemctl reload rotates, new writes carry the new key_id"):
            booted.exec("runuser", "-u", "kms-appliance", "--", "env", "TMPDIR=/tmp", "kms-appliance",
                        "keyring", "rotate", KEYRING)
            time.sleep(1)
            assert _plugin_key_id(booted) == key1, "rotated without a reload (reload_interval is 1h)"
            booted.exec("systemctl", "reload", "kms-appliance")
            booted.wait_until("the reloaded key", lambda: _plugin_key_id(booted) != key1, timeout=30)
            key2 = _plugin_key_id(booted)
            probes = itertools.count()

            def adopted() -> bool:
                n = next(probes)
                if n:
                    time.sleep(3)
                host.cluster.apiserver.get("/healthz/kms-providers")
                values[f"after-rotation-{n}"] = create_secret(host.cluster, f"after-rotation-{n}")
                return host.stored_key_id(f"after-rotation-{n}", values[f"after-rotation-{n}"]) == key2

            host.wait("the apiserver adopting the new key_id", adopted, timeout=ADOPTION_TIMEOUT_S)
            assert host.stored_key_id("before-rotation", values["before-rotation"]) == key1

        with step("apiserver: systemctl restart (plugin, then apiserver) keeps Secrets readable"):
            pid = _main_pid(booted)
            booted.exec("systemctl", "restart", "kms-appliance")
            booted.wait_until("the restarted plugin", _sock_ready(booted), timeout=60)
            assert _main_pid(booted) != pid
            assert _plugin_key_id(booted) == key2
            booted.exec("systemctl", "stop", "kube-apiserver")  # a fresh one has no cached DEKs: every read decrypts
            host.start_apiserver()
            for name, value in values.items():
                assert read_secret(host.cluster, name) == value, name

        journal = booted.exec("journalctl", "-u", "kms-appliance", "--no-pager", "-o", "cat").stdout
        for line in ("serving KMS v2 and v1beta1 on /run/kms-appliance/kms.sock",
                     f"key rotated: now {key2}", "stopping (", "stopped; socket /run/kms-appliance/kms.sock",
                     # and the audit trail (audit_log = "-"): the apiserver's calls and the rotation
                     '"event":"encrypt"', '"event":"decrypt"', '"event":"key_rotation","backend":"local"'):
            assert line in journal, f"{line!r} not in the journal:\n{journal[-3000:]}"
        print(f"{len(values)} Secrets, key_id {key1} -> {key2}; journal: {len(journal.splitlines())} lines")
    finally:
        if booted is not None:
            with step("apiserver: stop kube-apiserver, then etcd"):
                # In this order: an apiserver whose etcd is gone takes the whole
                # TimeoutStopSec (90 s) to stop.
                booted.exec("systemctl", "stop", "kube-apiserver", check=False, timeout=120)
                booted.exec("systemctl", "stop", "etcd", check=False, timeout=120)
            with step("apiserver: halt"):
                booted.stop(timeout=60)
