"""Restarts on either side of the socket lose nothing.

A restarted apiserver has no cached DEK seed, so reading back what it wrote
before proves the plugin's Decrypt; a restarted (or killed -9) plugin must
come back on the same socket, report healthy, and keep decrypting what it
encrypted before.
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from tests.support.kube.encryption import storage_prefix
from tests.support.kube.workload import (
    create_secret,
    create_secrets_bulk,
    list_batch,
    read_secret,
    stored_envelopes,
)
from tests.support.plugin import AUDIT_FLUSH_BOUND, Plugin
from tests.support.procs import alive, descendants, wait_until

from .fixture_types import KmsV2Cluster

pytestmark = pytest.mark.e2e

BULK_SECRETS = 1000
KMS_HEALTH_TIMEOUT_S = 60.0
# after kill -9 of the pid an operator sees, no process of the plugin remains within 1 s
# (the frozen binary is three processes: staticx's and PyInstaller's bootloaders, then Python).
KILLED_GONE_S = 1.0


def kill9_and_prove_gone(plugin: Plugin) -> None:
    """kill -9 the plugin's top process; its whole process tree must be gone and the socket dead
    before anything restarts (an orphan left serving would make a restart look fine)."""
    tree = [plugin.process.pid, *descendants(plugin.process.pid)]  # read before: orphans re-parent
    plugin.kill()
    wait_until(lambda: not any(alive(p) for p in tree), KILLED_GONE_S,
               f"plugin processes {tree} gone after kill -9 of {tree[0]}", interval_s=0.02)
    with pytest.raises(grpc.RpcError):
        plugin.status()


def test_plugin_then_apiserver_restarts_lose_nothing(kms_v2_cluster: KmsV2Cluster) -> None:
    """Both plugin restarts share the one wait past the apiserver's 20 s health cache (fixed
    upstream), the cost of this scenario. The apiserver makes no call in between, so its
    own connection last ended with the kill -9 (no GOAWAY: the harder reconnect); its
    reconnect after a graceful stop is the deploy test's liveness restart."""
    k = kms_v2_cluster
    cluster, plugin, provider = k.cluster, k.plugin, k.provider
    before = {"before": create_secret(cluster, "before")}
    key_id = plugin.status().key_id

    kill9_and_prove_gone(plugin)
    k.record_timing("plugin restart (SIGKILL) to ok", plugin.start())
    assert plugin.status().key_id == key_id, "a restart must not change the key"
    between = {"between": create_secret(cluster, "between")}
    k.record_timing("plugin restart (SIGTERM) to ok", plugin.restart(signal.SIGTERM))
    assert plugin.status().key_id == key_id, "a restart must not change the key"
    cluster.apiserver.outlive_kms_health_cache()  # so the apiserver must reach the new process
    recovered = wait_until(cluster.apiserver.kms_healthy, KMS_HEALTH_TIMEOUT_S, "/healthz/kms-providers")
    k.record_timing("apiserver kms health, after the cache expired", recovered)

    written = before | between | {"after": create_secret(cluster, "after")}
    started = time.monotonic()
    bulk = create_secrets_bulk(cluster, "bulk", BULK_SECRETS)
    k.record_timing(f"create {BULK_SECRETS} secrets", time.monotonic() - started)
    envelopes = stored_envelopes(cluster, storage_prefix(provider), written | bulk)
    assert {e.key_id for e in envelopes.values()} == {key_id}

    time.sleep(AUDIT_FLUSH_BOUND)  # every earlier record is out of the plugin's buffer
    audited_before = len(plugin.audit_records())
    k.restart_apiserver()  # DEK cache gone: every secret now needs the last plugin process
    for name, value in written.items():
        assert read_secret(cluster, name) == value
    started = time.monotonic()
    read = list_batch(cluster, "bulk")
    k.record_timing(f"list {BULK_SECRETS} secrets after restart", time.monotonic() - started)
    assert read == bulk
    # The restarted apiserver had to ask the plugin to decrypt its DEK seed(s): each audit
    # record names the key version (Akeyless: the item_version) the seed was wrapped under,
    # the same as the encrypt record it joins by ciphertext fingerprint.
    def new_decrypts() -> list[dict[str, object]]:
        return [r for r in plugin.audit_records()[audited_before:] if r["event"] == "decrypt"]

    wait_until(lambda: bool(new_decrypts()), 10, "decrypt audit records")
    encrypts = {r["ct_fp"]: r["key_version"] for r in plugin.audit_records()
                if r["event"] == "encrypt" and r["outcome"] == "ok"}
    for rec in new_decrypts():
        assert rec["outcome"] == "ok" and rec["key_version"], rec
        assert encrypts.get(rec["ct_fp"]) == rec["key_version"], rec
