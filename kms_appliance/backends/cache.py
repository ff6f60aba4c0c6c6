"""A bounded, TTL'd in-memory cache of unwrapped DEKs, with single-flight.

Why: kube-apiserver decrypts every stored DEK again after each restart (and
v1 stores one DEK per object), so without a cache a restart means one
remote call per object, and a KMS outage at that moment makes the cluster
unreadable. With it, a restarted apiserver reads everything the plugin has
seen while the plugin process lives. Entries are keyed by a SHA-256 of the
ciphertext (the ciphertext itself is not kept), evicted least-recently-used
beyond ``size`` and dropped after ``ttl``; nothing is ever persisted.

Single-flight: concurrent misses for the same ciphertext wait for the first
caller's remote call instead of each making their own. A failed load is not
cached; every waiter gets the same error.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from ..inline import may_wait
from ..metrics import Metrics

T = TypeVar("T")


class _Flight(Generic[T]):
    """One in-progress load that other callers can wait on."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Concurrent misses of one key share the first caller's load (this cache, held IKs).

    The owner's ``lookup`` runs under the owner's ``lock``; ``store`` runs
    after the load, outside it (it takes the lock itself). A failed load is
    not stored; every caller waiting on it gets the same error.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._flights: dict[bytes, _Flight[T]] = {}

    def get(self, key: bytes, lookup: Callable[[], T | None], load: Callable[[], T],
            store: Callable[[T], None]) -> tuple[T, str]:
        """(value, how): how is ``held`` (lookup), ``joined`` (another's load) or ``loaded``."""
        with self._lock:
            value = lookup()
            if value is not None:
                return value, "held"
            may_wait()  # a load or a wait for one: not in the event loop
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.value is not None
            return flight.value, "joined"
        try:
            value = load()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.value = value
            store(value)
            return value, "loaded"
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()


class DecryptCache(Generic[T]):
    """LRU + TTL map from ciphertext digests to values, thread-safe."""

    def __init__(self, size: int, ttl: float, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[float, T]] = OrderedDict()
        self._flights: SingleFlight[T] = SingleFlight(self._lock)
        self._metrics = metrics

    @staticmethod
    def digest(ciphertext: bytes) -> bytes:
        """The cache key: a hash, so the cache never holds ciphertexts."""
        return hashlib.sha256(ciphertext).digest()

    def get_or_load(self, ciphertext: bytes, load: Callable[[], T]) -> tuple[T, bool]:
        """(value, served_from_cache); ``load`` runs at most once per key at a time."""
        key = self.digest(ciphertext)
        with self._lock:  # the hit path, without building the miss path's closures
            value = self._lookup(key)
        if value is not None:
            return value, True

        def counted() -> T:
            self._count("miss")
            return load()

        value, how = self._flights.get(key, lambda: self._lookup(key), counted,
                                       lambda v: self._store(key, v))
        if how == "joined":
            self._count("coalesced")
        return value, how != "loaded"

    def _lookup(self, key: bytes) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            self._count("expired")
            self._set_gauge()
            return None
        self._entries.move_to_end(key)
        self._count("hit")
        return value

    def _store(self, key: bytes, value: T) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
                self._count("eviction")
            self._set_gauge()

    def discard_if(self, predicate: Callable[[T], bool]) -> int:
        """Drop entries whose value matches (e.g. a key version just disabled)."""
        with self._lock:
            doomed = [k for k, (_, v) in self._entries.items() if predicate(v)]
            for k in doomed:
                del self._entries[k]
            self._set_gauge()
        return len(doomed)

    def clear(self) -> None:
        """Forget everything (shutdown)."""
        with self._lock:
            self._entries.clear()
            self._set_gauge()

    def __len__(self) -> int:
        return len(self._entries)

    def _count(self, event: str) -> None:
        if self._metrics is not None:
            self._metrics.cache_events.labels(event).inc()

    def _set_gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.cache_entries.set(len(self._entries))
