"""The KMS service built one way: call accounting, both servicers, the server that carries them.

Why one builder: the app, the in-process tests and the bench all need the
same parts wired the same way (one :class:`~.kms.calls.Calls` shared by the
v2 and v1 servicers, so a call is accounted identically whichever API it came
by). Built in one place, a test or a benchmark measures the plugin as it is
deployed, not a copy of its wiring that may have drifted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .backends.base import KeyBackend
from .config import ServerSettings
from .gateproc import RefusalSink
from .kms.calls import Calls
from .kms.v1 import V1Servicer
from .kms.v2 import ChangeSink, StatusWatcher, V2Servicer
from .metrics import Metrics
from .server import PluginServer
from .threads import Supervisor


@dataclass(frozen=True)
class Servicers:
    """KMS v2 and v1beta1 over one backend, reporting to one :class:`Calls`."""

    v2: V2Servicer
    v1: V1Servicer
    calls: Calls


def _ignore(*_: Any) -> None:
    return None


def servicers(backend: KeyBackend, metrics: Metrics, audit: Any,
              on_status_change: ChangeSink = _ignore) -> Servicers:
    """The servicers over ``backend``; ``audit`` is an AuditLog (or a test's stand-in).

    ``on_status_change``: called when a Status answer differs from the previous one.
    """
    calls = Calls(metrics, audit, backend.name, backend.status().key_name)
    return Servicers(V2Servicer(backend, calls, StatusWatcher(on_status_change)),
                     V1Servicer(backend, calls), calls)


def server(settings: ServerSettings, svc: Servicers, metrics: Metrics, *,
           on_refuse: RefusalSink = _ignore, threads: Supervisor | None = None,
           in_memory: bool = False) -> PluginServer:
    """The server on ``settings.socket`` carrying ``svc`` (not started).

    ``in_memory``: the backend answers from memory and audit records are queued, so
    Encrypt and Decrypt are first tried in the event loop (see :mod:`.inline`).
    """
    return PluginServer(settings, svc.v2, svc.v1, on_refuse, metrics.connections.set,
                        threads=threads, in_memory=in_memory)
