"""The distroless image: inspect the exported OCI archive, then run it.

Runs with podman (runc, vfs storage private to the test) exactly as the
deployment docs say: read-only root, all capabilities dropped, an
exec-allowed tmpfs on /tmp, and the socket directory mounted from the host;
the KMS round trip is made from the host through that directory. The image under the
generated static pod, run by a real kubelet: tests/deploy.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.kmsclient import round_trip
from tests.support.packaging import (
    IMAGE_REF,
    PODMAN_RUN,
    image_path,
    oci_blob,
    oci_manifest,
    serve_image,
    step,
)
from tests.support.procs import status_fields
from tests.support.steps import NONROOT, VERSION, run

pytestmark = pytest.mark.packaging


def test_config_labels_no_shell_and_distroless_files() -> None:
    """One read of the archive's layers: the config the runtime gets, and what the filesystem holds."""
    members: list[tarfile.TarInfo] = []
    small: dict[str, bytes] = {}  # small files, by path
    with tarfile.open(image_path()) as tar:
        desc, manifest = oci_manifest(tar)
        assert desc["annotations"]["org.opencontainers.image.ref.name"] == IMAGE_REF
        cfg = json.loads(oci_blob(tar, manifest["config"]["digest"]))["config"]
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=tar.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}"),
                              mode="r|gz") as lt:
                for m in lt:
                    members.append(m)
                    if m.isfile() and m.size < 1_000_000:
                        small[m.name] = lt.extractfile(m).read()  # type: ignore[union-attr]
    assert cfg["User"] == f"{NONROOT}:{NONROOT}"
    assert cfg["Entrypoint"] == ["/usr/bin/kms-appliance", "serve"]
    assert "TMPDIR=/tmp" in cfg["Env"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    for key in ("version", "revision", "source", "licenses"):
        assert manifest["annotations"][f"org.opencontainers.image.{key}"] == labels[f"org.opencontainers.image.{key}"]
    # skopeo reads the same archive the same way (what a registry push would use).
    inspected = json.loads(run(["skopeo", "inspect", "--config", f"oci-archive:{image_path()}"]).stdout)
    assert inspected["config"]["User"] == cfg["User"]
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


def test_run_read_only_no_caps_round_trip_and_read_only_tmp_fails(tmp_path: Path, podman: list[str]) -> None:
    """As deployed it serves; without the exec-allowed tmpfs the binary cannot unpack: it must say so and exit."""
    with step("image: podman load"):
        run([*podman, "load", "-q", "-i", image_path()])
    name = "kms-appliance-packaging-test"
    with step("image: run and serve"):
        sock = serve_image(podman, tmp_path, name, timeout=60)
    round_trip(sock)
    assert sock.stat().st_uid == NONROOT and sock.stat().st_mode & 0o777 == 0o600
    inspect = json.loads(run([*podman, "inspect", name]).stdout)[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    status = status_fields(inspect["State"]["Pid"])
    assert status["Uid"].split() == [str(NONROOT)] * 4
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    shell = run([*podman, "exec", name, "/bin/sh", "-c", "true"], check=False)
    assert shell.returncode != 0 and "/bin/sh" in shell.stderr
    with step("image: stop"):
        run([*podman, "stop", "-t", "20", name])
    assert not sock.exists(), "a graceful stop removes the socket"

    no_tmpfs = PODMAN_RUN[:PODMAN_RUN.index("--tmpfs")]
    proc = run([*podman, *no_tmpfs, "--rm", "--read-only-tmpfs=false", IMAGE_REF, "--backend", "local"],
               check=False, timeout=60)
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr or "temporary directory" in proc.stderr, proc.stderr
