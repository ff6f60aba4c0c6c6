"""Authentication: method detection, the token cache, renewal, UID rotation.

Why: every remote call needs a token, and getting one is a remote call that
can fail on its own. Tokens are therefore obtained once, renewed in the
background before they expire (``RENEW_MARGIN`` before, at most a quarter
of their lifetime), and re-obtained on demand only when Akeyless says a
token was rejected (once per failing call, never per call). A Universal
Identity token is rotated on schedule through ``/uid-rotate-token`` and
written back to its file atomically (0600) so a restart never starts from
a dead token; a failed rotation is a metric and a log line, not an outage,
until the token really dies.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import AkeylessSettings
from ...errors import AccessDenied, KmsError, StartupError
from ...metrics import Metrics
from . import cloudid
from .client import AkeylessClient

log = logging.getLogger("kms_appliance.backends.akeyless")

RENEW_MARGIN = 300.0
DEFAULT_LIFETIME = 900.0
RETRY_MIN, RETRY_MAX = 2.0, 60.0
CLOUD_METHODS = ("aws_iam", "azure_ad", "gcp")


@dataclass(frozen=True, slots=True)
class Token:
    """An auth token and when it stops working (wall clock, from Akeyless)."""

    value: str
    expires_at: float
    issued_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at:.0f})"

    @property
    def renew_at(self) -> float:
        lifetime = max(self.expires_at - self.issued_at, 1.0)
        return self.expires_at - min(RENEW_MARGIN, lifetime / 4)


# ---- secrets from settings ---------------------------------------------------------------


def read_secret_file(path: Path, what: str) -> str:
    """A secret file's first line; errors name the file, never the content."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartupError(f"cannot read the {what} file {path}: {exc.strerror}") from None


def access_key(s: AkeylessSettings) -> str:
    """The access key from the setting or its file ('' if neither)."""
    if s.access_key:
        return s.access_key.strip()
    if s.access_key_file is not None:
        return read_secret_file(s.access_key_file, "access key")
    return ""


def initial_uid_token(s: AkeylessSettings) -> str:
    """The rotated token file wins over the initial token (it is newer)."""
    if s.uid_token_file is not None and s.uid_token_file.exists():
        token = read_secret_file(s.uid_token_file, "Universal Identity token")
        if token:
            return token
    return s.uid_token.strip()


# ---- detection -----------------------------------------------------------------------


def detect(s: AkeylessSettings, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """The auth method to use and what was tried to find it.

    Order: access_type if set; an access key; a UID token; a k8s auth config
    name; then the machine's cloud identity (AWS, Azure, GCP metadata, each
    probed with a short timeout). Nothing found is a StartupError listing
    every step.
    """
    if s.access_type:
        return s.access_type, [f"access_type={s.access_type} (configured)"]
    tried: list[str] = []
    if access_key(s):
        return "access_key", ["access key present"]
    tried.append("access_key: no access key")
    if initial_uid_token(s):
        return "universal_identity", [*tried, "UID token present"]
    tried.append("universal_identity: no UID token")
    if s.k8s_auth_config_name:
        return "k8s", [*tried, "k8s_auth_config_name set"]
    tried.append("k8s: no k8s_auth_config_name")
    for method in CLOUD_METHODS:
        try:
            cloud_id(method, s, env)
        except KmsError as exc:
            tried.append(f"{method}: {exc.message}")
            continue
        return method, [*tried, f"{method}: identity obtained"]
    raise StartupError("no Akeyless auth method found; tried " + "; ".join(tried))


def cloud_id(method: str, s: AkeylessSettings, env: Mapping[str, str]) -> str:
    """The cloud-id proving this machine's identity for ``method``."""
    if method == "aws_iam":
        return cloudid.aws_cloud_id(cloudid.aws_credentials(env), cloudid.utcnow())
    if method == "azure_ad":
        return cloudid.azure_cloud_id(env, s.azure_object_id)
    return cloudid.gcp_cloud_id(env, s.gcp_audience or "akeyless.io")


def _b64_file(path: Path | None, what: str) -> str:
    if path is None:
        raise StartupError(f"cert auth needs akeyless.{what}")
    try:
        return base64.b64encode(path.read_bytes()).decode()
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror}") from None


