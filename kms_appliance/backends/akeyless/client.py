"""The one ApiClient of the process, and every remote call through it.

Why here: TLS, proxy, client certificate and pool settings are fixed when
the SDK's ApiClient is built, and the SDK's traps (a float timeout is
silently ignored, urllib3 retries POST connects on its own, debug logging
dumps bodies, ``X-Forwarded-For`` is recomputed through psutil on every
call) are easiest to defuse in one place. Each call gets a deadline; it is
retried with jittered exponential backoff only when the request is known
not to have been applied (connection refused/reset) or the answer was
429/5xx, and only while the deadline leaves room for another attempt.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...errors import BackendCorruption, BackendUnavailable, ConfigError
from ...metrics import Metrics
from . import sdk as sdk_mod
from .classify import RETRYABLE_STATUS, classify, http_status

log = logging.getLogger(__name__)

MAX_RETRIES = 2
BACKOFF_BASE = 0.05
MIN_ATTEMPT = 0.1
CONNECT_CAP = 2.0
POOL_SIZE = 32

# operation -> (request model, response model), exactly as the generated V2Api
# methods pass them to ApiClient.call_api (a unit test checks this against the
# real V2Api). Calling call_api directly spares importing the 77,000-line v2_api.
OPERATIONS: dict[str, tuple[str, str]] = {
    "auth": ("Auth", "AuthOutput"),
    "encrypt": ("Encrypt", "EncryptOutput"),
    "decrypt": ("Decrypt", "DecryptOutput"),
    "describe-item": ("DescribeItem", "Item"),
    "uid-rotate-token": ("UidRotateToken", "UidRotateTokenOutput"),
    "validate-token": ("ValidateToken", "ValidateTokenOutput"),
}
JSON = "application/json"
# Never retried once sent: a lost answer would leave us with a dead token.
NOT_IDEMPOTENT = frozenset({"uid-rotate-token"})


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What the client needs from the configuration."""

    url: str
    timeout: float
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    proxy: str = ""
    key_name: str = ""


