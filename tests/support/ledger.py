"""The session-wide ledger behind the secret-hygiene check.

Every plugin process is registered as it is made (tests/support/plugin.py), and every emulator's
access key; tests add what else the plugin wrote (error details, files) and every secret they
used. tests/reliability/test_zz_secret_hygiene.py scans it all; in every other session
tests/conftest.py runs ``leaks`` over what no scan covered yet. Kept in memory only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from . import secrets_scan


class Output(Protocol):
    """What the ledger needs of a plugin: where it works and every byte it wrote."""

    @property
    def workdir(self) -> Path: ...

    def written(self) -> bytes: ...


P = TypeVar("P", bound=Output)

_lock = threading.Lock()
SECRETS: set[bytes] = set()
TEXTS: list[bytes] = []
PLUGINS: list[Output] = []
DIRS: list[Path] = []
MAX_SECRETS = 200_000
_scanned = [0, 0]  # PLUGINS[:n], TEXTS[:m] are covered by a scan already


def secret(*values: bytes | str) -> None:
    """Record secrets (str is encoded); short values are ignored by the scan."""
    with _lock:
        for v in values:
            raw = v.encode() if isinstance(v, str) else bytes(v)
            if len(raw) >= 8 and len(SECRETS) < MAX_SECRETS:
                SECRETS.add(raw)


def secrets(values: Iterable[bytes | str]) -> None:
    secret(*values)


def new_secret(size: int = 32) -> bytes:
    """Fresh random bytes, recorded: a seed or DEK a test hands the plugin."""
    value = os.urandom(size)
    secret(value)
    return value


def text(*values: bytes | str) -> None:
    """Record something the plugin returned (error details, HTTP bodies)."""
    with _lock:
        for v in values:
            TEXTS.append(v.encode() if isinstance(v, str) else bytes(v))


def plugin(p: P) -> P:
    """Record a plugin process (once); its outputs are read at scan time."""
    with _lock:
        if not any(q is p for q in PLUGINS):
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


def mark_scanned() -> None:
    """Everything registered so far has been scanned (by a test that reports its own figures)."""
    with _lock:
        _scanned[:] = [len(PLUGINS), len(TEXTS)]


def outputs(plugins: Iterable[Output], texts: Iterable[bytes], texts_are: str) -> dict[bytes, str]:
    """What to scan, each distinct piece once, with where it came from: plugins restarted in
    one workdir write the same files, tests register the same refusal text many times, and the
    scan reads byte by byte."""
    found = {p.written(): str(p.workdir) for p in plugins}
    found[b"\n".join(dict.fromkeys(texts))] = texts_are
    return found


def leaks() -> list[str]:
    """Each registered secret found (raw, hex or base64) in what was registered since the last
    scan: where, and which secret by index and length, never the secret itself."""
    with _lock:
        plugins, texts = PLUGINS[_scanned[0]:], TEXTS[_scanned[1]:]
        _scanned[:] = [len(PLUGINS), len(TEXTS)]
        secrets = sorted(SECRETS)
    if not secrets:
        return []
    anchors = secrets_scan.index(secrets)
    return [f"{where}: secret #{i} ({len(secrets[i])} bytes)"
            for data, where in outputs(plugins, texts, "returned text").items()
            for i in sorted(secrets_scan.scan(data, anchors))]
