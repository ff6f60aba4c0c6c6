"""EncryptionConfiguration documents for kube-apiserver, built as plain data.

Why data, not templates: scenarios (rotation, v1->v2 and identity->KMS
migration) rewrite the provider list between apiserver restarts, and building
dicts keeps every variant one function call away. The file is written as
JSON, which is valid YAML, so no YAML library is needed; writes are atomic
(rename) because the apiserver may be polling the file for automatic reload.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

Provider = dict[str, Any]


def identity() -> Provider:
    return {"identity": {}}


def kms_v2(name: str, socket_path: Path, timeout: str = "3s") -> Provider:
    """A KMS v2 provider on a UNIX socket (``cachesize`` is v1-only)."""
    return {"kms": {"apiVersion": "v2", "name": name, "endpoint": f"unix://{socket_path}", "timeout": timeout}}


def kms_v1(name: str, socket_path: Path, timeout: str = "3s") -> Provider:
    """A KMS v1 provider; needs ``--feature-gates=KMSv1=true`` on the apiserver."""
    return {"kms": {"apiVersion": "v1", "name": name, "endpoint": f"unix://{socket_path}", "cachesize": 1000,
                    "timeout": timeout}}


def encryption_config(providers: list[Provider]) -> dict[str, Any]:
    """Secrets only; the first provider writes, all of them read."""
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["secrets"], "providers": providers}]}


def write_encryption_config(path: Path, config: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename) with mode 0600."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    tmp.replace(path)
    return path


def storage_prefix(provider: Provider) -> bytes:
    """The etcd value prefix a provider writes, e.g. ``k8s:enc:kms:v2:name:``."""
    if "identity" in provider:
        return b"k8s\x00"  # unencrypted protobuf storage
    kms = provider["kms"]
    return f"k8s:enc:kms:{kms['apiVersion']}:{kms['name']}:".encode()
