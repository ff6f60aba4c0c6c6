"""Types of the callables the e2e fixtures hand to tests (for annotations)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.kube.cluster import Cluster
from tests.support.kube.encryption import Provider
from tests.support.plugin import Plugin

# ``start_apiserver(encryption_config, **ApiServerOptions fields) -> seconds``
StartApiServer = Callable[..., float]
# ``start_kms_plugin(provider_name) -> running plugin``
StartPlugin = Callable[[str], Plugin]
# ``record_timing(what, seconds)``: a line in the end-of-run summary
RecordTiming = Callable[[str, float], None]


@dataclass(frozen=True)
class KmsV2Cluster:
    """What ``kms_v2_cluster`` started: the plugin, its KMS v2 provider, the
    EncryptionConfiguration ([that provider, identity]) the apiserver runs on,
    and the fixtures a scenario on it uses, so its signature names only this."""

    plugin: Plugin
    provider: Provider
    config: dict[str, Any]
    cluster: Cluster
    start_apiserver: StartApiServer
    record_timing: RecordTiming

    def restart_apiserver(self, **options: Any) -> float:
        """Restart the apiserver on the same configuration: its DEK cache is gone."""
        return self.start_apiserver(self.config, **options)
