"""Safe handling of the socket path and its directory.

File permissions are the first, kernel-enforced control over who may talk to
the plugin, so the directory and the socket must be exactly what we expect
before we bind, and the socket must be born with its final mode (through the
umask at bind time) rather than widened afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import StartupError

PROBE_TIMEOUT = 1.0


def modes(group: str | None) -> tuple[int, int]:
    """(directory mode, socket mode) for the configured socket group."""
    return (0o750, 0o660) if group else (0o700, 0o600)


def group_id(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise StartupError(f"socket group {group!r} does not exist") from None


def check_socket_dir(directory: Path, group: str | None, create: bool = True) -> None:
    """Create the directory with a safe mode, or refuse an unsafe existing one."""
    try:
        st = directory.lstat()
    except FileNotFoundError:
        if not create:
            raise StartupError(f"socket directory {directory} does not exist") from None
        _create_dir(directory, group)
        return
    if stat.S_ISLNK(st.st_mode):
        raise StartupError(f"socket directory {directory} is a symlink; refusing to follow it")
    check_dir_stat(directory, st, group)


def check_dir_stat(directory: Path, st: os.stat_result, group: str | None) -> None:
    """The ownership and mode rules, on a stat of the path or of an open descriptor."""
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError(f"socket directory {directory} is not a directory")
    if st.st_mode & 0o002:
        raise StartupError(f"socket directory {directory} is writable by others "
                           f"(mode {stat.S_IMODE(st.st_mode):04o})")
    if st.st_uid not in (0, os.geteuid()):
        raise StartupError(f"socket directory {directory} is owned by uid {st.st_uid}, "
                           "another non-root user")
    if st.st_mode & 0o020 and st.st_gid != group_id(group):
        raise StartupError(f"socket directory {directory} is group-writable by a group "
                           "other than the socket group")


def _create_dir(directory: Path, group: str | None) -> None:
    dir_mode, _ = modes(group)
    directory.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with umask(0o777 & ~dir_mode):
        os.mkdir(directory, dir_mode)
    gid = group_id(group)
    if gid is not None:
        # setgid: the socket is born in the socket group, with no window in the primary group.
        os.chown(directory, -1, gid)
        os.chmod(directory, dir_mode | stat.S_ISGID)


def probe(path: Path) -> bool:
    """True if something accepts connections on the socket path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise StartupError(f"cannot probe existing socket {path}: {exc.strerror}") from None
        return True


def clear_stale(path: Path) -> None:
    """Remove a dead socket left by a crash; refuse anything else at the path."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise StartupError(f"socket path {path} is a symlink; refusing to use it")
    if not stat.S_ISSOCK(st.st_mode):
        raise StartupError(f"socket path {path} exists and is not a socket; refusing to remove it")
    if probe(path):
        raise StartupError(f"another process is already serving on {path}")
    path.unlink(missing_ok=True)


def prepare(path: Path, group: str | None) -> tuple[int, Path]:
    """Everything that must hold before binding; returns (dir fd, path to bind through it).

    The directory is opened O_NOFOLLOW and re-checked through the descriptor,
    and the socket is bound via ``/proc/self/fd/N/<name>``: a directory
    swapped for a symlink after the path check cannot redirect the bind.
    """
    check_socket_dir(path.parent, group)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StartupError(f"cannot open socket directory {path.parent}: {exc.strerror}") from None
    try:
        check_dir_stat(path.parent, os.fstat(dir_fd), group)
        bind_path = Path(f"/proc/self/fd/{dir_fd}") / path.name
        try:
            clear_stale(bind_path)
        except StartupError as exc:  # name the configured path, not /proc/self/fd/N/<name>
            raise StartupError(exc.message.replace(os.fspath(bind_path), os.fspath(path))) from None
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd, bind_path


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Temporarily set the process umask (bind happens before worker threads start)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def finish_bind(path: Path, group: str | None) -> None:
    """Hand the socket to its group (chown only: the mode was set by the umask)."""
    gid = group_id(group)
    if gid is not None:
        os.chown(path, -1, gid, follow_symlinks=False)


def remove(path: Path, inode: int | None) -> None:
    """Remove our socket at shutdown, but not one a successor has since bound."""
    with contextlib.suppress(FileNotFoundError):
        st = path.lstat()
        if inode is None or st.st_ino == inode:
            path.unlink()
