"""Types of the callables the e2e fixtures hand to tests (for annotations)."""

from __future__ import annotations

from collections.abc import Callable

from .plugins import KmsPlugin

# ``start_apiserver(encryption_config, **ApiServerOptions fields) -> seconds``
StartApiServer = Callable[..., float]
# ``start_kms_plugin(provider_name) -> running plugin``
StartPlugin = Callable[[str], KmsPlugin]
# ``record_timing(what, seconds)``: a line in the end-of-run summary
RecordTiming = Callable[[str, float], None]
