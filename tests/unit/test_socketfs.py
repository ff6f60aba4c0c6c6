"""Socket path safety: directory modes, refusals, stale-socket handling."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from kms_appliance import socketfs
from kms_appliance.errors import StartupError


def test_creates_missing_dir_0700(tmp_path: Path) -> None:
    d = tmp_path / "a" / "run"
    socketfs.prepare(d / "kms.sock", None)
    assert (d.stat().st_mode & 0o777) == 0o700


def test_creates_missing_dir_0750_with_group(tmp_path: Path) -> None:
    d = tmp_path / "run"
    socketfs.prepare(d / "kms.sock", "0")
    st = d.stat()
    assert (st.st_mode & 0o777) == 0o750
    assert st.st_mode & stat.S_ISGID
    assert st.st_gid == 0


def test_refuses_symlinked_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StartupError, match="symlink"):
        socketfs.prepare(tmp_path / "link" / "kms.sock", None)


def test_refuses_world_writable_dir(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(StartupError, match="writable by others"):
        socketfs.prepare(d / "kms.sock", None)


def test_refuses_dir_of_another_user(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(StartupError, match="another non-root user"):
        socketfs.prepare(d / "kms.sock", None)


def test_refuses_symlink_at_socket_path(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    (d / "kms.sock").symlink_to(tmp_path / "elsewhere.sock")
    with pytest.raises(StartupError, match="symlink"):
        socketfs.prepare(d / "kms.sock", None)


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_refuses_non_socket_at_path(tmp_path: Path, kind: str) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    target = d / "kms.sock"
    target.write_text("precious") if kind == "file" else os.mkfifo(target)
    with pytest.raises(StartupError, match="not a socket"):
        socketfs.prepare(target, None)
    assert target.exists()


def test_removes_stale_socket(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    path = d / "kms.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # bound but never listening: nothing answers
    socketfs.prepare(path, None)
    assert not path.exists()


def test_refuses_live_socket(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    path = d / "kms.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen(1)
        with pytest.raises(StartupError, match="already serving"):
            socketfs.prepare(path, None)
    assert path.exists()


def test_remove_spares_a_successors_socket(tmp_path: Path) -> None:
    path = tmp_path / "kms.sock"
    path.write_text("")
    socketfs.remove(path, inode=path.stat().st_ino + 1)
    assert path.exists()
    socketfs.remove(path, inode=path.stat().st_ino)
    assert not path.exists()
