"""The frozen binary's unpack directories: what a start removes after a SIGKILLed predecessor."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

import pytest

from kms_appliance import unpack

OLD = time.time() - 3600  # long settled


def _unpack_dir(parent: Path, name: str, mtime: float = OLD, ours: bool = True) -> Path:
    """A directory as the binary's bootloaders unpack it (``ours``), or another program's."""
    d = parent / name
    d.mkdir()
    (d / "lib.so").write_bytes(b"x" * 1024)
    if ours:
        marker = unpack.ONEFILE if name.startswith("staticx-") else "akeyless-5.0.40.dist-info"
        (d / marker).mkdir()
    os.utime(d, (mtime, mtime))
    return d


def test_a_killed_starts_directories_are_removed_ours_and_others_kept(tmp_path: Path) -> None:
    dead = [_unpack_dir(tmp_path, "staticx-AbCdEf"), _unpack_dir(tmp_path, "_MEI123456")]
    ours = [_unpack_dir(tmp_path, "staticx-Ours12"), _unpack_dir(tmp_path, "_MEI999999")]
    starting = _unpack_dir(tmp_path, "_MEI222222", mtime=time.time())  # not settled: no lock yet
    unrelated = _unpack_dir(tmp_path, "cache-dir")
    other_programs = [_unpack_dir(tmp_path, "staticx-Other1", ours=False),
                      _unpack_dir(tmp_path, "_MEI777777", ours=False)]
    plain_file = tmp_path / "_MEI333333"
    plain_file.write_bytes(b"")
    target = _unpack_dir(tmp_path, "precious")
    (tmp_path / "staticx-link").symlink_to(target)

    removed = unpack.sweep(tmp_path, ours)

    assert removed == ["_MEI123456", "staticx-AbCdEf"]
    assert not any(d.exists() for d in dead)
    assert all(d.exists() for d in [*ours, starting, unrelated, *other_programs, target, plain_file])
    assert (target / "lib.so").exists() and (tmp_path / "staticx-link").is_symlink()


def test_hold_takes_a_shared_lock_a_sweeper_cannot_break(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What a serving start (or a concurrent `check` in the same pod) holds is never swept: a flock
    belongs to an open file description, so one held by another process acts as this one does."""
    held: list[int] = []
    monkeypatch.setattr(unpack, "_held", held)
    d = _unpack_dir(tmp_path, "staticx-Held01")
    unpack.hold([d])
    assert len(held) == 1
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:  # another open file description, as a sweeping process has
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert unpack.sweep(tmp_path, []) == [] and (d / "lib.so").exists()
    os.close(held.pop())  # the lock goes with its holder
    assert unpack.sweep(tmp_path, []) == ["staticx-Held01"]


def test_own_dirs_come_from_the_bootloaders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATICX_BUNDLE_DIR", "/tmp/staticx-XyZ123")
    monkeypatch.setattr(sys, "_MEIPASS", "/tmp/_MEI42", raising=False)
    assert unpack.own_dirs() == [Path("/tmp/staticx-XyZ123"), Path("/tmp/_MEI42")]
    monkeypatch.setenv("STATICX_BUNDLE_DIR", "/")  # never a parent or anything not so named
    monkeypatch.delattr(sys, "_MEIPASS")
    assert unpack.own_dirs() == []
