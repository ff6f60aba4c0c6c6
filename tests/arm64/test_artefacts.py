"""The arm64 artefacts carry the arm64 binary, say they are arm64, and the image serves (run by
`make ARCH=arm64 test-arm64`, emulated on x86_64: docs/arm64.md). A missing artefact fails, it is
never a skip.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import platform
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import packaging, steps
from tests.support.kmsclient import round_trip
from tests.support.procs import status_fields
from tests.support.steps import NONROOT, REPO, VERSION, run

pytestmark = pytest.mark.packaging

DIST = Path(os.environ.get("ARM64_DIST", REPO / "dist" / "arm64"))
EM_AARCH64 = 183  # ELF e_machine


def _artefact(name: str) -> Path:
    path = DIST / name
    assert path.is_file(), f"{path} missing: run `make ARCH=arm64 bundle`"
    return path


def _binary() -> bytes:
    data = _artefact("kms-appliance").read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == EM_AARCH64
    return data


def test_deb_is_arm64_and_holds_the_binary(tmp_path: Path) -> None:
    deb = _artefact(f"kms-appliance_{VERSION}_arm64.deb")
    assert run(["dpkg-deb", "-f", str(deb), "Architecture"]).stdout.strip() == "arm64"
    run(["dpkg-deb", "-x", deb, tmp_path])
    assert (tmp_path / "usr/bin/kms-appliance").read_bytes() == _binary()


def test_rpm_is_aarch64_and_holds_the_binary(tmp_path: Path) -> None:
    rpm = _artefact(f"kms-appliance-{VERSION}-1.aarch64.rpm")
    qf = run(["rpm", "--dbpath", str(tmp_path), "-qp", "--qf", "%{ARCH} %{OS}", str(rpm)]).stdout
    assert qf == "aarch64 linux"
    payload = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet", "-D", str(tmp_path), "./usr/bin/kms-appliance"],
                   input=payload, check=True, capture_output=True)
    assert (tmp_path / "usr/bin/kms-appliance").read_bytes() == _binary()


def test_image_is_arm64_and_holds_the_binary() -> None:
    with tarfile.open(_artefact(f"kms-appliance_{VERSION}_arm64_oci.tar")) as tar:
        desc, manifest = packaging.oci_manifest(tar)
        assert desc["annotations"]["org.opencontainers.image.ref.name"] == packaging.IMAGE_REF
        config = json.loads(packaging.oci_blob(tar, manifest["config"]["digest"]))
        assert (config["architecture"], config["os"]) == ("arm64", "linux")
        top = manifest["layers"][-1]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(packaging.oci_blob(tar, top["digest"])))) as layer:
            member = layer.extractfile("usr/bin/kms-appliance")
            assert member is not None
            assert member.read() == _binary()


def test_bundle_lists_the_arm64_files_and_checks_out(tmp_path: Path) -> None:
    bundle = _artefact(f"kms-appliance-bundle-{VERSION}-arm64.tar.gz")
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / f"kms-appliance-bundle-{VERSION}-arm64"
    guide = (root / "INSTALL.md").read_text()
    for name in (f"kms-appliance_{VERSION}_arm64.deb", f"kms-appliance_{VERSION}_arm64_oci.tar"):
        assert (root / name).read_bytes() == _artefact(name).read_bytes(), name
        assert name in guide, name
    # The bundle's .rpm is the dist one, signed (rpmsign rewrites the header): same payload.
    rpm = f"kms-appliance-{VERSION}-1.aarch64.rpm"
    qf = ["rpm", "--dbpath", str(tmp_path), "-qp", "--qf", "%{ARCH} %{PAYLOADDIGEST}"]
    assert run([*qf, str(root / rpm)]).stdout == run([*qf, str(_artefact(rpm))]).stdout
    assert rpm in guide
    assert (root / "kms-appliance").read_bytes() == _binary()
    subprocess.run(["sha256sum", "--strict", "--quiet", "-c", "SHA256SUMS"], cwd=root, check=True,
                   capture_output=True)
    packages = (root / "repo/apt/dists/stable/main/binary-arm64/Packages").read_text()
    assert "Architecture: arm64" in packages and "amd64" not in packages
    assert "x86_64" not in guide and "amd64" not in guide


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    with steps.podman(tmp_path / "store") as cmd:
        run([*cmd, "load", "-q", "-i", _artefact(f"kms-appliance_{VERSION}_arm64_oci.tar")])
        yield cmd


def test_image_serves_a_round_trip(tmp_path: Path, podman: list[str]) -> None:
    """The arm64 image as deployed (read-only, no capabilities, uid 65532), through its socket."""
    name = "kms-appliance-arm64-test"
    sock = packaging.serve_image(podman, tmp_path, name, timeout=120)  # emulated start
    round_trip(sock, timeout=30)
    pid = json.loads(run([*podman, "inspect", name]).stdout)[0]["State"]["Pid"]
    status = status_fields(pid)
    assert status["Uid"].split() == [str(NONROOT)] * 4 and int(status["CapEff"], 16) == 0
    if platform.machine() == "x86_64":  # really arm64 code: the kernel handed it to qemu
        assert "aarch64" in os.readlink(f"/proc/{pid}/exe")
    run([*podman, "stop", "-t", "30", name])
    assert not sock.exists(), "a graceful stop removes the socket"


def test_deb_installs_and_purges_in_an_arm64_root(tmp_path: Path) -> None:
    """dpkg and the maintainer scripts of the arm64 .deb run in an arm64 Debian (emulated on x86_64)."""
    root = packaging.fresh_root(tmp_path / "root", arch="arm64")
    packaging.dpkg_install(root, _artefact(f"kms-appliance_{VERSION}_arm64.deb"), timeout=300)
    assert packaging.nspawn(root, "dpkg", "--print-architecture", timeout=300).stdout.strip() == "arm64"
    packaging.assert_installed(root, timeout=300)
    packaging.nspawn(root, "dpkg", "-P", "kms-appliance", timeout=300)
    assert not (root / "usr/bin/kms-appliance").exists()
    assert not (root / "etc/kms-appliance").exists()
