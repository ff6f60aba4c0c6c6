"""The distroless image: inspect the exported OCI archive, then run it.

Runs with podman (runc, vfs storage private to the test) exactly as the
deployment docs say: read-only root, all capabilities dropped, an
exec-allowed tmpfs on /tmp, and the socket directory mounted from the host;
the KMS round trip is made from the host through that directory.
"""

from __future__ import annotations

import json
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms_appliance import config, manifests
from tests.support import steps
from tests.support.kmsclient import Client
from tests.support.procs import free_port, status_fields
from tests.support.steps import NONROOT

from .support import VERSION, image_path, run, step
from .test_manifests import yaml_docs

pytestmark = pytest.mark.packaging

REF = f"localhost/kms-appliance:{VERSION}"
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
    assert member is not None
    return member.read()


def _oci() -> tuple[dict[str, object], dict[str, object], list[tarfile.TarInfo], dict[str, bytes]]:
    """(manifest, config, every layer member, small files by path) of the archive."""
    with tarfile.open(image_path()) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        (desc,) = index["manifests"]
        assert desc["annotations"]["org.opencontainers.image.ref.name"] == REF
        manifest = json.loads(_blob(tar, desc["digest"]))
        config = json.loads(_blob(tar, manifest["config"]["digest"]))
        members: list[tarfile.TarInfo] = []
        small: dict[str, bytes] = {}
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=tar.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}"),
                              mode="r|gz") as lt:
                for m in lt:
                    members.append(m)
                    if m.isfile() and m.size < 1_000_000:
                        small[m.name] = lt.extractfile(m).read()  # type: ignore[union-attr]
    return manifest, config, members, small


