"""The one atomic writer (token file, keyring): an attacker who can write the directory gets nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kms_appliance import atomicfile
from kms_appliance.backends.akeyless.tokens import write_token_file
from kms_appliance.errors import ConfigError

TOKEN = "u-SECRET-rotated-token-0123456789"


def _old_tmp_name(path: Path) -> Path:
    """The predictable name a69ccd0 wrote the rotated token to."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def test_precreated_file_at_the_old_temp_name_never_receives_the_token(tmp_path: Path) -> None:
    path = tmp_path / "uid-token"
    trap = _old_tmp_name(path)
    trap.write_text("")  # an attacker's file, which they could read
    write_token_file(path, TOKEN)
    assert trap.read_text() == ""
    assert path.read_text() == TOKEN + "\n"
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid() and st.st_ino != trap.stat().st_ino


def test_symlink_at_the_old_temp_name_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "uid-token"
    (tmp_path / "loot").mkdir()
    _old_tmp_name(path).symlink_to(tmp_path / "loot" / "stolen")
    write_token_file(path, TOKEN)
    assert not (tmp_path / "loot" / "stolen").exists()
    assert path.read_text() == TOKEN + "\n" and not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_replaced_file_is_0600_whatever_it_was_and_no_temporary_is_left(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("old")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        for i in range(3):
            atomicfile.write(path, f"v{i}".encode())
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]
    assert path.read_bytes() == b"v2" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replace_false_refuses_an_existing_name_atomically(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        atomicfile.write(path, b"new", replace=False)
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]


def test_a_directory_other_users_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(atomicfile.UnsafePath, match="writable by other users"):
        write_token_file(shared / "uid-token", TOKEN)
    assert list(shared.iterdir()) == []


def test_a_symlinked_directory_component_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(atomicfile.UnsafePath, match="is a symlink"):
        write_token_file(tmp_path / "link" / "uid-token", TOKEN)
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.root
def test_a_foreign_owned_directory_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(atomicfile.UnsafePath, match="owned by uid 65534"):
        atomicfile.write(foreign / "k.json", b"x")


@pytest.mark.parametrize("text", ["", "  ", "/tmp/" + "a" * 300, "/" + "d/" * 2100 + "f"])
def test_path_syntax_errors_name_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^local\.keyring: "):
        atomicfile.check_path("local.keyring", text)
