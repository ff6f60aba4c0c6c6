"""Safe handling of the socket path and its directory.

File permissions are the first, kernel-enforced control over who may talk to
the plugin, so the directory and the socket must be exactly what we expect
before we bind, and the socket must be born with its final mode (through the
umask at bind time) rather than widened afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import SetupError, shown

log = logging.getLogger(__name__)
PROBE_TIMEOUT = 1.0
# bind path (/proc/self/fd/N/name) -> (fd holding the path's lock, (st_dev, st_ino) of the
# directory fd N); released by remove(), or dropped once fd N is closed (see _drop_stale).
_LOCKS: dict[str, tuple[int, tuple[int, int]]] = {}


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
        raise SetupError(f"socket group {shown(group)} does not exist") from None


def check_socket_dir(directory: Path, group: str | None, create: bool = True) -> None:
    """Create the directory with a safe mode, or refuse an unsafe existing one."""
    try:
        st = directory.lstat()
    except FileNotFoundError:
        if not create:
            raise SetupError(f"socket directory {directory} does not exist") from None
        _create_dir(directory, group)
        return
    except OSError as exc:  # ENOTDIR, EACCES, ELOOP on a component of the path
        raise SetupError(f"socket directory {directory}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SetupError(f"socket directory {directory} is a symlink; refusing to follow it")
    check_dir_stat(directory, st, group)


def check_dir_stat(directory: Path, st: os.stat_result, group: str | None) -> None:
    """The ownership and mode rules, on a stat of the path or of an open descriptor."""
    if not stat.S_ISDIR(st.st_mode):
        raise SetupError(f"socket directory {directory} is not a directory")
    if st.st_mode & 0o002:
        raise SetupError(f"socket directory {directory} is writable by others "
                           f"(mode {stat.S_IMODE(st.st_mode):04o})")
    if st.st_uid not in (0, os.geteuid()):
        raise SetupError(f"socket directory {directory} is owned by uid {st.st_uid}, "
                           "another non-root user")
    if st.st_mode & 0o020 and st.st_gid != group_id(group):
        raise SetupError(f"socket directory {directory} is group-writable by a group "
                           "other than the socket group")


def _create_dir(directory: Path, group: str | None) -> None:
    """mkdir with the final mode; a concurrent creator (another plugin starting) is not an error.

    On EEXIST the directory someone else just made gets exactly the checks an
    existing one gets: two plugins racing to start must end with one serving
    and the other refusing cleanly, never with a FileExistsError traceback.
    """
    dir_mode, _ = modes(group)
    try:
        directory.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with umask(0o777 & ~dir_mode):
            os.mkdir(directory, dir_mode)
    except FileExistsError:
        check_socket_dir(directory, group, create=False)
        return
    except OSError as exc:
        raise SetupError(f"cannot create socket directory {directory}: {exc.strerror}") from None
    gid = group_id(group)
    if gid is not None:
        # setgid: the socket is born in the socket group, with no window in the primary group.
        # Through an O_NOFOLLOW descriptor: a directory swapped for a symlink is not followed.
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchown(fd, -1, gid)
                os.fchmod(fd, dir_mode | stat.S_ISGID)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SetupError(f"cannot give socket directory {directory} to socket group "
                               f"{shown(group)}: {exc.strerror}") from None


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
            raise SetupError(f"cannot probe existing socket {path}: {exc.strerror}") from None
        return True


def clear_stale(path: Path) -> None:
    """Remove a dead socket left by a crash; refuse anything else at the path."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise SetupError(f"socket path {path} is a symlink; refusing to use it")
    if not stat.S_ISSOCK(st.st_mode):
        raise SetupError(f"socket path {path} exists and is not a socket; refusing to remove it")
    if probe(path):
        raise SetupError(f"another process is already serving on {path}")
    path.unlink(missing_ok=True)


def prepare(path: Path, group: str | None) -> tuple[int, Path]:
    """Everything that must hold before binding; returns (dir fd, path to bind through it).

    The directory is opened O_NOFOLLOW and re-checked through the descriptor,
    and the socket is bound via ``/proc/self/fd/N/<name>``: a directory
    swapped for a symlink after the path check cannot redirect the bind.
    """
    check_socket_dir(path.parent, group)
    _drop_stale()
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SetupError(f"cannot open socket directory {path.parent}: {exc.strerror}") from None
    try:
        st = os.fstat(dir_fd)
        check_dir_stat(path.parent, st, group)
        open_to_group(dir_fd, path, st, group)
        if reason := parent_writable(path.parent):
            log.warning("%s", reason)
        bind_path = Path(f"/proc/self/fd/{dir_fd}") / path.name
        _hold(bind_path, lock(dir_fd, path), (st.st_dev, st.st_ino))
        try:
            clear_stale(bind_path)
        except SetupError as exc:  # name the configured path, not /proc/self/fd/N/<name>
            raise SetupError(exc.message.replace(os.fspath(bind_path), os.fspath(path))) from None
    except BaseException:
        release(Path(f"/proc/self/fd/{dir_fd}") / path.name)
        os.close(dir_fd)
        raise
    return dir_fd, bind_path


def lock_name(path: Path) -> str:
    return f".{path.name}.lock"


