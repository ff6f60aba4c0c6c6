"""The image's signature, verified offline the two ways docs/verify.md gives:
`skopeo standalone-verify` on the manifest inside the OCI archive, and a
containers policy (signedBy the release key) enforced by `podman pull` from
a `dir:` copy carrying the signature. A changed manifest, a missing
signature and a signature by another key are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.packaging import IMAGE_REF, oci_blob, oci_manifest, run, step

from . import signed
from .signed import IMAGE, KEY

pytestmark = pytest.mark.packaging


def _manifest(archive: Path, dest: Path) -> Path:
    """index.json -> the manifest blob, as the operator extracts it (docs/verify.md)."""
    with tarfile.open(archive) as tar:
        dest.write_bytes(oci_blob(tar, oci_manifest(tar)[0]["digest"]))
    return dest


def _tamper(manifest: Path) -> None:
    doc = json.loads(manifest.read_text())
    doc["annotations"]["org.opencontainers.image.version"] = "9.9.9"
    manifest.unlink()
    manifest.write_text(json.dumps(doc))


@pytest.fixture
def verify_home(tmp_path: Path, bundle_dir: Path) -> Iterator[dict[str, str]]:
    """A GnuPG home holding only the release public key (skopeo reads GNUPGHOME)."""
    home = tmp_path / "verify-gnupg"
    home.mkdir(mode=0o700)
    run(["gpg", "--homedir", home, "--batch", "--import", bundle_dir / f"{KEY}.asc"])
    yield {**signed.clean_env(), "GNUPGHOME": str(home)}
    signed.stop_agent(home)


def test_standalone_verify(bundle_dir: Path, release_fpr: str, tmp_path: Path,
                           verify_home: dict[str, str]) -> None:
    manifest = _manifest(bundle_dir / IMAGE, tmp_path / "manifest.json")
    sig = bundle_dir / f"{IMAGE}.sig"

    def verify(ref: str = IMAGE_REF, signature: Path = sig) -> subprocess.CompletedProcess[str]:
        return run(["skopeo", "standalone-verify", manifest, ref, release_fpr, signature], env=verify_home,
                   check=False)

    assert "Signature verified" in verify().stdout
    # Another name for the same image is not what was signed.
    assert verify("localhost/evil:latest").returncode != 0
    _tamper(manifest)
    bad = verify()
    assert bad.returncode != 0 and "does not match" in bad.stderr, bad.stderr

    # The same manifest signed by another key is refused for the release fingerprint.
    manifest = _manifest(bundle_dir / IMAGE, tmp_path / "manifest2.json")
    env = signed.other_key(tmp_path / "other")
    forged = tmp_path / "forged.sig"
    other_fpr = run([signed.SIGN, "fingerprint"], env=env).stdout.strip()
    run(["skopeo", "standalone-sign", manifest, IMAGE_REF, other_fpr, "-o", forged],
        env={**env, "GNUPGHOME": env["KMS_SIGNING_GNUPGHOME"]})
    signed.stop_agent(tmp_path / "other")
    run(["gpg", "--homedir", verify_home["GNUPGHOME"], "--batch", "--import"],
        input=run(["gpg", "--homedir", tmp_path / "other", "--armor", "--export"]).stdout)
    refused = verify(signature=forged)
    assert refused.returncode != 0, refused.stdout


def test_policy_signed_by_release_key(bundle_dir: Path, tmp_path: Path, podman: list[str]) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {"dir": {"": [{
            "type": "signedBy", "keyType": "GPGKeys", "keyPath": str(bundle_dir / f"{KEY}.gpg"),
            "signedIdentity": {"type": "exactReference", "dockerReference": IMAGE_REF}}]}}}))
    image = tmp_path / "image"
    with step("image: skopeo copy to dir:"):
        run(["skopeo", "copy", "-q", f"oci-archive:{bundle_dir / IMAGE}", f"dir:{image}"])
    unsigned = run([*podman, "pull", "-q", "--signature-policy", policy, f"dir:{image}"], check=False)
    assert unsigned.returncode != 0 and "rejected" in unsigned.stderr, unsigned.stderr
    shutil.copy(bundle_dir / f"{IMAGE}.sig", image / "signature-1")

    tampered = tmp_path / "tampered"
    shutil.copytree(image, tampered)
    _tamper(tampered / "manifest.json")
    bad = run([*podman, "pull", "-q", "--signature-policy", policy, f"dir:{tampered}"], check=False)
    assert bad.returncode != 0 and "rejected" in bad.stderr, bad.stderr

    with step("image: podman pull under the signedBy policy"):
        image_id = run([*podman, "pull", "-q", "--signature-policy", policy, f"dir:{image}"]).stdout.strip()
    run([*podman, "tag", image_id, IMAGE_REF])
    user = run([*podman, "image", "inspect", "-f", "{{.Config.User}}", IMAGE_REF]).stdout.strip()
    assert user == "65532:65532"
    run([*podman, "rmi", "-af"], check=False)
