"""A one-binary OCI image archive, written by hand (OCI image spec v1.1): no registry is
reachable, so the pause binary built from the Kubernetes source becomes the pod sandbox image this
way. The spec's minimum layout; fixed timestamps, so the same binary gives the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _layer(binary: Path, path_in_image: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _tar_member(tar, path_in_image.lstrip("/"), binary.read_bytes(), 0o755)
    return buf.getvalue()


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def write_single_binary_image(binary: Path, ref: str, out: Path, user: str = "65535:65535") -> Path:
    """Write ``out``: an OCI archive named ``ref`` whose entrypoint is the binary at ``/<name>``."""
    path_in_image = "/" + binary.name
    blobs: dict[str, bytes] = {}
    layer = _layer(binary, path_in_image)
    layer_desc = {"mediaType": MEDIA_LAYER, **_blob(blobs, layer)}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [path_in_image], "User": user},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc = {"mediaType": MEDIA_CONFIG, **_blob(blobs, _dumps(config))}
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = {
        "mediaType": MEDIA_MANIFEST,
        **_blob(blobs, _dumps(manifest)),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
    }
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _tar_member(tar, "oci-layout", _dumps({"imageLayoutVersion": "1.0.0"}), 0o644)
        _tar_member(tar, "index.json", _dumps(index), 0o644)
        for digest, data in blobs.items():
            _tar_member(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data, 0o644)
    return out
