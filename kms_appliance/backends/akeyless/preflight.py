"""The Akeyless half of `kms-appliance check`: auth, key, clock.

The backend is built by the same sequence as ``serve`` builds it
(:class:`Sequence`), but the preflight reports each precondition on its own
line (auth failed vs key disabled vs clock skew), where start-up only needs
the first failure; the key's settings and the clock are checked only here.
"""

from __future__ import annotations

import time

from ...config import Config
from ...errors import SetupError
from ...metrics import Metrics
from ...preflight import Warned
from . import Sequence
from .backend import AkeylessBackend

MAX_TOKEN_LIFETIME = 31 * 86400.0


class Context:
    """The backend's build sequence (:class:`.Sequence`, as ``serve`` runs it), one step a line."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._seq = Sequence(cfg, Metrics())
        self._backend: AkeylessBackend | None = None

    def auth(self) -> str:
        """Detect the method and log in."""
        method, how = self._seq.login()
        return f"method {method} ({how[-1]}), access_id {self.cfg.akeyless.access_id}"

    def key(self) -> str:
        """Describe the key: exists, enabled, AES (the backend's start-up rule)."""
        mode = self.cfg.akeyless.mode  # envelope: the IK is created (encrypt, describe, decrypt)
        backend = self._seq.backend(cache=False)
        self._backend = backend
        st = backend.state
        held = backend.intermediate_keys
        iks = (f"; {len(held)} intermediate key held ({held[0].key_id}), validated by Akeyless "
               f"{backend.validation_age():.0f}s ago") if held else ""
        return (f"{st.name}: {st.item_type}, enabled, last_version {st.last_version}, "
                f"item_id {st.item_id}; mode {mode}{iks}")

    def settings(self) -> str:
        """Delete protection (warned when off: losing the KEK loses every Secret) and rotation."""
        st = self.backend.state
        rotation = ("auto-rotate on, every "
                    f"{st.rotation_interval if st.rotation_interval is not None else '?'} days"
                    if st.auto_rotate else "auto-rotate off" if st.auto_rotate is False
                    else "auto-rotate not reported")
        if st.delete_protection is not True:
            state = "off" if st.delete_protection is False else "not reported"
            raise Warned(f"delete protection {state}: deleting {st.name} makes every Secret "
                         f"encrypted under it unreadable (enable it in Akeyless); {rotation}")
        return f"delete protection on; {rotation}"

    @property
    def backend(self) -> AkeylessBackend:
        """The backend built by :meth:`key`."""
        if self._backend is None:
            raise SetupError("the key was not described")
        return self._backend

    def clock(self) -> str:
        """The token's expiry, as Akeyless set it, must lie ahead of our clock, sanely."""
        token = self._seq.auth.current if self._seq.auth is not None else None
        if token is None:
            raise SetupError("no token held")
        left = token.expires_at - time.time()
        if left <= 0:
            raise SetupError(f"token expires {-left:.0f}s in the past by the local clock: "
                               "the local clock is ahead of Akeyless (check NTP)")
        if left > MAX_TOKEN_LIFETIME:
            raise SetupError(f"token expiry is {left / 86400:.0f} days ahead: the local clock "
                               "is behind Akeyless (check NTP)")
        return f"token valid for {left:.0f}s by the local clock"

    def close(self) -> None:
        """Release the connection pool and forget the token."""
        self._seq.close()