def lock(dir_fd: int, path: Path) -> int:
    """Hold the socket path's lock (flock on ``.<name>.lock``) or refuse: one plugin per path.

    Why: gRPC unlinks whatever sits at a UNIX socket path before it binds, so
    two plugins that both found no live socket would both "serve", every one
    but the last on a socket nobody can reach (28 of 40 racing starts did).
    The lock decides the race; it dies with the process, so a crash leaves
    nothing stale to clean.
    """
    name = lock_name(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise SetupError(f"cannot open lock file {path.parent / name}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SetupError(f"lock file {path.parent / name} is not a regular file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise SetupError(f"another process is already serving on {path}") from None
        raise SetupError(f"cannot lock {path.parent / name}: {exc.strerror}") from None
    return fd


def _hold(bind_path: Path, fd: int, directory: tuple[int, int]) -> None:
    # A key still present belongs to a server whose directory fd was closed (its number was
    # free to be reused): that lock is stale within this process.
    release(bind_path)
    _LOCKS[os.fspath(bind_path)] = (fd, directory)


def release(bind_path: Path) -> None:
    """Let a successor start on this path (called once our socket is gone)."""
    held = _LOCKS.pop(os.fspath(bind_path), None)
    if held is not None:
        os.close(held[0])


def _drop_stale() -> None:
    """Release locks of servers in this process that closed their directory without remove().

    (A server that never bound closes only its directory fd.) The fd number in
    the key is then closed, or reused for another directory.
    """
    for key, (_, directory) in list(_LOCKS.items()):
        try:
            st = os.fstat(int(Path(key).parent.name))
        except OSError:
            release(Path(key))
            continue
        if (st.st_dev, st.st_ino) != directory:
            release(Path(key))


def group_blocked(st: os.stat_result, group: str | None) -> bool:
    """True when members of the socket group cannot reach a socket in this directory."""
    gid = group_id(group)
    if gid is None or st.st_mode & 0o001:
        return False
    return not (st.st_mode & 0o010 and st.st_gid == gid)


def open_to_group(dir_fd: int, path: Path, st: os.stat_result, group: str | None) -> None:
    """Make an existing directory of ours what we would have created for ``socket_group``.

    Why fix rather than refuse: ``socket_group`` says who may connect, and a
    directory left 0700 by an earlier run without the setting (or by a
    RuntimeDirectory default) silently defeats it: the plugin serves, and
    every group member gets EACCES. A directory we own is ours to set to
    2750 in the group (through the O_NOFOLLOW descriptor, so a swapped path
    cannot redirect it). One owned by someone else, or holding an entry the
    group could then read (``/root/kms.sock`` must not open /root's 0644
    files to a group; the systemd unit's private 0750 ``tmp/`` is fine), is
    refused with the reason.
    """
    gid = group_id(group)
    if gid is None or not group_fix_needed(dir_fd, path, st, group):
        return
    dir_mode, _ = modes(group)
    try:
        os.fchown(dir_fd, -1, gid)
        os.fchmod(dir_fd, dir_mode | stat.S_ISGID)
    except OSError as exc:  # EINVAL: the group is not mapped in our user namespace (PrivateUsers)
        raise SetupError(f"cannot give socket directory {path.parent} to socket group "
                           f"{shown(group)}: {exc.strerror}") from None
    log.warning("socket directory %s was mode %04o gid %d: set to %04o in socket group %s",
                path.parent, stat.S_IMODE(st.st_mode), st.st_gid, dir_mode | stat.S_ISGID, shown(group))


def group_fix_needed(dir_fd: int, path: Path, st: os.stat_result, group: str | None) -> bool:
    """True if :func:`open_to_group` will change the directory; SetupError if it may not."""
    if not group_blocked(st, group):
        return False
    directory = path.parent
    problem = (f"socket directory {directory} (mode {stat.S_IMODE(st.st_mode):04o}, gid {st.st_gid}) "
               f"keeps socket group {shown(group)} out")
    if st.st_uid != os.geteuid():
        raise SetupError(f"{problem}, and it is not ours to change: make it 2750 in that group")
    exposed = _exposed_entries(dir_fd, path, group_id(group))
    if exposed:
        raise SetupError(f"{problem}, and opening it would let the group read {len(exposed)} "
                           "other entries, so it is not changed: make it 2750 in that group, "
                           "or use a directory of its own")
    return True


def _exposed_entries(dir_fd: int, path: Path, gid: int | None) -> list[str]:
    """Entries besides ours whose own mode would let the socket group (or anyone) in."""
    ours = (path.name, lock_name(path))
    exposed = []
    for name in os.listdir(dir_fd):
        if name in ours or name.startswith(".kms-inner-"):
            continue
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) or st.st_mode & 0o007 or (st.st_gid == gid and st.st_mode & 0o070):
            exposed.append(name)
    return exposed


def parent_writable(directory: Path) -> str | None:
    """Why the socket directory's parent lets another user replace it, or None.

    Whoever may write the parent can rename our directory away and put their
    own in its place (before a restart, or between our check and our bind):
    the apiserver then sends its DEKs to their socket. A sticky parent (like
    /tmp) forbids renaming another user's entry, so it does not count.
    """
    parent = directory.parent
    try:
        st = parent.stat()
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    who = None
    if st.st_uid not in (0, os.geteuid()):
        who = f"its owner uid {st.st_uid}"
    elif mode & 0o002 and not mode & stat.S_ISVTX:
        who = "every user"
    elif mode & 0o020 and not mode & stat.S_ISVTX and st.st_gid != 0:
        who = f"group {st.st_gid}"
    if who is None:
        return None
    return (f"the socket directory's parent {parent} (mode {mode:04o}) is writable by {who}, "
            f"who can replace {directory.name}/ and receive the apiserver's DEKs: make it 0755 root")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Temporarily set the process umask (process-wide, and other threads already run).

    Safe because a mask only removes bits and every file the plugin creates names its
    mode explicitly (0600: audit log, token and keyring files via atomicfile), so a file
    created by another thread inside this window can only end up stricter, never wider.
    """
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
    try:
        with contextlib.suppress(FileNotFoundError):
            st = path.lstat()
            if inode is None or st.st_ino == inode:
                path.unlink()
    finally:
        release(path)
