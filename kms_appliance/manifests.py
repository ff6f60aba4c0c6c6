"""Kubernetes documents generated from the configuration.

YAML is written by hand (no YAML library in the binary); the values are
validated config strings, so quoting them as JSON strings is valid YAML.
"""

from __future__ import annotations

import json

from .config import Config


def encryption_config(cfg: Config, kms_api: str = "v2", timeout: str = "3s",
                      resources: tuple[str, ...] = ("secrets",)) -> str:
    """An EncryptionConfiguration pointing at this plugin, then identity for old data."""
    endpoint = json.dumps(f"unix://{cfg.server.socket}")
    lines = [
        "apiVersion: apiserver.config.k8s.io/v1",
        "kind: EncryptionConfiguration",
        "resources:",
        f"  - resources: [{', '.join(resources)}]",
        "    providers:",
        "      - kms:",
        f"          apiVersion: {kms_api}",
        f"          name: {json.dumps(cfg.server.provider_name)}",
        f"          endpoint: {endpoint}",
    ]
    if kms_api == "v1":
        lines.append("          cachesize: 1000")
    lines += [f"          timeout: {timeout}", "      - identity: {}"]
    return "\n".join(lines) + "\n"