def check_url(url: str) -> str:
    """Normalise the API URL; TLS is required unless the host is loopback."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("akeyless.url", "must be an http(s) URL such as https://api.akeyless.io")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError("akeyless.url", "must use https (plain http only to a loopback address)")
    return text


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals (no DNS lookup)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AkeylessClient:
    """Thread-safe wrapper over one SDK ApiClient."""

    def __init__(self, opts: ClientOptions, metrics: Metrics, backend: str = "akeyless") -> None:
        self.opts = opts
        self.url = check_url(opts.url)
        self.sdk = sdk_mod.load()
        self._metrics = metrics
        self._backend = backend
        self._conf = self._configuration()
        self._api_client = self.sdk.ApiClient(self._conf)
        self._api_client.set_default_header("X-Forwarded-For", _forwarded_for())
        self._bound: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _configuration(self) -> Any:
        conf = self.sdk.Configuration(host=self.url)
        conf.debug = False
        sdk_mod.quiet_sdk_logging()
        conf.retries = False  # our loop decides; urllib3 would retry POST connects itself
        conf.connection_pool_maxsize = POOL_SIZE
        conf.client_side_validation = True
        if self.opts.ca_file is not None:
            conf.ssl_ca_cert = str(self.opts.ca_file)
        if self.opts.cert_file is not None and self.opts.key_file is not None:
            conf.cert_file = str(self.opts.cert_file)
            conf.key_file = str(self.opts.key_file)
        if self.opts.proxy:
            conf.proxy = self.opts.proxy
        return conf

    def model(self, model_name: str, /, **fields: Any) -> Any:
        """Build a request model (sharing our Configuration: no per-call copy)."""
        cls = getattr(self.sdk.models, model_name)
        return cls(local_vars_configuration=self._conf, **fields)

    def call(self, op: str, deadline: float, /, *,
             validate: Callable[[Any], Any] | None = None, **fields: Any) -> Any:
        """Run one operation with retries inside ``deadline`` (monotonic).

        ``validate`` turns the SDK's answer into the caller's value or raises
        BackendCorruption; running it here puts corruption in the call's metric.
        """
        model_name, response_type = OPERATIONS[op]
        body = self.model(model_name, **fields)

        def method(timeout: tuple[float, float]) -> Any:
            return self._api_client.call_api(
                "/" + op, "POST", {}, [], {"Accept": JSON, "Content-Type": JSON}, body=body,
                post_params=[], files={}, response_type=response_type, auth_settings=[],
                _return_http_data_only=True, _preload_content=True, _request_timeout=timeout,
                collection_formats={})

        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT / 2:
                raise BackendUnavailable(f"Akeyless {op}: call deadline exceeded")
            try:
                return self._attempt(op, method, remaining, validate)
            except _Failed as failed:
                delay = self._retry_delay(op, failed, attempt, deadline)
                if delay is None:
                    raise failed.error from None
                time.sleep(delay)
                attempt += 1

    @staticmethod
    def _retry_delay(op: str, failed: _Failed, attempt: int, deadline: float) -> float | None:
        if attempt >= MAX_RETRIES or not failed.retryable:
            return None
        if op in NOT_IDEMPOTENT and not failed.unsent:
            return None
        delay = random.uniform(0, BACKOFF_BASE * (2**attempt))  # noqa: S311 - jitter only
        if time.monotonic() + delay + MIN_ATTEMPT > deadline:
            return None
        return delay

    def _attempt(self, op: str, method: Callable[[tuple[float, float]], Any], remaining: float,
                 validate: Callable[[Any], Any] | None) -> Any:
        timeout = min(remaining, self.opts.timeout)
        # A tuple: a bare float is silently ignored by the SDK (no timeout at all).
        request_timeout = (min(timeout, CONNECT_CAP), timeout)
        start = time.perf_counter()
        outcome = "ok"
        try:
            result = _non_empty(op, method(request_timeout))
            return validate(result) if validate is not None else result
        except Exception as exc:
            failed = _Failed(exc, op, self.opts.key_name, self.sdk)
            outcome = failed.error.outcome
            raise failed from None
        finally:
            self._record(op, outcome, time.perf_counter() - start)

    def _record(self, op: str, outcome: str, seconds: float) -> None:
        key = (op, outcome)
        pair = self._bound.get(key)
        if pair is None:
            m = self._metrics
            pair = (m.backend_calls.labels(self._backend, op, outcome),
                    m.backend_seconds.labels(self._backend, op))
            self._bound[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def close(self) -> None:
        """Close pooled connections."""
        try:
            self._api_client.rest_client.pool_manager.clear()
        except Exception:
            log.debug("closing the Akeyless connection pool failed")


def _non_empty(op: str, result: Any) -> Any:
    if result is None:
        raise BackendCorruption(f"Akeyless {op}: empty answer")
    return result


class _Failed(Exception):
    """One failed attempt: the typed error plus whether it may be retried."""

    def __init__(self, exc: BaseException, op: str, key_name: str, sdk: Any) -> None:
        super().__init__(op)
        self.error = classify(exc, op, key_name, sdk)
        status = http_status(exc, sdk.ApiException)
        self.unsent = _unsent(exc, sdk)
        transport = status is None and isinstance(self.error, BackendUnavailable)
        timed_out = isinstance(exc, sdk.urllib3.exceptions.TimeoutError)
        self.retryable = status in RETRYABLE_STATUS or (transport and not timed_out)


def _unsent(exc: BaseException, sdk: Any) -> bool:
    """True when the request certainly never reached the server (safe to resend)."""
    exceptions = sdk.urllib3.exceptions
    reason = getattr(exc, "reason", None)
    for candidate in (exc, reason):
        if isinstance(candidate, exceptions.NewConnectionError | exceptions.ConnectTimeoutError):
            return True
        if isinstance(candidate, ConnectionRefusedError):
            return True
    return False


def _forwarded_for() -> str:
    """The SDK's own X-Forwarded-For value, computed once instead of per call."""
    try:
        rest = importlib.import_module("akeyless.rest")  # loaded by sdk.load() already
        return str(rest.get_ip() or "")
    except Exception:
        return ""
