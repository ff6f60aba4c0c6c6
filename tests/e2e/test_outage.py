"""An Akeyless outage: a running apiserver keeps reading every Secret, and after Akeyless
returns the cluster recovers (ready, reads, writes) by itself. Always on the Akeyless backend
(``kms_launcher`` overridden, whatever ``E2E_KMS_PLUGIN`` says): the outage is of the remote KMS.
"""

from __future__ import annotations

import pytest

from tests.support.kube.encryption import storage_prefix
from tests.support.kube.workload import (
    BATCH_LABEL,
    create_secret,
    create_secrets_bulk,
    list_batch,
    stored_envelopes,
)
from tests.support.procs import wait_until

from .fixture_types import KmsV2Cluster
from .plugins import LAUNCHERS, Launcher

pytestmark = pytest.mark.e2e

BATCH = 20
RECOVERY_TIMEOUT_S = 120.0


@pytest.fixture
def kms_launcher() -> Launcher:
    return LAUNCHERS["akeyless"]


def test_outage_keeps_reads_and_recovers(kms_v2_cluster: KmsV2Cluster) -> None:
    """Upstream behaviour this scenario runs into (k8s.io/apiserver
    ``encryptionconfig.getCurrentState``): an apiserver that *starts* while
    the plugin cannot Encrypt has no KMS v2 write state, and with no state it
    refuses reads too ("got unexpected nil transformer"), whatever the plugin
    could decrypt from its cache. So a warm plugin decrypt cache carries reads
    only for an apiserver that was already running; a restarted one serves
    Secrets again once one Encrypt succeeds.
    """
    k = kms_v2_cluster
    cluster, plugin, provider = k.cluster, k.plugin, k.provider
    assert plugin.backend is not None
    written = create_secrets_bulk(cluster, "warm", BATCH)
    stored_envelopes(cluster, storage_prefix(provider), written)
    k.restart_apiserver()  # the plugin decrypts (and caches) the seed
    assert list_batch(cluster, "warm") == written

    plugin.backend.stop()  # Akeyless is down from here on
    assert list_batch(cluster, "warm") == written, "running apiserver lost reads"

    # Restart during the outage: not ready, and (upstream) no reads yet. It waits for
    # /version, not /livez: upstream's storage-readiness hook holds /livez for its
    # one-minute timeout while Secrets cannot be read, which would only add a minute.
    k.restart_apiserver(ready_path="/version")
    during = cluster.kubectl("get", "secrets", "-l", f"{BATCH_LABEL}=warm", "--request-timeout=10s", check=False)
    k.record_timing(f"reads after restart in outage (rc={during.returncode})", 0.0)

    plugin.backend.start()  # Akeyless is back
    recovered = wait_until(lambda: cluster.apiserver.get("/readyz")[0] == 200, RECOVERY_TIMEOUT_S,
                           "/readyz after Akeyless returned", interval_s=1)
    k.record_timing("apiserver ready after Akeyless returned", recovered)
    assert list_batch(cluster, "warm") == written
    after = {"after": create_secret(cluster, "after")}
    stored_envelopes(cluster, storage_prefix(provider), after)
