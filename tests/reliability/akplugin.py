"""The real plugin process with the Akeyless backend, against the in-process emulator."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support import plugin as pm
from tests.support.emulator import KEY, identity_env, record_secrets

__all__ = ["KEY", "ak_env", "record_emulator_secrets", "start"]
ak_env = identity_env
record_emulator_secrets = record_secrets


def start(workdir: Path, env: Mapping[str, str], args: Sequence[str] = (),
          dns_flag: Path | None = None, wait: bool = True) -> pm.Plugin:
    """Start ``serve --backend akeyless`` at debug level (the command wrapped by the DNS shim)."""
    shim = pm.Command((sys.executable, "-m", "tests.reliability.dnsshim", str(dns_flag)), pm.REPO)
    return pm.start(workdir, ["--log-level", "debug", *args], env=env, wait=wait, akeyless=True,
                    command=shim if dns_flag else None, timeout=30)
