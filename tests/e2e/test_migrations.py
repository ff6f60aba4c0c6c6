"""Changing what encrypts: KMS v1 -> v2, then key rotation (identity -> KMS: test_encryption_at_rest.py).

The scenario follows the operator's runbook: change the key or the
EncryptionConfiguration, restart or wait for the apiserver to notice, then
rewrite the Secrets (``kubectl get -o json | kubectl replace -f -``) and
check in etcd that every object moved, while all of them stay readable.
"""

from __future__ import annotations

import time

import pytest

from tests.support.kube.cluster import Cluster
from tests.support.kube.encryption import (
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

from .fixture_types import RecordTiming, StartApiServer, StartPlugin
from .plugins import KEY as AKEYLESS_KEY

pytestmark = pytest.mark.e2e

BATCH = 50
KEY_ADOPTION_TIMEOUT_S = 120.0
PLUGIN_ROTATION_TIMEOUT_S = 60.0


def test_kms_v1_to_v2_then_rotation_and_storage_migration(
        cluster: Cluster, start_kms_plugin: StartPlugin, start_apiserver: StartApiServer,
        record_timing: RecordTiming) -> None:
    """KMS v1 (behind --feature-gates=KMSv1=true) works and its Secrets move to v2; with v1
    dropped, a rotated key is adopted for new writes, old data stays readable (also after an
    apiserver restart), and storage migration moves it all."""
    plugin = start_kms_plugin("e2e-kms")
    v1 = kms_v1(f"{plugin.name}-v1", plugin.socket)
    v2 = kms_v2(plugin.name, plugin.socket)
    gates = {"KMSv1": True}
    start_apiserver(encryption_config([v1, identity()]), feature_gates=gates)
    old = create_secrets_bulk(cluster, "old", BATCH)
    raw = cluster.etcd.get_prefix_raw("/registry/secrets/default/")
    for name, value in old.items():
        stored = raw[cluster.secret_key(name)]
        assert stored.startswith(storage_prefix(v1)), f"{name}: {stored[:40]!r}"
        assert value.encode() not in stored
    assert cluster.apiserver.kms_healthy()

    start_apiserver(encryption_config([v2, v1, identity()]), feature_gates=gates)
    assert list_batch(cluster, "old") == old
    rewrite_batch(cluster, "old")
    old_key = plugin.status().key_id
    envelopes = stored_envelopes(cluster, storage_prefix(v2), old)
    assert {e.key_id for e in envelopes.values()} == {old_key}
    assert list_batch(cluster, "old") == old

    v2_only = encryption_config([v2, identity()])  # nothing is stored under v1 any more
    start_apiserver(v2_only)
    plugin.rotate_key()
    started = time.monotonic()
    wait_until(lambda: plugin.status().key_id != old_key, PLUGIN_ROTATION_TIMEOUT_S, "plugin rotation")
    new_key = plugin.status().key_id
    probes: list[str] = []

    def adopted() -> bool:
        # Once its 20 s health cache has expired, this /healthz runs a fresh Status: the
        # apiserver learns the new key_id sooner than from its 60 s poll.
        cluster.apiserver.get("/healthz/kms-providers")
        name = f"probe-{len(probes)}"
        probes.append(name)
        value = create_secret(cluster, name)
        return stored_envelopes(cluster, storage_prefix(v2), {name: value})[name].key_id == new_key

    wait_until(adopted, KEY_ADOPTION_TIMEOUT_S, "apiserver adopting the new key_id", interval_s=2)
    record_timing("rotation to first write under new key", time.monotonic() - started)

    new = create_secrets_bulk(cluster, "new", BATCH)
    envelopes = stored_envelopes(cluster, storage_prefix(v2), old | new)
    assert {envelopes[n].key_id for n in old} == {old_key}
    assert {envelopes[n].key_id for n in new} == {new_key}

    start_apiserver(v2_only)  # restarted: no cached seeds, old key must decrypt
    assert list_batch(cluster, "old") == old
    assert list_batch(cluster, "new") == new

    started = time.monotonic()
    rewrite_batch(cluster, "old")
    record_timing(f"storage migration of {BATCH} secrets", time.monotonic() - started)
    envelopes = stored_envelopes(cluster, storage_prefix(v2), old | new)
    assert {e.key_id for e in envelopes.values()} == {new_key}
    assert list_batch(cluster, "old") == old

    if plugin.backend is not None:  # Akeyless: retire the old item version for good
        # The adoption probes written before the apiserver took the new key are still under
        # version 1; an operator rewrites every Secret before retiring a version, so they go.
        # (Left behind, one undecryptable Secret keeps a restarted apiserver from ever syncing.)
        cluster.kubectl("delete", "secret", *probes)
        plugin.backend.control("version-state", {"name": AKEYLESS_KEY, "version": 1, "state": "Disabled"})
        start_apiserver(v2_only)  # restarted: no cached seed, every read goes through the new version
        assert list_batch(cluster, "old") == old
        assert list_batch(cluster, "new") == new
