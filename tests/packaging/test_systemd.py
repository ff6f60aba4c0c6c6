"""The systemd unit: static checks, then the real service under systemd, as a control-plane host
runs it (what docs/deployment.md says of it): the .deb installed in a booted bookworm root and
configured the way that guide says, hardening and all, KMS v2 and v1 round trips from the host
through its socket; etcd and kube-apiserver (the binaries of `make e2e-components`, bind-mounted
read-only) in the same container as root, as kubeadm runs them, as transient units; and an upgrade
that restarts it on the new version.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from kms_appliance.config import AkeylessSettings
from tests.support.kmsclient import round_trip
from tests.support.kube.cluster import Cluster, EtcdServer, KubeApiServer
from tests.support.kube.components import Components, ensure_components
from tests.support.kube.pki import ClusterPki, make_cluster_pki
from tests.support.kube.workload import create_secret, read_secret, stored_envelopes
from tests.support.packaging import BootedRoot, configure_local, deb_path, dpkg_install, nspawn, step
from tests.support.procs import ProcessRegistry, free_port, parse_status
from tests.support.steps import REPO, VERSION, connects, run

pytestmark = pytest.mark.packaging

UNIT = REPO / "packaging/systemd/kms-appliance.service"
DEPLOYMENT = REPO / "docs/deployment.md"
# As shipped: no IP allow list (the default URL, the Akeyless SaaS API, has no
# fixed addresses), which systemd-analyze counts 0.2 of exposure; with the
# documented egress drop-in it counts 0.1.
MAX_EXPOSURE = 1.1
MAX_EXPOSURE_PINNED = 1.0
BIN = "/opt/k8s/bin"  # where the component binaries are bind-mounted in the container
PKI = "/etc/kubernetes/pki"
ENC = "/etc/kubernetes/enc/encryption-config.yaml"
KEYRING = "/var/lib/kms-appliance/keyring.json"
PREFIX = b"k8s:enc:kms:v2:kms-appliance:"
# The apiserver learns a new key_id from a Status call; a good health check is
# cached for 20 s, so a rotation is adopted within about that much after a
# /healthz/kms-providers (tests/e2e/test_migrations.py measures the same).
ADOPTION_TIMEOUT_S = 90.0


def exposure(unit: Path) -> tuple[float, str]:
    """systemd-analyze's overall exposure level for a unit file, and its whole report."""
    proc = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit], check=False)
    text = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text)
    assert match, text[-2000:]
    return float(match.group(1)), text


def test_default_url_is_not_filtered() -> None:
    """A fresh install reaches the default Akeyless SaaS URL: no IP filter in the unit."""
    assert AkeylessSettings().url == "https://api.akeyless.io"
    assert not re.search(r"^IPAddress(Allow|Deny)=", UNIT.read_text(), re.M)


def test_documented_egress_drop_in(tmp_path: Path) -> None:
    """The drop-in docs/deployment.md gives for a Gateway is valid and lowers the exposure."""
    block = re.search(r"# \[Service\]\n((?:\s+# IPAddress\S+=.*\n)+)", DEPLOYMENT.read_text())
    assert block, "docs/deployment.md lost the egress drop-in"
    lines = [line.strip().removeprefix("# ") for line in block.group(1).splitlines()]
    assert lines[0] == "IPAddressDeny=any" and lines[1].startswith("IPAddressAllow=localhost ")
    pinned = tmp_path / "kms-appliance.service"
    pinned.write_text(UNIT.read_text().replace("NoNewPrivileges=yes", "\n".join([*lines, "NoNewPrivileges=yes"])))
    score, text = exposure(pinned)
    assert "IP address allow list with non-localhost entries" in text, text[-2000:]
    print(f"systemd-analyze security with the egress drop-in: {score}")
    assert score <= MAX_EXPOSURE_PINNED


def test_security_score_and_a_weaker_unit_fails(tmp_path: Path) -> None:
    """The score parser and threshold really discriminate: drop the hardening, it fails."""
    score, _ = exposure(UNIT)
    print(f"systemd-analyze security: {score}")
    assert score <= MAX_EXPOSURE
    weak = tmp_path / "kms-appliance.service"
    weak.write_text("\n".join(line for line in UNIT.read_text().splitlines()
                              if not line.startswith(("SystemCallFilter", "CapabilityBoundingSet",
                                                      "PrivateUsers", "ProtectSystem"))))
    assert exposure(weak)[0] > MAX_EXPOSURE


