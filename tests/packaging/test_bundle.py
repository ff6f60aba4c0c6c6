"""The offline bundle: everything for an air-gapped site, checksummed."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from .support import DIST, VERSION, artefact, assert_shipped, run

pytestmark = pytest.mark.packaging


def test_bundle_contents_and_checksums(tmp_path: Path) -> None:
    bundle = artefact(f"kms-appliance-bundle-{VERSION}.tar.gz")
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / f"kms-appliance-bundle-{VERSION}"
    for name in ("kms-appliance", "kms-appliance.cdx.json", f"kms-appliance_{VERSION}_amd64.deb",
                 f"kms-appliance_{VERSION}_oci.tar"):
        assert (root / name).read_bytes() == (DIST / name).read_bytes(), name
    # The .rpm is the one `make rpm` built, signed (test_signed_bundle.py): same header and payload.
    rpm = f"kms-appliance-{VERSION}-1.x86_64.rpm"
    qf = ["rpm", "--dbpath", "/nonexistent", "-qp", "--qf", "%{SHA256HEADER} %{PAYLOADDIGEST}"]
    assert run([*qf, root / rpm]).stdout == run([*qf, DIST / rpm]).stdout
    for name in ("INSTALL.md", "deployment.md", "deploy/kubeadm/kms-appliance.yaml",
                 "deploy/kubeadm/encryption-config.yaml", "deploy/prometheus/kms-appliance-rules.yml",
                 "deploy/grafana/kms-appliance-dashboard.json"):
        assert (root / name).is_file(), name
    assert_shipped(root)
    guide = (root / "INSTALL.md").read_text()
    assert "@VERSION@" not in guide and "sha256sum -c SHA256SUMS" in guide
    assert (root / "kms-appliance").stat().st_mode & 0o111
    run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=root)
    listed = {line.split(None, 1)[1] for line in (root / "SHA256SUMS").read_text().splitlines()}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"SHA256SUMS",
                                                                                   "SHA256SUMS.asc"}
    assert listed == on_disk
    # A corrupted transfer is caught.
    (root / "kms-appliance.cdx.json").write_bytes(b"tampered")
    assert run(["sha256sum", "-c", "SHA256SUMS"], cwd=root, check=False).returncode != 0
