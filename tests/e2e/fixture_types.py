"""Types of the callables the e2e fixtures hand to tests (for annotations)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from tests.support.kube.encryption import Provider
from tests.support.plugin import Plugin

# ``start_apiserver(encryption_config, **ApiServerOptions fields) -> seconds``
StartApiServer = Callable[..., float]
# ``start_kms_plugin(provider_name) -> running plugin``
StartPlugin = Callable[[str], Plugin]
# ``record_timing(what, seconds)``: a line in the end-of-run summary
RecordTiming = Callable[[str, float], None]


class KmsV2Cluster(NamedTuple):
    """What ``kms_v2_cluster`` started: the plugin, its KMS v2 provider, and the
    EncryptionConfiguration ([that provider, identity]) the apiserver runs on."""

    plugin: Plugin
    provider: Provider
    config: dict[str, Any]
