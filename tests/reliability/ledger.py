"""The session-wide ledger behind the secret-hygiene check.

Every test in tests/reliability and tests/fuzz that makes the plugin write
something registers it here (plugin processes: stdout, stderr, audit file,
HTTP bodies; gRPC error details; files in its work directory), and every
secret it used (access keys, tokens, UID tokens, DEKs, seeds, KEK bytes).
tests/reliability/test_zz_secret_hygiene.py scans all of it at the end of
the session. Secrets and outputs are kept in memory only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from tests.support import plugin as pm

_lock = threading.Lock()
SECRETS: set[bytes] = set()
TEXTS: list[bytes] = []
PLUGINS: list[pm.Plugin] = []
DIRS: list[Path] = []
MAX_SECRETS = 200_000


def secret(*values: bytes | str) -> None:
    """Record secrets (str is encoded); short values are ignored by the scan."""
    with _lock:
        for v in values:
            raw = v.encode() if isinstance(v, str) else bytes(v)
            if len(raw) >= 8 and len(SECRETS) < MAX_SECRETS:
                SECRETS.add(raw)


def secrets(values: Iterable[bytes | str]) -> None:
    secret(*values)


def text(*values: bytes | str) -> None:
    """Record something the plugin returned (error details, HTTP bodies)."""
    with _lock:
        for v in values:
            TEXTS.append(v.encode() if isinstance(v, str) else bytes(v))


def plugin(p: pm.Plugin) -> pm.Plugin:
    """Record a plugin process; its outputs are read at scan time."""
    with _lock:
        PLUGINS.append(p)
        DIRS.append(p.workdir)
    return p


def before_removal(top: Path) -> None:
    """Read now what the plugins under ``top`` wrote (a fixture is about to delete it); the scan
    at the end of the session covers it as text."""
    with _lock:
        for p in [p for p in PLUGINS if p.workdir.is_relative_to(top)]:
            TEXTS.append(p.written())
            PLUGINS.remove(p)
        DIRS[:] = [d for d in DIRS if not d.is_relative_to(top)]


def directory(path: Path) -> None:
    with _lock:
        DIRS.append(path)