def test_unit_settings() -> None:
    """The hardening settings the unit must carry, spelled as systemd reads them."""
    text = UNIT.read_text()
    for line in ("User=kms-appliance", "RuntimeDirectory=kms-appliance kms-appliance/tmp",
                 "Environment=TMPDIR=/run/kms-appliance/tmp", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
                 "ProtectSystem=strict", "PrivateTmp=yes", "PrivateDevices=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "MemoryDenyWriteExecute=yes",
                 "SystemCallFilter=@system-service", "StateDirectory=kms-appliance", "StateDirectoryMode=0700"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert "ExecStart=/usr/bin/kms-appliance serve --config /etc/kms-appliance/config.toml" in text


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
        self.cluster = Cluster(components, workdir, registry, pki, etcd,
                               KubeApiServer(components, workdir, pki, etcd, registry))

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


def _answering(probe: Callable[[], bool]) -> Callable[[], bool]:
    """``probe``, with a component that does not answer yet (it raises) counted as not ready."""
    def ready() -> bool:
        try:
            return probe()
        except Exception:
            return False
    return ready


def _show(booted: BootedRoot, *props: str) -> dict[str, str]:
    out = booted.exec("systemctl", "show", "kms-appliance.service", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.e2e
def test_service_under_systemd_with_kube_apiserver(root: Path, tmp_path: Path, upgrade_deb: Path) -> None:
    components = ensure_components(allow_build=os.environ.get("E2E_BUILD", "1") != "0")
    booted = None
    try:
        with step("systemd: install and configure the .deb"):
            dpkg_install(root, deb_path())
            verify = nspawn(root, "systemd-analyze", "verify", "--man=no",
                            "/lib/systemd/system/kms-appliance.service", check=False)
            assert verify.returncode == 0 and "kms-appliance" not in verify.stdout + verify.stderr, \
                verify.stdout + verify.stderr
            port = free_port()
            # reload_interval is an hour so that only `systemctl reload` can explain a rotation.
            configure_local(root, port, ('#reload_interval = "5s"', 'reload_interval = "3600s"'))
            pki = make_cluster_pki(root / PKI.lstrip("/"))
            shutil.copy(upgrade_deb, root / "var/tmp/kms-up.deb")

        with step("systemd: boot and serve"):
            booted = BootedRoot(root, tmp_path / "boot.log", binds=[f"{components.bin_dir}:{BIN}"])
            # Enabled by the package, so the boot starts it (the configuration is valid).
            sock = booted.path("/run/kms-appliance/kms.sock")
            booted.wait_until("the socket", lambda: connects(sock), timeout=90)
        key1 = round_trip(sock)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200

        props = _show(booted, "ActiveState", "MainPID", "MemoryDenyWriteExecute", "NoNewPrivileges")
        assert props["ActiveState"] == "active"
        assert props["MemoryDenyWriteExecute"] == "yes" and props["NoNewPrivileges"] == "yes"
        status = parse_status(booted.exec("cat", f"/proc/{props['MainPID']}/status").stdout)
        uid = booted.exec("id", "-u", "kms-appliance").stdout.strip()
        assert status["Uid"].split() == [uid] * 4
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
        # The socket is born 0600 in the runtime directory, owned by the service user.
        st = sock.stat()
        assert oct(st.st_mode & 0o777) == "0o600" and str(st.st_uid) == uid
        print(f"served {key1} under MemoryDenyWriteExecute=yes, pid {props['MainPID']}")
        # And the setting is enforced here, not just recorded: a W+X mapping is refused
        # under it and allowed without it (perl's raw mmap, as a JIT would do).
        wx = ["perl", "-e", "exit(syscall(9, 0, 4096, 7, 0x22, -1, 0) == -1 ? 3 : 0)"]
        denied = booted.exec("systemd-run", "--quiet", "-P", "-p", "MemoryDenyWriteExecute=yes", "--",
                             *wx, check=False)
        allowed = booted.exec("systemd-run", "--quiet", "-P", "--", *wx, check=False)
        assert (denied.returncode, allowed.returncode) == (3, 0), (denied, allowed)

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
            values = {"before-rotation": create_secret(host.cluster, "before-rotation")}
            assert read_secret(host.cluster, "before-rotation") == values["before-rotation"]
            assert host.stored_key_id("before-rotation", values["before-rotation"]) == key1

        with step("apiserver: systemctl reload rotates, new writes carry the new key_id"):
            booted.exec("runuser", "-u", "kms-appliance", "--", "env", "TMPDIR=/tmp", "kms-appliance",
                        "keyring", "rotate", KEYRING)
            time.sleep(1)
            assert round_trip(sock) == key1, "rotated without a reload (reload_interval is 1h)"
            booted.exec("systemctl", "reload", "kms-appliance")
            booted.wait_until("the reloaded key", lambda: round_trip(sock) != key1, timeout=30)
            key2 = round_trip(sock)
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
            pid = _show(booted, "MainPID")["MainPID"]
            booted.exec("systemctl", "restart", "kms-appliance")
            booted.wait_until("the restarted plugin", _answering(lambda: bool(round_trip(sock))), timeout=60)
            assert _show(booted, "MainPID")["MainPID"] != pid
            assert round_trip(sock) == key2
            booted.exec("systemctl", "stop", "kube-apiserver")  # a fresh one has no cached DEKs: every read decrypts
            host.start_apiserver()
            for name, value in values.items():
                assert read_secret(host.cluster, name) == value, name

        with step("systemd: upgrade restarts the service"):
            pid = _show(booted, "MainPID")["MainPID"]
            booted.exec("dpkg", "-i", "/var/tmp/kms-up.deb", timeout=120)
            booted.wait_until("the restarted socket", lambda: connects(sock), timeout=60)
        after = _show(booted, "MainPID", "ActiveState")
        assert after["ActiveState"] == "active" and after["MainPID"] != pid
        assert booted.exec("dpkg-query", "-W", "-f", "${Version}", "kms-appliance").stdout == f"{VERSION}+up1"
        assert round_trip(sock) == key2

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
            with step("systemd: halt"):
                booted.stop(timeout=60)
