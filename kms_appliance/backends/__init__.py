"""Key backends: the only place where key material lives.

The Akeyless backend (and with it the SDK, ~0.5 s and tens of MB to import)
is imported only when it is selected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .base import KeyBackend

if TYPE_CHECKING:
    from ..config import Config
    from ..metrics import Metrics
    from ..threads import Supervisor

log = logging.getLogger("kms_appliance.backends")


def create(cfg: Config, metrics: Metrics, threads: Supervisor | None = None) -> KeyBackend:
    """Build the configured backend; the local one is never chosen silently.

    ``threads``: the app's supervisor, for the backend's long-lived threads.
    """
    if cfg.server.backend == "akeyless":
        from . import akeyless  # noqa: PLC0415 - keep the SDK off other backends' start-up

        return akeyless.create(cfg, metrics, threads=threads)
    if not cfg.backend_explicit:
        log.warning("no backend configured: using the LOCAL keyring backend (%s), meant for "
                    "development and tests; set server.backend explicitly in production",
                    cfg.local.keyring)
    from .local import LocalBackend  # noqa: PLC0415

    return LocalBackend(cfg.local.keyring, cfg.local.reload_interval)
