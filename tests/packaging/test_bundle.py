"""The offline bundle: everything for an air-gapped site, checksummed (its signatures, the
signed .rpm and the completeness of SHA256SUMS: test_signed_bundle.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.packaging import DIST, VERSION, assert_shipped, run

pytestmark = pytest.mark.packaging


def test_bundle_contents_and_checksums(bundle_dir: Path, tmp_path: Path) -> None:
    root = bundle_dir
    for name in ("kms-appliance", "kms-appliance.cdx.json", f"kms-appliance_{VERSION}_amd64.deb",
                 f"kms-appliance_{VERSION}_oci.tar"):
        assert (root / name).read_bytes() == (DIST / name).read_bytes(), name
    for name in ("INSTALL.md", "deployment.md", "deploy/kubeadm/kms-appliance.yaml",
                 "deploy/kubeadm/encryption-config.yaml", "deploy/prometheus/kms-appliance-rules.yml",
                 "deploy/grafana/kms-appliance-dashboard.json"):
        assert (root / name).is_file(), name
    assert_shipped(root)
    guide = (root / "INSTALL.md").read_text()
    assert "@VERSION@" not in guide and "sha256sum -c SHA256SUMS" in guide
    assert (root / "kms-appliance").stat().st_mode & 0o111
    run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=root)
    # A corrupted transfer is caught (in a copy: the unpacked bundle is shared by the suite).
    name = "kms-appliance.cdx.json"
    (entry,) = [line for line in (root / "SHA256SUMS").read_text().splitlines() if line.endswith(f" {name}")]
    (tmp_path / "SHA256SUMS").write_text(entry + "\n")
    (tmp_path / name).write_bytes((root / name).read_bytes())
    run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=tmp_path)
    (tmp_path / name).write_bytes(b"tampered")
    assert run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, check=False).returncode != 0
