"""The keyring file: creation mode, refusal of unsafe files, rotation, parsing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kms_appliance.backends import keyring
from kms_appliance.cli import main
from kms_appliance.errors import SetupError


def test_init_creates_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    ring = keyring.init(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert ring.current.version == 1
    with pytest.raises(SetupError, match="already exists"):
        keyring.init(path)


def test_rotation_adds_version_and_keeps_old(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    first = keyring.init(path)
    second = keyring.rotate(path)
    third = keyring.rotate(path)
    assert [e.version for e in third.entries] == [1, 2, 3]
    assert third.keyring_id == first.keyring_id
    assert len({third.key_id(v) for v in (1, 2, 3)}) == 3
    assert second.entries[0].material == first.entries[0].material
    assert (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_refuses_group_or_world_readable(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.json"
    keyring.init(path)
    path.chmod(mode)
    with pytest.raises(SetupError, match="must be 0600"):
        keyring.load(path)


@pytest.mark.root
def test_refuses_foreign_owner(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keyring.init(path)
    os.chown(path, 65534, 65534)
    with pytest.raises(SetupError, match="owned by uid 65534"):
        keyring.load(path)


def test_refuses_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    keyring.init(real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(SetupError, match="not a regular file"):
        keyring.load(link)


def test_list_output_never_holds_key_material(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k.json"
    ring = keyring.init(path)
    assert main(["keyring", "list", str(path)]) == 0
    out = capsys.readouterr().out
    assert ring.key_id(1) in out
    material = ring.entries[0].material
    assert material.hex() not in out
    assert json.loads(path.read_text())["keys"][0]["key"] not in out


@pytest.mark.parametrize("doc", [
    b"not json",
    b"[]",
    b'{"format": "other"}',
    b'{"format": "kms-appliance-keyring/1", "keyring_id": "abc", "keys": []}',
    b'{"format": "kms-appliance-keyring/1", "keyring_id": "abcdef0123", "keys": []}',
    b'{"format": "kms-appliance-keyring/1", "keyring_id": "abcdef0123", "keys": [{"version": 1, "key": "!!"}]}',
    b'{"format": "kms-appliance-keyring/1", "keyring_id": "abcdef0123", "keys": [{"version": 1, "key": "AAAA"}]}',
    b'{"format": "kms-appliance-keyring/1", "keyring_id": "abcdef0123", "keys": [{"version": true, "key": "AAAA"}]}',
    b'{"format": "kms-appliance-keyring/1", "keyring_id": "abcdef0123", "keys": [1]}',
])
def test_parse_rejects_malformed(doc: bytes) -> None:
    with pytest.raises(SetupError):
        keyring.parse(doc)


def test_parse_rejects_duplicate_versions(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keyring.init(path)
    doc = json.loads(path.read_text())
    doc["keys"].append(dict(doc["keys"][0]))
    with pytest.raises(SetupError, match="duplicate"):
        keyring.parse(json.dumps(doc).encode())
