"""Changing what encrypts: key rotation, identity -> KMS, KMS v1 -> v2.

Each scenario follows the operator's runbook: change the key or the
EncryptionConfiguration, restart or wait for the apiserver to notice, then
rewrite the Secrets (``kubectl get -o json | kubectl replace -f -``) and
check in etcd that every object moved, while all of them stay readable.
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.kube.cluster import Cluster
from tests.support.kube.encryption import (
    Provider,
    encryption_config,
    identity,
    kms_v1,
    kms_v2,
    storage_prefix,
)
from tests.support.kube.workload import (
    create_secret,
    create_secrets_bulk,
    list_batch,
    rewrite_batch,
    stored_envelopes,
)
from tests.support.procs import wait_until

from .fixture_types import KmsV2Cluster, StartApiServer, StartPlugin
from .plugins import KEY as AKEYLESS_KEY

pytestmark = pytest.mark.e2e

BATCH = 50
KEY_ADOPTION_TIMEOUT_S = 120.0
PLUGIN_ROTATION_TIMEOUT_S = 60.0


def write_key_id(cluster: Cluster, provider: Provider, name: str) -> str:
    """Create one secret and return the key_id it was stored under."""
    value = create_secret(cluster, name)
    return stored_envelopes(cluster, storage_prefix(provider), {name: value})[name].key_id


def raw_batch(cluster: Cluster, names: dict[str, str]) -> dict[str, bytes]:
    raw = cluster.etcd.get_prefix_raw("/registry/secrets/default/")
    return {name: raw[cluster.secret_key(name)] for name in names}


class TestKeyRotation:
    """A rotated key is adopted for new writes, old data stays readable
    (also after an apiserver restart), and storage migration moves it all."""

    def test_rotation_then_storage_migration(self, kms_v2_cluster: KmsV2Cluster) -> None:
        k = kms_v2_cluster
        cluster, plugin, provider = k.cluster, k.plugin, k.provider
        old = create_secrets_bulk(cluster, "old", BATCH)
        old_key = plugin.status().key_id

        plugin.rotate_key()
        started = time.monotonic()
        wait_until(lambda: plugin.status().key_id != old_key, PLUGIN_ROTATION_TIMEOUT_S, "plugin rotation")
        new_key = plugin.status().key_id
        probes = itertools.count()

        def adopted() -> bool:
            # Once its 20 s health cache has expired, this /healthz runs a fresh Status: the
            # apiserver learns the new key_id sooner than from its 60 s poll.
            cluster.apiserver.get("/healthz/kms-providers")
            return write_key_id(cluster, provider, f"probe-{next(probes)}") == new_key

        wait_until(adopted, KEY_ADOPTION_TIMEOUT_S, "apiserver adopting the new key_id", interval_s=2)
        k.record_timing("rotation to first write under new key", time.monotonic() - started)

        new = create_secrets_bulk(cluster, "new", BATCH)
        envelopes = stored_envelopes(cluster, storage_prefix(provider), old | new)
        assert {envelopes[n].key_id for n in old} == {old_key}
        assert {envelopes[n].key_id for n in new} == {new_key}

        k.restart_apiserver()  # no cached seeds, old key must decrypt
        assert list_batch(cluster, "old") == old
        assert list_batch(cluster, "new") == new

        started = time.monotonic()
        rewrite_batch(cluster, "old")
        k.record_timing(f"storage migration of {BATCH} secrets", time.monotonic() - started)
        envelopes = stored_envelopes(cluster, storage_prefix(provider), old | new)
        assert {e.key_id for e in envelopes.values()} == {new_key}
        assert list_batch(cluster, "old") == old

        if plugin.backend is not None:  # Akeyless: retire the old item version for good
            plugin.backend.control("version-state", {"name": AKEYLESS_KEY, "version": 1,
                                                     "state": "Disabled"})
            k.restart_apiserver()  # no cached seed: every read goes through the new version
            assert list_batch(cluster, "old") == old
            assert list_batch(cluster, "new") == new


class TestIdentityToKms:
    """Plaintext secrets stay readable when KMS is put first, and storage
    migration encrypts them."""

    def test_identity_to_kms_v2_migration(self, cluster: Cluster, start_kms_plugin: StartPlugin,
                                          start_apiserver: StartApiServer) -> None:
        plugin = start_kms_plugin("e2e-kms")
        start_apiserver(encryption_config([identity()]))
        legacy = create_secrets_bulk(cluster, "legacy", BATCH)
        assert all(
            raw.startswith(storage_prefix(identity())) and legacy[n].encode() in raw
            for n, raw in raw_batch(cluster, legacy).items()
        )

        provider = kms_v2(plugin.name, plugin.socket)
        start_apiserver(encryption_config([provider, identity()]))
        assert list_batch(cluster, "legacy") == legacy
        fresh = {"fresh": create_secret(cluster, "fresh")}
        stored_envelopes(cluster, storage_prefix(provider), fresh)

        rewrite_batch(cluster, "legacy")
        envelopes = stored_envelopes(cluster, storage_prefix(provider), legacy)
        assert {e.key_id for e in envelopes.values()} == {plugin.status().key_id}
        assert list_batch(cluster, "legacy") == legacy


class TestKmsV1:
    """KMS v1 (behind --feature-gates=KMSv1=true) works, and secrets move to v2."""

    def test_kms_v1_then_migration_to_v2(self, cluster: Cluster, start_kms_plugin: StartPlugin,
                                         start_apiserver: StartApiServer) -> None:
        plugin = start_kms_plugin("e2e-kms")
        v1 = kms_v1(f"{plugin.name}-v1", plugin.socket)
        v2 = kms_v2(plugin.name, plugin.socket)
        gates = {"KMSv1": True}

        start_apiserver(encryption_config([v1, identity()]), feature_gates=gates)
        written = create_secrets_bulk(cluster, "v1", BATCH)
        for name, raw in raw_batch(cluster, written).items():
            assert raw.startswith(storage_prefix(v1)), f"{name}: {raw[:40]!r}"
            assert written[name].encode() not in raw
        assert cluster.apiserver.kms_healthy()

        start_apiserver(encryption_config([v2, v1, identity()]), feature_gates=gates)
        assert list_batch(cluster, "v1") == written
        rewrite_batch(cluster, "v1")
        envelopes = stored_envelopes(cluster, storage_prefix(v2), written)
        assert {e.key_id for e in envelopes.values()} == {plugin.status().key_id}
        assert list_batch(cluster, "v1") == written
