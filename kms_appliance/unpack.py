"""The frozen binary's unpack directories: held while we live, swept when a predecessor was killed.

Why: the static binary unpacks ~102 MiB at every start (staticx's
``staticx-*`` directory, then PyInstaller's ``_MEI*``) into TMPDIR, and its
bootloaders remove them at exit. A SIGKILL of the whole container (kubelet
after a failed liveness probe, the OOM killer) leaves both behind; in a
static pod TMPDIR is a memory emptyDir that outlives the container, so the
restarted container found no room to unpack and crash-looped until the pod
was deleted. So every command holds a shared ``flock`` on its own two
directories, and ``serve`` removes the ones nobody holds: they belong to a
process that is gone (the pod's emptyDir is sized for one leftover set and
a fresh unpack, kms_appliance/manifests.py).

What is never removed: anything but a real directory named like an unpack
directory and holding what ours hold (another frozen program's unpack under
the same uid in a shared /tmp stays), in the directory ours were unpacked
to, owned by our uid, last changed more than ``SETTLE`` seconds ago (a
process still starting has not taken its lock yet), and not locked by anyone. Removal never follows a
symlink (``shutil.rmtree`` works through directory descriptors here).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import sys
import time
from pathlib import Path

log = logging.getLogger("kms_appliance.unpack")

PREFIXES = ("staticx-", "_MEI")
# What an unpack directory of this binary holds: staticx's, the onefile program
# (build/pyinstaller.spec names it); PyInstaller's, the Akeyless SDK's metadata.
ONEFILE = "kms-appliance-onefile"
SETTLE = 10.0  # seconds: a start takes its locks well within this (ready in ~0.4 s)
_held: list[int] = []  # descriptors holding our locks, open until the process ends


def own_dirs() -> list[Path]:
    """Where this process was unpacked (empty when not frozen)."""
    found = [os.environ.get("STATICX_BUNDLE_DIR", ""), getattr(sys, "_MEIPASS", "")]
    return [Path(d) for d in found if d and os.path.basename(d.rstrip("/")).startswith(PREFIXES)]


def hold(dirs: list[Path]) -> None:
    """Share-lock ``dirs`` until exit, so that a sweeping start sees them in use."""
    for d in dirs:
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:  # no lock to be had: the directory is only kept by its age then
            os.close(fd)
            continue
        _held.append(fd)


def sweep(parent: Path, keep: list[Path], now: float | None = None) -> list[str]:
    """Remove unheld, settled unpack directories in ``parent`` except ``keep``; their names."""
    now = time.time() if now is None else now
    keep_names = {k.name for k in keep}
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    for name in sorted(names):
        if name.startswith(PREFIXES) and name not in keep_names and _remove_if_stale(parent, name, now):
            removed.append(name)
    return removed


def _remove_if_stale(parent: Path, name: str, now: float) -> bool:
    path = parent / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # not a directory, a symlink, gone, or not ours to read
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or now - st.st_mtime < SETTLE:
            return False
        if not _ours(name, os.listdir(fd)):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a live process runs from it
            return False
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)
    finally:
        os.close(fd)


def _ours(name: str, entries: list[str]) -> bool:
    if name.startswith("staticx-"):
        return ONEFILE in entries
    return any(e.startswith("akeyless-") and e.endswith(".dist-info") for e in entries)


def hold_own() -> None:
    """Every command, first: our unpack directories are in use until we exit."""
    hold(own_dirs())


def sweep_predecessors() -> None:
    """``serve``, once logging is set up: remove what a killed earlier start left behind."""
    dirs = own_dirs()
    for parent in {d.parent for d in dirs}:
        removed = sweep(parent, dirs)
        if removed:
            log.warning("removed %d unpack directories a killed earlier start left in %s",
                        len(removed), parent)