def test_inspect_user_entrypoint_labels() -> None:
    manifest, config, _, _ = _oci()
    cfg = config["config"]
    assert isinstance(cfg, dict)
    assert cfg["User"] == f"{NONROOT}:{NONROOT}"
    assert cfg["Entrypoint"] == ["/usr/bin/kms-appliance", "serve"]
    assert "TMPDIR=/tmp" in cfg["Env"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    annotations = manifest["annotations"]
    assert isinstance(annotations, dict)
    for key in ("version", "revision", "source", "licenses"):
        assert annotations[f"org.opencontainers.image.{key}"] == labels[f"org.opencontainers.image.{key}"]
    # skopeo reads the same archive the same way (what a registry push would use).
    inspected = json.loads(run(["skopeo", "inspect", "--config", f"oci-archive:{image_path()}"]).stdout)
    assert inspected["config"]["User"] == cfg["User"]


def test_no_shell_and_distroless_files() -> None:
    _, _, members, small = _oci()
    names = {m.name.lstrip("./").rstrip("/") for m in members}
    executables = sorted(m.name for m in members if m.isfile() and m.mode & 0o111)
    assert executables == ["usr/bin/kms-appliance"], executables
    for shell in ("bin/sh", "bin/bash", "usr/bin/sh", "bin/busybox"):
        assert shell not in names
    assert b"nonroot:x:65532:65532:" in small["etc/passwd"]
    assert b"nonroot:x:65532:" in small["etc/group"]
    assert small["etc/ssl/certs/ca-certificates.crt"].count(b"BEGIN CERTIFICATE") > 50
    assert b"Distroless" in small["etc/os-release"]
    tmp = next(m for m in members if m.name.rstrip("/") == "tmp")
    assert tmp.isdir() and tmp.mode & 0o7777 == 0o1777


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    with steps.podman(tmp_path / "store") as cmd:
        with step("image: podman load"):
            run([*cmd, "load", "-q", "-i", image_path()])
        yield cmd


def test_run_read_only_no_caps_round_trip(tmp_path: Path, podman: list[str]) -> None:
    sock_dir, state = tmp_path / "sock", tmp_path / "state"
    steps.nonroot_dirs(sock_dir, state)
    # The keyring is made by the image's own binary, as the container's user.
    run([*podman, "run", "--rm", "--runtime", "runc", *ULIMITS, "--network", "none", "--read-only",
         "--tmpfs", "/tmp:rw,exec,nosuid,nodev,size=128m", "-v", f"{state}:/var/lib/kms-appliance",
         "--entrypoint", "/usr/bin/kms-appliance", REF, "keyring", "init",
         "/var/lib/kms-appliance/keyring.json"])
    name = "kms-appliance-packaging-test"
    with step("image: run and serve"):
        run([*podman, "run", "-d", "--name", name, "--runtime", "runc", *ULIMITS, "--network", "none",
             "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--tmpfs", "/tmp:rw,exec,nosuid,nodev,size=128m",
             "-v", f"{sock_dir}:/run/kms-appliance", "-v", f"{state}:/var/lib/kms-appliance",
             REF, "--backend", "local", "--http-listen", ""])
        sock = sock_dir / "kms.sock"
        steps.wait_container_socket(podman, name, sock, timeout=60)
    with Client(sock) as client:
        secret = b"image-test-dek-0123456789abcdef!"
        resp = client.encrypt(secret)
        assert client.decrypt(resp.ciphertext, resp.key_id, dict(resp.annotations)) == secret
        assert client.status().healthz == "ok"
    assert sock.stat().st_uid == NONROOT and sock.stat().st_mode & 0o777 == 0o600
    inspect = json.loads(run([*podman, "inspect", name]).stdout)[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    pid = inspect["State"]["Pid"]
    status = status_fields(pid)
    assert status["Uid"].split() == [str(NONROOT)] * 4
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    shell = run([*podman, "exec", name, "/bin/sh", "-c", "true"], check=False)
    assert shell.returncode != 0 and "/bin/sh" in shell.stderr
    with step("image: stop"):
        run([*podman, "stop", "-t", "20", name])
    assert not sock.exists(), "a graceful stop removes the socket"


def test_read_only_tmp_fails_clearly(podman: list[str]) -> None:
    """Without the exec-allowed tmpfs the binary cannot unpack: it must say so and exit."""
    proc = run([*podman, "run", "--rm", "--runtime", "runc", *ULIMITS, "--network", "none",
                "--read-only", "--read-only-tmpfs=false", REF, "--backend", "local"],
               check=False, timeout=60)
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr or "temporary directory" in proc.stderr, proc.stderr


def test_static_pod_as_generated_serves_and_answers_probes(tmp_path: Path, podman: list[str]) -> None:
    """The image under the generated static pod's own args, env, user, mounts and
    probes (hostNetwork): kubelet's probes answer 200 and a round trip works."""
    port = free_port()
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(f'[server]\nbackend = "local"\n[observability]\nhttp_listen = "127.0.0.1:{port}"\n')
    cfg = config.load(env={}, config_file=cfg_file)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(manifests.static_pod(cfg, REF))
    (pod,) = yaml_docs(manifest)
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert spec["hostNetwork"] is True
    host_dirs = {}
    for vol in spec["volumes"]:
        if "hostPath" in vol:
            host_dirs[vol["name"]] = tmp_path / vol["name"]
            steps.nonroot_dirs(host_dirs[vol["name"]])
    (host_dirs["config"] / "config.toml").write_text('[server]\nbackend = "local"\n')
    mounts = [f"{host_dirs[m['name']]}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")
              for m in c["volumeMounts"] if m["name"] in host_dirs]
    tmpfs = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "unpack")
    user = f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}"
    common = [*podman, "run", "--runtime", "runc", *ULIMITS, "--network", "host", "--user", user,
              "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL",
              "--security-opt", "no-new-privileges", "--tmpfs", f"{tmpfs}:rw,exec,nosuid,nodev,size=128m",
              *[f"--env={e['name']}={e['value']}" for e in c["env"]], *[f"--volume={m}" for m in mounts]]
    run([*common, "--rm", "--entrypoint", "/usr/bin/kms-appliance", REF, "keyring", "init",
         "/var/lib/kms-appliance/keyring.json"])
    name = "kms-appliance-static-pod-test"
    run([*common, "-d", "--name", name, REF, *c["args"]])
    sock = host_dirs["socket-dir"] / "kms.sock"
    steps.wait_container_socket(podman, name, sock, timeout=60)
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        url = f"http://{get['host']}:{get['port']}{get['path']}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:
                    assert resp.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"{probe} {url} never answered 200"
                time.sleep(0.3)
    with Client(sock) as client:
        resp = client.encrypt(b"static-pod-dek-0123456789abcdef")
        assert client.decrypt(resp.ciphertext, resp.key_id, dict(resp.annotations)) == \
            b"static-pod-dek-0123456789abcdef"
    run([*podman, "stop", "-t", "20", name])
