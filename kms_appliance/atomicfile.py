"""Safe paths for files the plugin writes: one directory walk, one atomic writer.

Why one module: the keyring, the rotated UID token and the audit log all
live in directories another local user might be able to touch. A path is
therefore never resolved by the kernel in one go: it is opened component by
component with ``O_NOFOLLOW`` (a symlinked component is refused, so a
directory swapped for a symlink cannot redirect a write), the final
directory is checked through its descriptor (owned by root or by us, not
writable by another user), and files are created relative to that
descriptor. :func:`write` replaces a file atomically: a random temporary
name created ``O_EXCL|O_NOFOLLOW`` with mode 0600 (a name an attacker
pre-created or pointed elsewhere is never opened), fsync, rename, fsync of
the directory, then a check that the name now holds our inode, owned by us.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from .errors import ConfigError, shown

PATH_MAX = 4096  # bytes, including the terminating NUL (Linux)
NAME_MAX = 255  # bytes per component
SHOWN = 120  # longest path quoted in a message
# O_PATH: walking through a directory needs only search (x) permission, as path resolution does.
_WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path or what sits at it is not safe to write; ``strerror`` says why (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EPERM, reason)


def show(path: Path | str) -> str:
    """A path for a message: bounded, so a 4 kB argument cannot flood a log line (errors.shown:
    control characters escaped too, so a path cannot forge a log line)."""
    return shown(os.fspath(path), limit=SHOWN)


def check_path(key: str, path: Path | str) -> Path:
    """The syntax rules, before any system call: a ConfigError naming ``key`` on failure."""
    text = os.fspath(path)
    if not text.strip() or "\0" in text:
        raise ConfigError(key, "must be a non-empty path")
    raw = os.fsencode(text)
    if len(raw) >= PATH_MAX:
        raise ConfigError(key, f"is {len(raw)} bytes long; a path may have at most {PATH_MAX - 1}")
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > NAME_MAX:
        raise ConfigError(key, f"has a component of {longest} bytes; at most {NAME_MAX} are allowed")
    return Path(os.path.abspath(text))


def open_dir(directory: Path) -> int:
    """Open an absolute directory component by component, never following a symlink.

    Raises ``UnsafePath`` for a symlinked or non-directory component and
    plain ``OSError`` (ENOENT, EACCES, ...) for the rest; the caller closes the fd.
    """
    fd = os.open("/", _WALK_FLAGS)
    walked = Path("/")
    try:
        for part in Path(os.path.abspath(directory)).parts[1:]:
            walked = walked / part
            try:
                nfd = os.open(part, _WALK_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _not_a_directory(walked, fd, part) from None
                raise
            os.close(fd)
            fd = nfd
        # The last one for real (fsync needs it): "." of a descriptor follows nothing.
        last = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    return last


def _not_a_directory(walked: Path, parent_fd: int, part: str) -> UnsafePath:
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.stat(part, dir_fd=parent_fd, follow_symlinks=False).st_mode):
            return UnsafePath(f"directory component {show(walked)} is a symlink; refusing to follow "
                              f"it (give the real path, {show(os.path.realpath(walked))})")
    return UnsafePath(f"{show(walked)} is not a directory")


def check_dir(directory: Path, fd: int) -> None:
    """Refuse a directory another user could write: they could swap or pre-create our files."""
    st = os.fstat(fd)
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafePath(f"directory {show(directory)} is owned by uid {st.st_uid}, another user")
    if st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid not in (0, os.getegid())):
        raise UnsafePath(f"directory {show(directory)} is writable by other users "
                         f"(mode {stat.S_IMODE(st.st_mode):04o})")


def open_checked_dir(directory: Path) -> int:
    """:func:`open_dir` then :func:`check_dir`; the caller closes the fd."""
    fd = open_dir(directory)
    try:
        check_dir(directory, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Put ``data`` at ``path`` atomically, mode 0600, owned by us.

    ``replace=False`` refuses (FileExistsError) if something already sits
    at ``path``, atomically (link, not a check then a rename). Raises
    ``OSError`` (``UnsafePath`` for a refusal); never leaves a temporary file.
    """
    path = Path(os.path.abspath(path))
    dfd = open_checked_dir(path.parent)
    try:
        tmp = f".{path.name[:64]}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        try:
            ours = _fill(fd, data)
            _publish(dfd, tmp, path.name, replace)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        finally:
            os.close(fd)
        os.fsync(dfd)
        _verify(path, dfd, ours)
    finally:
        os.close(dfd)


def _fill(fd: int, data: bytes) -> os.stat_result:
    os.fchmod(fd, 0o600)  # whatever the umask, and even if the inode were somehow not fresh
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)
    return os.fstat(fd)


def _publish(dfd: int, tmp: str, name: str, replace: bool) -> None:
    if replace:
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        return
    os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    os.unlink(tmp, dir_fd=dfd)


def _verify(path: Path, dfd: int, ours: os.stat_result) -> None:
    """The name must now hold the inode we wrote: a swap between rename and here is caught."""
    st = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
    if (st.st_dev, st.st_ino) != (ours.st_dev, ours.st_ino) or st.st_uid != os.geteuid() \
            or stat.S_IMODE(st.st_mode) != 0o600:
        raise UnsafePath(f"{show(path)} was replaced by another file right after it was written")
