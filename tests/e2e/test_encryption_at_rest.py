"""Secrets written through a real kube-apiserver land in etcd the way the
EncryptionConfiguration says: plaintext under ``identity``, KMS v2 envelopes
under a ``kms`` provider, and read back through the apiserver either way.
"""

from __future__ import annotations

import pytest

from tests.support.kube.cluster import Cluster
from tests.support.kube.encryption import encryption_config, identity, storage_prefix
from tests.support.kube.protowire import parse_encrypted_object
from tests.support.kube.workload import create_secret, read_secret

from .fixture_types import KmsV2Cluster, StartApiServer

pytestmark = pytest.mark.e2e

# EncryptedDEKSourceType HKDF_SHA256_XNONCE_AES_GCM_SEED: the apiserver sends
# the plugin a seed and derives a DEK per write (KMSv2KDF, default since 1.29).
DEK_SOURCE_HKDF_SEED = 1


class TestIdentity:
    """The harness sees plaintext when nothing encrypts: proof that the raw
    etcd read is real and that the KMS test below can fail."""

    def test_identity_stores_plaintext(self, cluster: Cluster, start_apiserver: StartApiServer) -> None:
        start_apiserver(encryption_config([identity()]))
        marker = create_secret(cluster, "plain")
        raw = cluster.etcd.get_raw(cluster.secret_key("plain"))
        assert raw is not None, "secret not found in etcd"
        assert raw.startswith(storage_prefix(identity()))
        assert marker.encode() in raw
        assert read_secret(cluster, "plain") == marker


class TestKmsV2:
    """With a KMS v2 provider first, secrets are stored as KMS v2 envelopes
    under the plugin's current key_id and still read back."""

    def test_secret_is_kms_v2_envelope_at_rest(self, kms_v2_cluster: KmsV2Cluster) -> None:
        cluster, plugin, provider = kms_v2_cluster.cluster, kms_v2_cluster.plugin, kms_v2_cluster.provider

        marker = create_secret(cluster, "wrapped")
        raw = cluster.etcd.get_raw(cluster.secret_key("wrapped"))
        assert raw is not None, "secret not found in etcd"
        prefix = storage_prefix(provider)
        assert raw.startswith(prefix), f"unexpected prefix {raw[:40]!r}"
        assert marker.encode() not in raw
        assert b"password" not in raw

        envelope = parse_encrypted_object(raw[len(prefix) :])
        assert envelope.key_id == plugin.status().key_id
        assert envelope.key_id, "empty key_id would disable encryption"
        assert envelope.encrypted_dek_source, "no encrypted DEK source stored"
        assert envelope.encrypted_dek_source_type == DEK_SOURCE_HKDF_SEED
        assert len(envelope.encrypted_data) > len(marker)
        assert all("." in k for k in envelope.annotations), envelope.annotations.keys()

        assert read_secret(cluster, "wrapped") == marker
        assert cluster.apiserver.kms_healthy()
