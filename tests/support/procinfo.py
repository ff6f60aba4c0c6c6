"""What a process and its descendants hold, read from /proc: descriptors, threads, memory.

The plugin is a tree: the frozen binary is a chain of three processes, and
with ``server.allowed_uids`` the peer gate runs in a child of its own. What
the plugin holds is what the whole tree holds, so every figure here sums it.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path

from .procs import descendants, parse_status, status_fields


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    return [pid, *descendants(pid)]


def by_process(pid: int, entry: str = "fd") -> dict[int, int]:
    """Entries of /proc/<p>/<entry> for each process of the tree (one that ended meanwhile is left out)."""
    held: dict[int, int] = {}
    for p in tree(pid):
        with contextlib.suppress(OSError):
            held[p] = len(os.listdir(f"/proc/{p}/{entry}"))
    return held


def fds(pid: int) -> int:
    return sum(by_process(pid).values())


def threads(pid: int) -> int:
    return sum(by_process(pid, "task").values())


def thread_names(pid: int) -> Counter[str]:
    """Threads by kernel name (grpc names its own; Python threads keep the process's name)."""
    names: Counter[str] = Counter()
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    names[Path(f"/proc/{p}/task/{tid}/comm").read_text().strip()] += 1
    return names


def fd_targets(pid: int) -> set[str]:
    """What the descriptors of ``pid`` itself (not its tree) point at: paths, socket:[inode], ..."""
    out = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed while we looked
            out.add(os.readlink(f"/proc/{pid}/fd/{name}"))
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` plus the private memory of its descendants (a forked child's RSS counts
    every page it still shares with its parent; only its private pages are memory it adds)."""
    total = int(status_fields(pid)["VmRSS"].split()[0])
    for child in tree(pid)[1:]:
        with contextlib.suppress(OSError):  # ended while we looked
            rollup = parse_status(Path(f"/proc/{child}/smaps_rollup").read_text())
            total += sum(int(rollup[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))
    return total
