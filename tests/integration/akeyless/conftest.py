"""Fixtures: the Akeyless environment of the emulator (tests/conftest.py), and backends built from
env like production."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from akeyless_emulator import Emulator
from kms_appliance import config
from kms_appliance.backends import akeyless
from kms_appliance.backends.akeyless.backend import AkeylessBackend
from kms_appliance.metrics import Metrics
from tests.support.emulator import KEY, NO_CLOUD, identity_env


@pytest.fixture
def base_env(emu: Emulator) -> dict[str, str]:
    """The Akeyless KMS plugin's own variables, plus our CA file; no credentials yet."""
    return {"AKEYLESS_URL": emu.url, "AKEYLESS_KEY_ENCRYPTION_KEY": KEY, "KMS_APPLIANCE_AKEYLESS_CA_FILE": emu.ca_file,
            **NO_CLOUD}


@pytest.fixture
def ak_env(emu: Emulator) -> dict[str, str]:
    """``base_env`` and the credentials of a new access-key identity."""
    return identity_env(emu)


def load_cfg(env: dict[str, str], **akeyless_over: Any) -> config.Config:
    env = {k: v for k, v in env.items() if k != "KMS_APPLIANCE_CONFIG"}
    cfg = config.load(env=env, config_file=None)
    if akeyless_over:
        cfg = dataclasses.replace(cfg, akeyless=dataclasses.replace(cfg.akeyless, **akeyless_over))
    return cfg


@pytest.fixture
def make_backend() -> Iterator[Callable[..., AkeylessBackend]]:
    made: list[AkeylessBackend] = []

    def make(env: dict[str, str], metrics: Metrics | None = None, cache: bool = True,
             call_timeout: float | None = None, **over: Any) -> AkeylessBackend:
        cfg = load_cfg(env, **over)
        cfg = dataclasses.replace(cfg, cache=dataclasses.replace(cfg.cache, enabled=cache))
        if call_timeout is not None:
            cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, call_timeout=call_timeout))
        backend = akeyless.create(cfg, metrics or Metrics(), env=env)
        made.append(backend)
        return backend

    yield make
    for b in made:
        b.close()
