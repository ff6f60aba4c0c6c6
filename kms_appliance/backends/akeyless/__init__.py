"""The Akeyless backend: KEK in Akeyless through the official SDK.

Imported by :mod:`kms_appliance.backends` only when the akeyless backend is
selected; the SDK itself is loaded lazily by :mod:`.sdk` when the client
is built, so neither lands on other backends' start-up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from ...config import Config
from ...errors import KmsError, SetupError
from ...metrics import Metrics
from ...threads import Supervisor
from ..cache import DecryptCache
from .auth import Authenticator
from .backend import ANNOTATION, AkeylessBackend
from .client import AkeylessClient, ClientOptions
from .envelope_mode import ModalBackend
from .methods import detect


def client_options(cfg: Config) -> ClientOptions:
    """Client settings from the configuration."""
    s = cfg.akeyless
    return ClientOptions(url=s.url, timeout=min(s.timeout, cfg.server.call_timeout),
                         ca_file=s.ca_file, cert_file=s.cert_file, key_file=s.key_file,
                         proxy=s.proxy, key_name=s.key_name)


def create(cfg: Config, metrics: Metrics, env: Mapping[str, str] | None = None,
           start: bool = True, threads: Supervisor | None = None) -> AkeylessBackend:
    """Build, authenticate and validate the backend; SetupError says what is wrong."""
    env = dict(os.environ) if env is None else env
    s = cfg.akeyless
    method, _ = detect(s, env)
    client = AkeylessClient(client_options(cfg), metrics)
    auth = Authenticator(s, client, metrics, method, cfg.server.call_timeout, env=env)
    try:
        auth.login(time.monotonic() + cfg.server.call_timeout)
    except KmsError as exc:
        client.close()
        raise SetupError(f"Akeyless authentication ({method}) failed: {exc.message}") from None
    cache = (DecryptCache[tuple[bytes, int]](cfg.cache.size, cfg.cache.ttl, metrics)
             if cfg.cache.enabled else None)
    try:
        backend = ModalBackend(client, auth, s.key_name, cfg.server.call_timeout,
                               s.refresh_interval, metrics, cache, mode=s.mode)
    except BaseException:
        client.close()
        raise
    if start:
        auth.start(threads)
    return backend


__all__ = ["ANNOTATION", "AkeylessBackend", "ModalBackend", "create"]
