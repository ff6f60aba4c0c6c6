"""The real servicers, server and local backend built in-process (fuzzing, TOCTOU)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kms_appliance import service
from kms_appliance.audit import AuditLog, line
from kms_appliance.backends import keyring
from kms_appliance.backends.local import LocalBackend
from kms_appliance.config import ServerSettings
from kms_appliance.metrics import Metrics
from kms_appliance.server import PluginServer
from tests.support import ledger


class CapturingAudit:
    """Stands where AuditLog stands; keeps the last record as written, and counts them. Not
    deferred, so each call's record is here when the call returns."""

    deferred = False

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.count = 0

    def event(self, **fields: Any) -> None:
        self.write(line(fields, 0.0))

    def write(self, lines: str) -> None:
        for text in lines.splitlines():
            self.last = json.loads(text)
            self.count += 1


def local_backend(directory: Path, versions: int = 2) -> LocalBackend:
    """A keyring with ``versions`` versions (its KEKs go to the hygiene ledger)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "keyring.json"
    keyring.init(path)
    for _ in range(versions - 1):
        keyring.rotate(path)
    ledger.secrets(e.material for e in keyring.load(path).entries)
    return LocalBackend(path)


def server(directory: Path, socket: Path, backend: Any = None, in_memory: bool = False, **over: Any) -> PluginServer:
    """The server on ``socket`` (not started), auditing to ``directory``/audit.log; a local
    backend of its own in ``directory``/ring unless given one."""
    if backend is None:
        backend = local_backend(directory / "ring")
    audit = AuditLog(str(directory / "audit.log"))
    metrics = Metrics()
    settings = dataclasses.replace(ServerSettings(), socket=socket, **over)
    return service.server(settings, service.servicers(backend, metrics, audit), metrics, in_memory=in_memory)


@contextlib.contextmanager
def serving(directory: Path, backend: Any = None, in_memory: bool = False, **over: Any) -> Iterator[PluginServer]:
    """``server`` started, on ``directory``/sock/kms.sock; stopped on the way out."""
    (directory / "sock").mkdir(mode=0o700)
    srv = server(directory, directory / "sock" / "kms.sock", backend, in_memory, **over)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(1.0)