def auth_fields(method: str, s: AkeylessSettings, uid_token: str,
                env: Mapping[str, str]) -> dict[str, Any]:
    """The /auth request fields (SDK model names) for ``method``."""
    fields: dict[str, Any] = {"access_id": s.access_id, "access_type": method}
    if method == "access_key":
        fields["access_key"] = access_key(s)
    elif method == "universal_identity":
        fields["uid_token"] = uid_token
    elif method in CLOUD_METHODS:
        fields["cloud_id"] = cloud_id(method, s, env)
        if method == "gcp":
            fields["gcp_audience"] = s.gcp_audience or "akeyless.io"
    elif method == "k8s":
        fields["k8s_auth_config_name"] = s.k8s_auth_config_name
        token = read_secret_file(s.k8s_token_file, "service-account token")
        fields["k8s_service_account_token"] = base64.b64encode(token.encode()).decode()
    elif method == "cert":
        fields["cert_data"] = _b64_file(s.cert_file, "cert_file")
        fields["key_data"] = _b64_file(s.key_file, "key_file")
    return fields


# ---- expiration --------------------------------------------------------------------------

_GO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.\d+)? ([+-]\d{4})")


def parse_expiration(text: object, fallback_epoch: object, now: float) -> float:
    """Epoch seconds of a token's expiry (ISO 8601 or Go's time format).

    The real format is not documented; an unparseable value falls back to
    ``creds.expiry`` and then to a conservative lifetime.
    """
    if isinstance(text, str) and text:
        match = _GO_TIME.match(text)
        candidate = f"{match[1]}T{match[2]}{match[3]}" if match else text.replace("Z", "+00:00")
        try:
            parsed = dt.datetime.fromisoformat(candidate)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
        except ValueError:
            pass
    if isinstance(fallback_epoch, int) and fallback_epoch > 0:
        return float(fallback_epoch)
    return now + DEFAULT_LIFETIME


