"""Socket path safety: directory modes, concurrent starts, socket_group, writable parents (what sits at
the path is refused on the real process: tests/reliability/test_socket_attacks.py::TestPathGames)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kms_appliance import socketfs
from kms_appliance.errors import SetupError


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """An existing 0700 socket directory of ours."""
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    return d


def _close(prepared: tuple[int, Path]) -> None:
    dir_fd, bind_path = prepared
    socketfs.remove(bind_path, None)
    os.close(dir_fd)


@pytest.mark.parametrize(("group", "mode", "gid"), [(None, 0o700, os.getegid()), ("0", 0o2750, 0)])
def test_creates_missing_dir(tmp_path: Path, group: str | None, mode: int, gid: int) -> None:
    d = tmp_path / "a" / "run"
    _close(socketfs.prepare(d / "kms.sock", group))
    assert (stat.S_IMODE(d.stat().st_mode), d.stat().st_gid) == (mode, gid)


def test_remove_spares_a_successors_socket(tmp_path: Path) -> None:
    path = tmp_path / "kms.sock"
    path.write_text("")
    socketfs.remove(path, inode=path.stat().st_ino + 1)
    assert path.exists()
    socketfs.remove(path, inode=path.stat().st_ino)
    assert not path.exists()


class TestConcurrentStarts:
    """Two plugins starting on one path: one serves, the other refuses cleanly."""

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

    def test_lock_file_that_is_not_a_regular_file_is_refused(self, run: Path) -> None:
        os.mkfifo(run / ".kms.sock.lock")
        with pytest.raises(SetupError, match="not a regular file"):
            socketfs.prepare(run / "kms.sock", None)


class TestSocketGroup:
    """``socket_group`` must really let the group reach the socket."""

    @pytest.mark.parametrize(("mode", "entry", "after", "gid"), [
        (0o700, None, 0o2750, 4242),
        # the systemd unit's RuntimeDirectory holds its own 0750 tmp/ (the unpack directory):
        # a private entry does not block the fix
        (0o700, "tmp", 0o2750, 4242),
        (0o755, None, 0o755, os.getegid()),  # others can traverse it already: left alone
        (0o711, None, 0o711, os.getegid()),
    ])
    def test_the_group_is_let_in_where_it_is_kept_out(self, run: Path, mode: int, entry: str | None,
                                                      after: int, gid: int) -> None:
        run.chmod(mode)
        if entry:
            (run / entry).mkdir(mode=0o750)
        _close(socketfs.prepare(run / "kms.sock", "4242"))
        assert (run.stat().st_mode & 0o7777, run.stat().st_gid) == (after, gid)


class TestWritableParent:
    """Whoever may write the socket directory's parent can replace the directory."""

    @pytest.mark.parametrize(("mode", "owner", "group", "who"), [
        (0o777, 0, 0, "every user"),
        (0o775, 0, 0, None),  # group root: root only
        (0o775, 0, 4242, "group 4242"),
        (0o1777, 0, 0, None),  # sticky: nobody can rename our entry
        (0o755, 0, 0, None),
        (0o755, 65534, 0, "owner uid 65534"),
    ])
    def test_parent_writable(self, tmp_path: Path, mode: int, owner: int, group: int, who: str | None) -> None:
        parent = tmp_path / "p"
        parent.mkdir()
        parent.chmod(mode)
        os.chown(parent, owner, group)
        reason = socketfs.parent_writable(parent / "run")
        assert (reason is None) == (who is None)
        if who is not None:
            assert reason is not None and who in reason and str(parent) in reason

