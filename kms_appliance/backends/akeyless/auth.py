"""Authentication: method detection, the token cache, renewal, UID rotation.

Why: every remote call needs a token, and getting one is a remote call that
can fail on its own. Tokens are therefore obtained once, renewed in the
background before they expire (5 minutes before, or at three quarters
of their lifetime if shorter), and re-obtained on demand only when Akeyless says a
token was rejected (once per failing call, never per call). A Universal
Identity token is rotated on schedule through ``/uid-rotate-token`` and
written back to its file atomically (0600) so a restart never starts from
a dead token; a failed rotation is a metric and a log line, not an outage,
until the token really dies.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from ...config import AkeylessSettings
from ...errors import AccessDenied, KmsError, SetupError
from ...metrics import Metrics
from ...threads import Supervisor
from .client import AkeylessClient
from .methods import auth_fields, initial_uid_token
from .tokens import DEFAULT_LIFETIME, Token, parse_expiration, write_token_file

log = logging.getLogger("kms_appliance.backends.akeyless")

RETRY_MIN, RETRY_MAX = 2.0, 60.0
THREAD = "akeyless-auth"


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
        self._threads: Supervisor | None = None
        self._published = False
        if method == "universal_identity" and not self._uid_token:
            raise SetupError("universal_identity auth needs akeyless.uid_token or uid_token_file")
        if method == "universal_identity" and settings.uid_token_file is None:
            log.warning("Universal Identity token has no uid_token_file: rotated tokens live in "
                        "memory only, and a restart must be given a fresh token")

    # -- tokens --

    def token(self, deadline: float) -> str:
        """A valid token, logging in if there is none or it has expired."""
        tok = self._token
        if tok is not None and self._clock() < tok.valid_until - 1:
            return tok.value
        with self._lock:
            tok = self._token
            if tok is not None and self._clock() < tok.valid_until - 1:
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
        if self._token.skewed:
            log.warning("Akeyless token expiry lies %.0fs ahead of the local clock: the clock is "
                        "probably wrong (check NTP); renewing every %.0fs", expires - now,
                        DEFAULT_LIFETIME * 0.75)
        self._publish_expiry()
        return self._token

    def seconds_left(self) -> float | None:
        """Seconds until the credential that cannot be re-obtained expires."""
        limit = self._uid_expires if self.method == "universal_identity" else None
        if limit is None and self._token is not None:
            limit = self._token.valid_until
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

    def start(self, threads: Supervisor | None = None) -> None:
        """Start the renewal/rotation thread, supervised: an unexpected exception restarts it,
        and one that keeps dying fails /livez (a token that silently stops renewing would
        end in an outage when it expires)."""
        if self.method == "universal_identity":
            self._learn_uid_expiry()
        self._threads = threads or Supervisor()
        self._thread = self._threads.start(THREAD, self._run, restart=True)

    def close(self) -> None:
        """Stop the background thread and forget tokens."""
        if self._threads is not None:
            self._threads.retire(THREAD)
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