def write_token_file(path: Path, token: str) -> None:
    """Replace ``path`` atomically with ``token`` (mode 0600, fsync'ed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---- the authenticator -------------------------------------------------------------------


class Authenticator:
    """Holds the current token; renews it and rotates the UID token in the background."""

    def __init__(self, settings: AkeylessSettings, client: AkeylessClient, metrics: Metrics,
                 method: str, call_timeout: float,
                 env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.method = method
        self._client = client
        self._metrics = metrics
        self._call_timeout = call_timeout
        self._env = dict(os.environ) if env is None else dict(env)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._uid_token = initial_uid_token(settings) if method == "universal_identity" else ""
        self._uid_expires: float | None = None
        self._next_rotate = time.monotonic() + settings.uid_rotate_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._published = False
        if method == "universal_identity" and not self._uid_token:
            raise StartupError("universal_identity auth needs akeyless.uid_token or uid_token_file")
        if method == "universal_identity" and settings.uid_token_file is None:
            log.warning("Universal Identity token has no uid_token_file: rotated tokens live in "
                        "memory only, and a restart must be given a fresh token")

    # -- tokens --

    def token(self, deadline: float) -> str:
        """A valid token, logging in if there is none or it has expired."""
        tok = self._token
        if tok is not None and self._clock() < tok.expires_at - 1:
            return tok.value
        with self._lock:
            tok = self._token
            if tok is not None and self._clock() < tok.expires_at - 1:
                return tok.value
            return self._login(deadline).value

    def rejected(self, value: str) -> None:
        """Akeyless refused ``value`` (401): forget it so the next call logs in again."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def login(self, deadline: float) -> Token:
        """Log in now (start-up, renewal)."""
        with self._lock:
            return self._login(deadline)

    def _login(self, deadline: float) -> Token:
        fields = auth_fields(self.method, self.settings, self._uid_token, self._env)
        out = self._client.call("auth", deadline, **fields)
        value = getattr(out, "token", None)
        if not isinstance(value, str) or not value:
            raise AccessDenied("Akeyless auth: no token in the answer")
        now = self._clock()
        creds = getattr(out, "creds", None)
        expires = parse_expiration(getattr(out, "expiration", None),
                                   getattr(creds, "expiry", None), now)
        self._token = Token(value, expires, now)
        self._publish_expiry()
        return self._token

    def seconds_left(self) -> float | None:
        """Seconds until the credential that cannot be re-obtained expires."""
        limit = self._uid_expires if self.method == "universal_identity" else None
        if limit is None and self._token is not None:
            limit = self._token.expires_at
        return None if limit is None else limit - self._clock()

    @property
    def current(self) -> Token | None:
        """The held token (for `check`), without logging in."""
        return self._token

    def _publish_expiry(self) -> None:
        """Make the gauge live: computed at each scrape from the held expiry."""
        if not self._published:
            self._published = True
            self._metrics.token_expiry.set_function(lambda: self.seconds_left() or 0.0)

    # -- Universal Identity rotation --

    def rotate_uid(self) -> None:
        """Rotate the UID token now and persist the new one; raises on failure."""
        deadline = time.monotonic() + self._call_timeout
        out = self._client.call("uid-rotate-token", deadline, uid_token=self._uid_token)
        new = getattr(out, "token", None)
        if not isinstance(new, str) or not new:
            raise AccessDenied("Akeyless uid-rotate-token: no token in the answer")
        self._uid_token = new  # the old one is dead now: keep the new one whatever follows
        path = self.settings.uid_token_file
        if path is not None:
            try:
                write_token_file(path, new)
            except OSError as exc:
                self._metrics.token_rotation_failures.inc()
                log.error("UID token rotated but NOT saved to %s (%s): a restart would start "
                          "from a dead token", path, exc.strerror)
        self._learn_uid_expiry()
        log.info("Universal Identity token rotated")

    def _learn_uid_expiry(self) -> None:
        """Best effort: ask /validate-token when the UID token expires."""
        try:
            out = self._client.call("validate-token", time.monotonic() + self._call_timeout,
                                    token=self._uid_token)
        except KmsError:
            return
        if getattr(out, "is_valid", None):
            self._uid_expires = parse_expiration(getattr(out, "expiration", None), None,
                                                 self._clock())
            self._publish_expiry()

    # -- background maintenance --

    def start(self) -> None:
        """Start the renewal/rotation thread."""
        if self.method == "universal_identity":
            self._learn_uid_expiry()
        self._thread = threading.Thread(target=self._run, name="akeyless-auth", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread and forget tokens."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._token = None
        if self._published:
            self._metrics.token_expiry.set_function(lambda: 0.0)

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self._sleep_time(failures)):
            try:
                self._maintain()
                failures = 0
            except KmsError as exc:
                failures += 1
                log.warning("Akeyless token maintenance failed: %s", exc.message)

    def _sleep_time(self, failures: int) -> float:
        if failures:
            return float(min(RETRY_MAX, RETRY_MIN * 2.0 ** (failures - 1)))
        waits = [RETRY_MAX]
        tok = self._token
        if tok is not None:
            waits.append(tok.renew_at - self._clock())
        if self.method == "universal_identity":
            waits.append(self._next_rotate - time.monotonic())
        return float(max(0.05, min(waits)))

    def _maintain(self) -> None:
        if self.method == "universal_identity" and time.monotonic() >= self._next_rotate:
            try:
                with self._lock:
                    self.rotate_uid()
            except KmsError:
                self._metrics.token_rotation_failures.inc()
                raise
            self._next_rotate = time.monotonic() + self.settings.uid_rotate_interval
        tok = self._token
        if tok is None or self._clock() >= tok.renew_at:
            self.login(time.monotonic() + self._call_timeout)
