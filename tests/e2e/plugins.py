"""KMS plugins the harness can put behind kube-apiserver: a launcher turns (workdir, provider
name, registry) into a prepared ``Plugin`` (tests/support/plugin.py) whose socket goes into the
EncryptionConfiguration.

Why pluggable: every scenario runs unchanged against this checkout or a frozen binary
(``E2E_APPLIANCE_CMD``), on the local keyring (``appliance``) or on Akeyless through an emulator
process (``akeyless``: ``Plugin.backend``, stopped for an outage). ``E2E_KMS_PLUGIN`` picks them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.support import plugin as pm
from tests.support.emulator import EmulatorProcess, start_emulator
from tests.support.plugin import Command, Plugin
from tests.support.procs import ProcessRegistry

KEY = "/e2e-kek"  # the Akeyless key the ``akeyless`` launcher's emulator holds
ACCESS_ID = "p-e2eharness01"

Launcher = Callable[[Path, str, ProcessRegistry], Plugin]


def cleanup(plugin: Plugin) -> None:
    """Remove the socket's private directory (after the process stopped)."""
    shutil.rmtree(plugin.socket.parent, ignore_errors=True)


def appliance_plugin(workdir: Path, name: str, registry: ProcessRegistry,
                     emulator: EmulatorProcess | None = None, settings: dict[str, str] | None = None,
                     provider_name: str | None = None) -> Plugin:
    """Prepare (not start) kms-appliance: ``E2E_APPLIANCE_CMD`` or this checkout, on a fresh
    keyring made by its own ``keyring init`` (a frozen binary is tested whole) or on
    ``emulator`` (several plugins may share one, one per control-plane node); ``settings``
    are ``KMS_APPLIANCE_*`` variables such as ``KMS_APPLIANCE_AKEYLESS_MODE``. Its audit
    stream is stdout, in its log. The socket is in a private directory under /tmp (``cleanup``
    removes it): sun_path is limited to 107 bytes, pytest tmp paths are long."""
    sock = Path(tempfile.mkdtemp(prefix=f"e2e-kms-{name}-")) / "kms.sock"
    return pm.prepare(workdir / name, ["--provider-name", provider_name or name], settings,
                      socket_path=sock, command=Command.from_env("E2E_APPLIANCE_CMD"),
                      emulator=emulator, audit_file=False, name=name, registry=registry, status_ok=True)


def emulator_for(workdir: Path, name: str, registry: ProcessRegistry) -> EmulatorProcess:
    """An emulator holding ``KEY`` and the identity ``ACCESS_ID``."""
    return start_emulator(workdir, f"akeyless-emulator-{name}", KEY, ACCESS_ID, registry)


def akeyless_launcher(workdir: Path, name: str, registry: ProcessRegistry) -> Plugin:
    """Start the emulator (it is the environment), prepare the appliance on it. It re-reads
    the key every 5 s (default 30 s), so a rotation scenario does not wait out the default."""
    return appliance_plugin(workdir, name, registry, emulator_for(workdir, name, registry),
                            settings={"KMS_APPLIANCE_AKEYLESS_REFRESH_INTERVAL": "5s"})


LAUNCHERS: dict[str, Launcher] = {"appliance": appliance_plugin, "akeyless": akeyless_launcher}
DEFAULT_PLUGINS = "appliance"


def selected_launcher_names() -> list[str]:
    """``E2E_KMS_PLUGIN``: one launcher name or a comma-separated list; each KMS
    scenario then runs once per plugin (test ids end in ``[<name>]``)."""
    raw = os.environ.get("E2E_KMS_PLUGIN") or DEFAULT_PLUGINS
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in LAUNCHERS]
    if unknown or not names:
        raise ValueError(f"E2E_KMS_PLUGIN={raw!r}: expected names from {sorted(LAUNCHERS)}")
    return names
