"""Socket path safety: directory modes, refusals, stale-socket handling."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from kms_appliance import socketfs
from kms_appliance.errors import SetupError


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
    with pytest.raises(SetupError, match="symlink"):
        socketfs.prepare(tmp_path / "link" / "kms.sock", None)


def test_refuses_world_writable_dir(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(SetupError, match="writable by others"):
        socketfs.prepare(d / "kms.sock", None)


def test_refuses_dir_of_another_user(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(SetupError, match="another non-root user"):
        socketfs.prepare(d / "kms.sock", None)


def test_refuses_symlink_at_socket_path(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    (d / "kms.sock").symlink_to(tmp_path / "elsewhere.sock")
    with pytest.raises(SetupError, match="symlink"):
        socketfs.prepare(d / "kms.sock", None)


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_refuses_non_socket_at_path(tmp_path: Path, kind: str) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    target = d / "kms.sock"
    target.write_text("precious") if kind == "file" else os.mkfifo(target)
    with pytest.raises(SetupError, match="not a socket"):
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
        with pytest.raises(SetupError, match="already serving"):
            socketfs.prepare(path, None)
    assert path.exists()


def test_remove_spares_a_successors_socket(tmp_path: Path) -> None:
    path = tmp_path / "kms.sock"
    path.write_text("")
    socketfs.remove(path, inode=path.stat().st_ino + 1)
    assert path.exists()
    socketfs.remove(path, inode=path.stat().st_ino)
    assert not path.exists()


def _close(prepared: tuple[int, Path]) -> None:
    dir_fd, bind_path = prepared
    socketfs.remove(bind_path, None)
    os.close(dir_fd)


class TestConcurrentStarts:
    """Two plugins starting on one path: one serves, the other refuses cleanly."""

    def test_directory_made_by_a_concurrent_start_is_checked_not_crashed_on(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        real_mkdir = os.mkdir

        def other_start_wins(path: object, mode: int = 0o777) -> None:
            real_mkdir(path, 0o700)  # type: ignore[arg-type]  # the other plugin's mkdir
            raise FileExistsError(17, "File exists")

        monkeypatch.setattr(socketfs.os, "mkdir", other_start_wins)
        _close(socketfs.prepare(tmp_path / "run" / "kms.sock", None))

    def test_unsafe_directory_made_concurrently_is_refused(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        real_mkdir = os.mkdir

        def attacker_wins(path: object, mode: int = 0o777) -> None:
            real_mkdir(path, 0o700)  # type: ignore[arg-type]
            os.chmod(path, 0o777)  # type: ignore[arg-type]
            raise FileExistsError(17, "File exists")

        monkeypatch.setattr(socketfs.os, "mkdir", attacker_wins)
        with pytest.raises(SetupError, match="writable by others"):
            socketfs.prepare(tmp_path / "run" / "kms.sock", None)

    def test_second_start_on_the_same_path_is_refused_until_the_first_removes_its_socket(
            self, tmp_path: Path) -> None:
        path = tmp_path / "run" / "kms.sock"
        first = socketfs.prepare(path, None)
        with pytest.raises(SetupError, match=f"already serving on {path}$"):
            socketfs.prepare(path, None)
        _close(first)
        _close(socketfs.prepare(path, None))

    def test_a_start_that_never_bound_does_not_keep_the_lock(self, tmp_path: Path) -> None:
        """A server that failed after prepare() closes only its directory fd (server.stop)."""
        path = tmp_path / "run" / "kms.sock"
        dir_fd, _ = socketfs.prepare(path, None)
        os.close(dir_fd)
        spare = os.open(tmp_path, os.O_RDONLY)  # the number may be reused for another directory
        try:
            _close(socketfs.prepare(path, None))
        finally:
            os.close(spare)

    def test_lock_file_that_is_not_a_regular_file_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "run").mkdir(mode=0o700)
        os.mkfifo(tmp_path / "run" / ".kms.sock.lock")
        with pytest.raises(SetupError, match="not a regular file"):
            socketfs.prepare(tmp_path / "run" / "kms.sock", None)


class TestSocketGroup:
    """``socket_group`` must really let the group reach the socket."""

    def test_existing_0700_dir_of_ours_is_opened_to_the_group(self, tmp_path: Path) -> None:
        d = tmp_path / "run"
        d.mkdir(mode=0o700)
        _close(socketfs.prepare(d / "kms.sock", "4242"))
        st = d.stat()
        assert (st.st_mode & 0o7777, st.st_gid) == (0o2750, 4242)

    def test_dir_holding_readable_files_is_refused_and_left_alone(self, tmp_path: Path) -> None:
        d = tmp_path / "run"
        d.mkdir(mode=0o700)
        (d / "notes").write_text("x")
        (d / "notes").chmod(0o644)
        with pytest.raises(SetupError, match="keeps socket group '4242' out"):
            socketfs.prepare(d / "kms.sock", "4242")
        assert d.stat().st_mode & 0o7777 == 0o700

    def test_private_entries_do_not_block_the_fix(self, tmp_path: Path) -> None:
        """The systemd unit's RuntimeDirectory holds its own 0750 tmp/ (the unpack directory)."""
        d = tmp_path / "run"
        d.mkdir(mode=0o700)
        (d / "tmp").mkdir(mode=0o750)
        _close(socketfs.prepare(d / "kms.sock", "4242"))
        assert d.stat().st_mode & 0o7777 == 0o2750

    @pytest.mark.parametrize("mode", [0o755, 0o711])
    def test_dir_others_can_traverse_is_left_alone(self, tmp_path: Path, mode: int) -> None:
        d = tmp_path / "run"
        d.mkdir()
        d.chmod(mode)
        _close(socketfs.prepare(d / "kms.sock", "4242"))
        assert d.stat().st_mode & 0o7777 == mode


class TestWritableParent:
    """Whoever may write the socket directory's parent can replace the directory."""

    @pytest.mark.parametrize(("mode", "owner", "who"), [
        (0o777, 0, "every user"),
        (0o775, 0, None),  # group root: root only
        (0o1777, 0, None),  # sticky: nobody can rename our entry
        (0o755, 0, None),
        (0o755, 65534, "owner uid 65534"),
    ])
    def test_parent_writable(self, tmp_path: Path, mode: int, owner: int, who: str | None) -> None:
        parent = tmp_path / "p"
        parent.mkdir()
        parent.chmod(mode)
        os.chown(parent, owner, 0)
        reason = socketfs.parent_writable(parent / "run")
        assert (reason is None) == (who is None)
        if who is not None:
            assert reason is not None and who in reason and str(parent) in reason

    def test_group_writable_parent_is_reported(self, tmp_path: Path) -> None:
        parent = tmp_path / "p"
        parent.mkdir()
        parent.chmod(0o775)
        os.chown(parent, 0, 4242)
        assert "group 4242" in (socketfs.parent_writable(parent / "run") or "")

    def test_warned_once_at_prepare(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        parent = tmp_path / "p"
        parent.mkdir()
        parent.chmod(0o777)
        with caplog.at_level("WARNING", logger="kms_appliance.socketfs"):
            _close(socketfs.prepare(parent / "run" / "kms.sock", None))
        assert sum("writable by every user" in r.getMessage() for r in caplog.records) == 1
