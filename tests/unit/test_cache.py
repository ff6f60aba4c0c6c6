"""The generic decrypt cache: bounded, TTL'd, single-flight, with metrics."""

from __future__ import annotations

import threading

import pytest

from kms_appliance.backends.cache import DecryptCache
from kms_appliance.metrics import Metrics
from tests.unit.helpers import Clock, sample


def _event(m: Metrics, event: str) -> float:
    return sample(m, "kms_appliance_decrypt_cache_total", event=event)


class TestDecryptCache:
    """Hits, misses, TTL expiry, LRU eviction and single-flight."""

    def test_miss_then_hit(self):
        m = Metrics()
        c: DecryptCache[bytes] = DecryptCache(10, 60, m)
        assert c.get_or_load(b"ct", lambda: b"dek") == (b"dek", False)
        assert c.get_or_load(b"ct", lambda: pytest.fail("loaded twice")) == (b"dek", True)
        assert (_event(m, "miss"), _event(m, "hit")) == (1, 1)
        assert m.registry.get_sample_value("kms_appliance_decrypt_cache_entries") == 1

    def test_ttl_expiry(self):
        clock, m = Clock(), Metrics()
        c: DecryptCache[bytes] = DecryptCache(10, 5, m, clock=clock)
        c.get_or_load(b"ct", lambda: b"v1")
        clock.now += 5.0
        assert c.get_or_load(b"ct", lambda: b"v2") == (b"v2", False)
        assert _event(m, "expired") == 1

    def test_lru_eviction_keeps_recently_used(self):
        m = Metrics()
        c: DecryptCache[bytes] = DecryptCache(2, 60, m)
        c.get_or_load(b"a", lambda: b"A")
        c.get_or_load(b"b", lambda: b"B")
        c.get_or_load(b"a", lambda: b"A")  # a is now most recent
        c.get_or_load(b"c", lambda: b"C")  # evicts b
        assert len(c) == 2 and _event(m, "eviction") == 1
        assert c.get_or_load(b"a", lambda: b"x")[1] is True
        assert c.get_or_load(b"b", lambda: b"B2") == (b"B2", False)

    def test_failed_load_is_not_cached_and_reaches_every_waiter(self):
        c: DecryptCache[bytes] = DecryptCache(10, 60)
        started, release = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def failing() -> bytes:
            started.set()
            release.wait(5)
            raise ConnectionError("down")

        def call() -> None:
            try:
                c.get_or_load(b"ct", failing)
            except ConnectionError as exc:
                errors.append(exc)

        leader = threading.Thread(target=call)
        leader.start()
        started.wait(5)
        followers = [threading.Thread(target=call) for _ in range(5)]
        for t in followers:
            t.start()
        release.set()
        for t in [leader, *followers]:
            t.join(5)
        assert len(errors) == 6
        assert c.get_or_load(b"ct", lambda: b"ok") == (b"ok", False)

    def test_concurrent_misses_load_once(self):
        c: DecryptCache[bytes] = DecryptCache(10, 60)
        calls: list[int] = []
        gate = threading.Event()

        def load() -> bytes:
            calls.append(1)
            gate.wait(5)
            return b"dek"

        results: list[tuple[bytes, bool]] = []
        threads = [threading.Thread(target=lambda: results.append(c.get_or_load(b"ct", load)))
                   for _ in range(20)]
        for t in threads:
            t.start()
        while not calls:
            threading.Event().wait(0.01)
        gate.set()
        for t in threads:
            t.join(5)
        assert len(calls) == 1 and len(results) == 20
        assert sum(1 for _, cached in results if not cached) == 1

    def test_discard_if_and_clear(self):
        c: DecryptCache[tuple[bytes, int]] = DecryptCache(10, 60)
        c.get_or_load(b"a", lambda: (b"A", 1))
        c.get_or_load(b"b", lambda: (b"B", 2))
        assert c.discard_if(lambda v: v[1] == 1) == 1 and len(c) == 1
        c.clear()
        assert len(c) == 0

    def test_keys_are_digests_not_ciphertexts(self):
        c: DecryptCache[bytes] = DecryptCache(10, 60)
        c.get_or_load(b"secret-ciphertext", lambda: b"x")
        assert all(len(k) == 32 and k != b"secret-ciphertext" for k in c._entries)
