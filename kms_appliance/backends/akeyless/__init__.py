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


class Sequence:
    """The one sequence that builds the backend: detect the auth method and log in, then
    describe the key and hold its state (envelope mode: its first intermediate key).

    ``serve`` runs it whole (:func:`create`); ``check`` runs it a step at a time and reports
    each on its own line (:mod:`.preflight`), so the two cannot disagree on what a
    configuration needs.
    """

    def __init__(self, cfg: Config, metrics: Metrics, env: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.env = dict(os.environ) if env is None else dict(env)
        self.client: AkeylessClient | None = None
        self.auth: Authenticator | None = None

    def login(self) -> tuple[str, list[str]]:
        """Detect the method and log in; (method, how it was detected). SetupError names it."""
        s, timeout = self.cfg.akeyless, self.cfg.server.call_timeout
        method, how = detect(s, self.env)
        self.client = AkeylessClient(client_options(self.cfg), self.metrics)
        self.auth = Authenticator(s, self.client, self.metrics, method, timeout, env=self.env)
        try:
            self.auth.login(time.monotonic() + timeout)
        except KmsError as exc:
            raise SetupError(f"Akeyless authentication ({method}) failed: {exc.message}") from None
        return method, how

    def backend(self, cache: bool = True) -> ModalBackend:
        """Describe the key (exists, enabled, AES) and build the backend over it.

        ``cache``: the decrypt cache as configured (``check`` builds none: it decrypts once).
        """
        if self.client is None or self.auth is None:
            raise SetupError("not authenticated")
        s, c = self.cfg.akeyless, self.cfg.cache
        dek_cache = (DecryptCache[tuple[bytes, int]](c.size, c.ttl, self.metrics)
                     if cache and c.enabled else None)
        return ModalBackend(self.client, self.auth, s.key_name, self.cfg.server.call_timeout,
                            s.refresh_interval, self.metrics, dek_cache, mode=s.mode)

    def close(self) -> None:
        """Stop token renewal, forget the token, release the connection pool."""
        if self.auth is not None:
            self.auth.close()
        if self.client is not None:
            self.client.close()


def create(cfg: Config, metrics: Metrics, env: Mapping[str, str] | None = None,
           start: bool = True, threads: Supervisor | None = None) -> AkeylessBackend:
    """Build, authenticate and validate the backend; SetupError says what is wrong."""
    seq = Sequence(cfg, metrics, env)
    try:
        seq.login()
        backend = seq.backend()
    except BaseException:
        seq.close()
        raise
    if start and seq.auth is not None:
        seq.auth.start(threads)
    return backend


__all__ = ["ANNOTATION", "AkeylessBackend", "ModalBackend", "Sequence", "create"]
