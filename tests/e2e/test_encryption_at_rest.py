"""Secrets written through a real kube-apiserver land in etcd the way the
EncryptionConfiguration says: plaintext under ``identity``, KMS v2 envelopes
under a ``kms`` provider, and read back through the apiserver either way; putting
KMS first keeps the plaintext ones readable and storage migration encrypts them.
"""

from __future__ import annotations

import pytest

from tests.support.kube.cluster import Cluster
from tests.support.kube.encryption import encryption_config, identity, kms_v2, storage_prefix
from tests.support.kube.workload import (
    create_secret,
    create_secrets_bulk,
    list_batch,
    read_secret,
    rewrite_batch,
    stored_envelopes,
)

from .fixture_types import StartApiServer, StartPlugin

pytestmark = pytest.mark.e2e

BATCH = 50
# EncryptedDEKSourceType HKDF_SHA256_XNONCE_AES_GCM_SEED: the apiserver sends
# the plugin a seed and derives a DEK per write (KMSv2KDF, default since 1.29).
DEK_SOURCE_HKDF_SEED = 1


def test_identity_then_kms_v2_at_rest_and_migration(cluster: Cluster, start_kms_plugin: StartPlugin,
                                                    start_apiserver: StartApiServer) -> None:
    """Under identity the harness sees plaintext in etcd (proof that the raw read is real and
    that the KMS checks can fail); with KMS v2 first a new Secret is an envelope under the
    plugin's key_id, the plaintext ones still read back, and rewriting them encrypts them."""
    plugin = start_kms_plugin("e2e-kms")
    start_apiserver(encryption_config([identity()]))
    legacy = create_secrets_bulk(cluster, "legacy", BATCH)
    raw = cluster.etcd.get_prefix_raw("/registry/secrets/default/")
    for name, value in legacy.items():
        stored = raw[cluster.secret_key(name)]
        assert stored.startswith(storage_prefix(identity())), f"{name}: {stored[:40]!r}"
        assert value.encode() in stored
    assert list_batch(cluster, "legacy") == legacy

    provider = kms_v2(plugin.name, plugin.socket)
    start_apiserver(encryption_config([provider, identity()]))
    marker = create_secret(cluster, "wrapped")
    prefix = storage_prefix(provider)
    envelope = stored_envelopes(cluster, prefix, {"wrapped": marker})["wrapped"]  # the prefix, no plaintext
    assert b"password" not in cluster.etcd.get_raw(cluster.secret_key("wrapped"))  # nor its data key
    assert envelope.key_id == plugin.status().key_id
    assert envelope.key_id, "empty key_id would disable encryption"
    assert envelope.encrypted_dek_source, "no encrypted DEK source stored"
    assert envelope.encrypted_dek_source_type == DEK_SOURCE_HKDF_SEED
    assert len(envelope.encrypted_data) > len(marker)
    assert all("." in k for k in envelope.annotations), envelope.annotations.keys()
    assert read_secret(cluster, "wrapped") == marker
    assert cluster.apiserver.kms_healthy()
    assert list_batch(cluster, "legacy") == legacy

    rewrite_batch(cluster, "legacy")
    envelopes = stored_envelopes(cluster, prefix, legacy)
    assert {e.key_id for e in envelopes.values()} == {plugin.status().key_id}
    assert list_batch(cluster, "legacy") == legacy
