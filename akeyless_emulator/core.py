"""The emulator's state: keys, identities, tokens, call accounting (no HTTP here).

Why: the API handlers (`api.py`) and the test-facing `Emulator` (and the `/__emulator/...`
control plane on it) change the same state; one lock guards all of it, and a change made
under `changing()` is saved when a state directory was given.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from akeyless_emulator.errors import not_found, unauthorized
from akeyless_emulator.identity import Identity, Token, TokenStore, new_access_id
from akeyless_emulator.keys import Key, normalise_name

STATE_FILE = "state.json"


@dataclass
class CallRecord:
    """One request seen by the API (control-plane calls are not recorded)."""

    endpoint: str
    status: int
    item_version: int | None = None
    nodelay: bool = False
    # encrypt: first 16 hex digits of SHA-256 of the ciphertext returned (not secret), so a
    # test can tell which call produced a ciphertext and which item_version that call used.
    result_fp: str | None = None


class Core:
    """All emulator state behind one lock."""

    def __init__(self, state_dir: str | None = None) -> None:
        self.lock = threading.RLock()
        self.token_ttl = 3600.0  # of `t-` tokens issued from now on; a test may change it at any time
        self.keys: dict[str, Key] = {}
        self.identities: dict[str, Identity] = {}
        self.tokens = TokenStore()
        self.calls: collections.Counter[str] = collections.Counter()
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.changed = threading.Condition(self.lock)
        self.records: list[CallRecord] = []
        self.state_dir = Path(state_dir) if state_dir else None
        self._load()

    # -- persistence -------------------------------------------------------
    def _load(self) -> None:
        if self.state_dir is None or not (self.state_dir / STATE_FILE).exists():
            return
        data = json.loads((self.state_dir / STATE_FILE).read_text())
        self.keys = {k["name"]: Key.from_state(k) for k in data.get("keys", [])}
        for raw in data.get("identities", []):
            raw["jwts"] = set(raw["jwts"])
            raw["ca_pems"] = [p.encode() for p in raw["ca_pems"]]
            raw["capabilities"] = frozenset(raw["capabilities"])
            self.identities[raw["access_id"]] = Identity(**raw)
        for raw in data.get("tokens", []):
            self.tokens.tokens[raw["value"]] = Token(**raw)

    def save(self) -> None:
        """Write keys, identities and tokens to the state dir (if any), 0600."""
        if self.state_dir is None:
            return
        with self.lock:
            idents = []
            for ident in self.identities.values():
                raw = asdict(ident)
                raw.update(jwts=sorted(ident.jwts), ca_pems=[p.decode() for p in ident.ca_pems],
                           capabilities=sorted(ident.capabilities))
                idents.append(raw)
            data = {"keys": [k.to_state() for k in self.keys.values()], "identities": idents,
                    "tokens": [asdict(t) for t in self.tokens.tokens.values()]}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.state_dir / STATE_FILE)

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Hold the lock for a change of state, then save it (if the change raised nothing)."""
        with self.lock:
            yield
        self.save()

    # -- keys --------------------------------------------------------------
    def key(self, name: object) -> Key:
        """The key named `name` or 404."""
        found = self.keys.get(normalise_name(name))
        if found is None:
            raise not_found("item not found")
        return found

    # -- identities and tokens --------------------------------------------
    def add_identity(self, ident: Identity) -> Identity:
        """Register (or replace) an identity."""
        if not ident.access_id:
            ident.access_id = new_access_id()
        with self.changing():
            self.identities[ident.access_id] = ident
        return ident

    def issue_auth_token(self, ident: Identity) -> Token:
        """A `t-` token for an identity, with the current TTL."""
        with self.changing():
            return self.tokens.issue(ident.access_id, "t", self.token_ttl)

    def caller(self, body: dict[str, Any]) -> tuple[Identity, Token]:
        """The identity behind the request's `token` (or `uid-token`), or 401."""
        value = body.get("token") if body.get("token") else body.get("uid-token")
        token = self.tokens.resolve(value)
        ident = self.identities.get(token.access_id)
        if ident is None:
            raise unauthorized("unknown token")
        return ident, token

    # -- accounting --------------------------------------------------------
    def record(self, rec: CallRecord) -> None:
        """Count one API call and keep its record (bounded to 10,000)."""
        with self.lock:
            self.calls[rec.endpoint] += 1
            self.changed.notify_all()
            self.records.append(rec)
            del self.records[:-10000]

    def arrive(self, endpoint: str, delta: int) -> None:
        """Track requests being processed (arrived, not yet answered)."""
        with self.lock:
            self.in_flight[endpoint] += delta
            if self.in_flight[endpoint] <= 0:
                del self.in_flight[endpoint]
            self.changed.notify_all()
