"""Stand-ins for unit tests: a gRPC servicer context and a programmable key backend.

Why fakes here and not in the suites: the servicers' unit tests and the fuzz
targets call servicers in-process, without a socket, and need the same
context; a backend whose answers and failures the test sets is what lets a
servicer test prove translation alone (the real backends have suites of
their own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from kms_appliance import service
from kms_appliance.audit import AuditLog
from kms_appliance.backends.base import KeyBackend, KeyStatus, Unwrapped, Wrapped
from kms_appliance.metrics import Metrics


class FakeContext:
    """What a servicer may call on its context; records code and details."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode = grpc.StatusCode.OK
        self.details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


@dataclass
class FakeBackend:
    """A KeyBackend that "wraps" by prefixing the key id and records every call; ``fail``
    (an exception) is raised by the next wrap or unwrap instead."""

    key_id: str = "fake:1"
    healthy: bool = True
    reason: str = "ok"
    annotations: Mapping[str, bytes] = field(default_factory=dict)
    fail: BaseException | None = None
    name: str = "fake"
    refresh_interval: float = 60.0
    calls: list[tuple[str, bytes, str | None, Mapping[str, bytes]]] = field(default_factory=list)

    def _raise(self) -> None:
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc

    def wrap(self, plaintext: bytes) -> Wrapped:
        self.calls.append(("wrap", plaintext, None, {}))
        self._raise()
        return Wrapped(self.key_id.encode() + b"|" + plaintext, self.key_id, "1", self.annotations)

    def unwrap(self, ciphertext: bytes, key_id: str | None, annotations: Mapping[str, bytes]) -> Unwrapped:
        self.calls.append(("unwrap", ciphertext, key_id, dict(annotations)))
        self._raise()
        return Unwrapped(ciphertext.partition(b"|")[2], self.key_id, "1")

    def status(self) -> KeyStatus:
        return KeyStatus(self.key_id, "/fake", "1", self.healthy, self.reason)

    def refresh(self) -> bool:
        return False

    def close(self) -> None:
        return None


@contextlib.contextmanager
def servicers(backend: KeyBackend, audit_file: Path) -> Iterator[service.Servicers]:
    """The real v2 and v1 servicers over ``backend``, auditing to ``audit_file`` as they write."""
    audit = AuditLog(str(audit_file), 0)
    try:
        yield service.servicers(backend, Metrics(), audit)
    finally:
        audit.close()
