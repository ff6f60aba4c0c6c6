"""Akeyless envelope mode through an outage, a second control-plane node, rotation,
storage migration and a revocation.

Why its own scenario: in direct mode an apiserver restarted while Akeyless is down serves no
Secret (test_outage.py); in envelope mode the plugin wraps DEKs under an intermediate key (IK)
it holds, so a restarted control plane keeps serving. Two plugins (one per "master") share one
emulator and one etcd, each behind its own apiserver; revoked credentials must still fail
closed (docs/akeyless.md, "Revocation honoured"), and no IK may appear in any log. The plugin
is ``E2E_APPLIANCE_CMD`` or this checkout; ``E2E_KMS_PLUGIN`` does not apply.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import secrets_scan
from tests.support.emulator import EmulatorProcess as Emulator
from tests.support.intermediate_keys import iks_of, is_envelope, key_from_state_dir
from tests.support.kmsclient import Client
from tests.support.kube.cluster import ApiServerOptions, Cluster, KubeApiServer
from tests.support.kube.encryption import encryption_config, identity, kms_v2, storage_prefix
from tests.support.kube.protowire import EncryptedObject
from tests.support.kube.workload import (
    BATCH_LABEL,
    create_secrets_bulk,
    list_batch,
    rewrite_batch,
    stored_envelopes,
)
from tests.support.plugin import Plugin
from tests.support.procs import ProcessRegistry, wait_until

from .fixture_types import RecordTiming, StartApiServer
from .plugins import KEY, appliance_plugin, cleanup, emulator_for

pytestmark = pytest.mark.e2e

PROVIDER = "e2e-kms"  # one provider name on both apiservers: one storage prefix
BATCH = 10
REFRESH_S = 1
ENVELOPE_ENV = {
    "KMS_APPLIANCE_AKEYLESS_MODE": "envelope",
    "KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL": f"{REFRESH_S}s",
}
KEY_ID = re.compile(r"^akeyless:\d+:(\d+):ik:([0-9a-f]{32})$")
# Liveness bounds only (how long to wait before declaring failure), not timing claims.
ROTATION_TIMEOUT_S = 30.0
REVOCATION_TIMEOUT_S = 30.0
RECOVERY_TIMEOUT_S = 30.0


def item_version(key_id: str) -> int:
    m = KEY_ID.match(key_id)
    assert m, f"not an envelope-mode key_id: {key_id!r}"
    return int(m.group(1))


@pytest.fixture
def envelope_pair(tmp_path: Path, process_registry: ProcessRegistry,
                  record_timing: RecordTiming) -> Iterator[tuple[Emulator, Plugin, Plugin]]:
    """One emulator, two envelope-mode plugins on it (A and B), started and healthy."""
    emulator = emulator_for(tmp_path, "envelope", process_registry)
    plugins = [appliance_plugin(tmp_path, f"{PROVIDER}-{n}", process_registry, emulator,
                                ENVELOPE_ENV, PROVIDER) for n in "ab"]
    try:
        for p in plugins:
            record_timing(f"plugin {p.name} start-to-ok", p.start())
        yield emulator, plugins[0], plugins[1]
    finally:
        for p in plugins:
            p.stop()
            cleanup(p)


def second_apiserver(cluster: Cluster) -> Cluster:
    """Another kube-apiserver on the same etcd (a second control-plane node), with its own
    work dir, EncryptionConfiguration, log and kubeconfig; the workload helpers take it."""
    workdir = cluster.workdir / "apiserver-b"
    workdir.mkdir()
    api = KubeApiServer(cluster.components, workdir, cluster.pki, cluster.etcd, cluster.registry)
    return dataclasses.replace(cluster, workdir=workdir, apiserver=api)


def test_outage_second_apiserver_rotation_migration_revocation(
        cluster: Cluster, start_apiserver: StartApiServer, envelope_pair: tuple[Emulator, Plugin, Plugin],
        record_timing: RecordTiming) -> None:
    emulator, plug_a, plug_b = envelope_pair
    config_a = encryption_config([kms_v2(PROVIDER, plug_a.socket), identity()])
    config_b = encryption_config([kms_v2(PROVIDER, plug_b.socket), identity()])
    prefix = storage_prefix(kms_v2(PROVIDER, plug_a.socket))
    seen: list[EncryptedObject] = []  # every stored envelope, for the IK scan

    def stored(names: dict[str, str], key_id: str) -> dict[str, EncryptedObject]:
        found = stored_envelopes(cluster, prefix, names)
        seen.extend(found.values())
        assert {e.key_id for e in found.values()} == {key_id}
        assert all(is_envelope(e.encrypted_dek_source) for e in found.values())
        return found

    ik_a1 = plug_a.status().key_id
    assert item_version(ik_a1) == 1
    start_apiserver(config_a)
    before = create_secrets_bulk(cluster, "before", BATCH)
    stored(before, ik_a1)
    other = second_apiserver(cluster)
    record_timing("apiserver B start-to-ready", other.apiserver.start(ApiServerOptions(config_b)))
    assert list_batch(other, "before") == before  # B's plugin unwraps A's IK (Akeyless up)

    emulator.stop()  # Akeyless is down from here on
    start_apiserver(config_a)  # restarted: ready, since Encrypt is local (held IK)
    assert list_batch(cluster, "before") == before
    outage = create_secrets_bulk(cluster, "outage", BATCH)
    stored(outage, ik_a1)
    record_timing("apiserver B restart-to-ready in outage", other.apiserver.restart())
    assert list_batch(other, "before") == before
    assert list_batch(other, "outage") == outage  # A's writes in the outage, read by B
    from_b = create_secrets_bulk(other, "outage-b", 3)
    ik_b = plug_b.status().key_id
    assert ik_b != ik_a1 and item_version(ik_b) == 1
    stored(from_b, ik_b)
    assert plug_a.status().healthz == plug_b.status().healthz == "ok"  # ridden through

    emulator.start()  # Akeyless is back: A reads B's outage writes (unwraps B's IK)
    record_timing("Akeyless back to A reading B's writes", wait_until(
        lambda: list_batch(cluster, "outage-b") == from_b, RECOVERY_TIMEOUT_S,
        "A reading B's outage writes", interval_s=1))

    plug_a.rotate_key()
    started = time.monotonic()
    wait_until(lambda: plug_a.status().key_id != ik_a1, ROTATION_TIMEOUT_S, "plugin A's new IK")
    record_timing("rotation to plugin A's new IK", time.monotonic() - started)
    ik_a2 = plug_a.status().key_id
    assert item_version(ik_a2) == 2
    start_apiserver(config_a)  # restarted: its first Encrypt takes the new key_id
    rotated = create_secrets_bulk(cluster, "rotated", BATCH)
    stored(rotated, ik_a2)

    started = time.monotonic()
    batches = {"before": before, "outage": outage, "outage-b": from_b}
    for batch in batches:
        rewrite_batch(cluster, batch)
    record_timing("storage migration", time.monotonic() - started)
    migrated = stored(before | outage | from_b | rotated, ik_a2)
    for batch, expected in (batches | {"rotated": rotated}).items():
        assert list_batch(cluster, batch) == expected

    _scan_for_intermediate_keys(cluster, emulator, seen)

    # Revocation: the plugins' access key is replaced (re-authentication: 401), every token expires.
    emulator.control("add-access-key", {"access_id": emulator.ready["access_id"],
                                        "access_key": secrets.token_urlsafe(24)})
    emulator.control("expire-tokens", {})
    started = time.monotonic()
    for p in (plug_a, plug_b):
        wait_until(lambda p=p: p.status().healthz != "ok", REVOCATION_TIMEOUT_S,
                   f"plugin {p.name} dropping its IKs")
    record_timing("revocation to both plugins' IKs dropped", time.monotonic() - started)
    probe = migrated["rotated-00000"]
    with Client(plug_a.socket) as client, pytest.raises(grpc.RpcError) as refused:
        client.decrypt(probe.encrypted_dek_source, probe.key_id, probe.annotations)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A running apiserver keeps the DEK seeds it decrypted (its watch cache decrypts every
    # write as it arrives), so the apiserver-side proof is a restart: B's apiserver gets
    # no Encrypt (no IK) and no Decrypt (no unwrap) from its plugin, and serves no Secret.
    other.apiserver.stop()
    record_timing("apiserver B restart-to-serving after revocation",
                  other.apiserver.start(ApiServerOptions(config_b, ready_path="/version")))
    failed = other.kubectl("get", "secret", "rotated-00000", "-o", "json",
                           "--request-timeout=10s", check=False)
    # the server answers and refuses ("data from the storage is not transformable"):
    # not a timeout, not a connection error
    assert failed.returncode != 0 and "Error from server" in failed.stderr, failed.stderr
    assert not any(v in failed.stdout + failed.stderr for v in rotated.values())
    wait_until(lambda: _dropped_for_access_denied(plug_a), REVOCATION_TIMEOUT_S,
               "plugin A's intermediate_key_dropped audit records")
    # Recorded, not asserted (upstream behaviour): A's running apiserver still holds its
    # decrypted DEK seed, which no plugin-side revocation can reach.
    held = cluster.kubectl("get", "secrets", "-l", f"{BATCH_LABEL}=rotated",
                           "--request-timeout=10s", check=False)
    record_timing(f"reads by A's running apiserver after revocation (rc={held.returncode})", 0.0)


def _scan_for_intermediate_keys(cluster: Cluster, emulator: Emulator, seen: list[EncryptedObject]) -> None:
    """No IK (raw, hex, base64) in any component's log but the emulator's (it is Akeyless)."""
    key = key_from_state_dir(emulator.state_dir, KEY)
    iks = sorted(iks_of({e.encrypted_dek_source for e in seen}, key))
    assert len(iks) == 3  # A's before and after the rotation, B's
    logs = b"".join(p.output() for p in cluster.registry.processes if p is not emulator)
    assert len(logs) > 10_000
    assert secrets_scan.find(logs, iks) == []


def _dropped_for_access_denied(plugin: Plugin) -> bool:
    dropped = [r for r in plugin.audit_records() if r.get("event") == "intermediate_key_dropped"]
    return bool(dropped) and all(str(r.get("reason", "")).startswith("access denied")
                                 for r in dropped)
