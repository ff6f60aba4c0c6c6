"""Generated EncryptionConfiguration documents."""

from __future__ import annotations

import json
from pathlib import Path

from kms_appliance import config, manifests


def cfg(tmp_path: Path) -> config.Config:
    (tmp_path / "c.toml").write_text('[server]\nsocket = "/run/k/kms.sock"\nprovider_name = "akl"\n')
    return config.load(env={}, config_file=tmp_path / "c.toml")


def _values(doc: str) -> dict[str, str]:
    out = {}
    for line in doc.splitlines():
        key, sep, value = line.strip().lstrip("- ").partition(": ")
        if sep:
            out[key] = value
    return out


def test_v2(tmp_path: Path) -> None:
    doc = manifests.encryption_config(cfg(tmp_path))
    v = _values(doc)
    assert v["apiVersion"] in ("apiserver.config.k8s.io/v1", "v2")
    assert "kind: EncryptionConfiguration" in doc
    assert "apiVersion: v2" in doc
    assert json.loads(v["name"]) == "akl"
    assert json.loads(v["endpoint"]) == "unix:///run/k/kms.sock"
    assert "cachesize" not in doc
    assert doc.rstrip().endswith("- identity: {}")


def test_v1_has_cachesize(tmp_path: Path) -> None:
    doc = manifests.encryption_config(cfg(tmp_path), kms_api="v1")
    assert "apiVersion: v1\n" in doc and "cachesize: 1000" in doc
