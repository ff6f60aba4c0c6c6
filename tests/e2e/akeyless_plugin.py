"""The ``akeyless`` launcher: kms-appliance with ``--backend akeyless`` against
the project's Akeyless emulator (loopback HTTPS, its own CA).

Why a separate launcher: it is the production code path (the real SDK, auth,
the decrypt cache) with a remote KMS the test controls. ``KmsPlugin.backend``
is the emulator process, so a scenario makes an outage by stopping it and ends
it by starting it again (same port, same state dir: same keys and identity).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.procs import ManagedProcess, ProcessRegistry, free_port, wait_until

from .plugins import HERE, KmsPlugin, appliance_command, socket_path_for

REPO = HERE.parent.parent
KEY = "e2e-kek"
ACCESS_ID = "p-e2eharness01"
EMULATOR_READY_TIMEOUT_S = 30.0
CONTROL_TIMEOUT_S = 10.0


def _ready_line(log_path: Path, start_no: int) -> dict[str, Any]:
    """The emulator's JSON ready line printed after the ``start_no``-th start."""
    text = log_path.read_text(errors="replace")
    section = text.split("===== start #")[start_no]
    for line in section.splitlines():
        if line.startswith("{") and '"url"' in line:
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise LookupError("no ready line yet")


class Emulator(ManagedProcess):
    """The emulator process; ``ready`` holds URL, CA file and credentials."""

    ready: dict[str, Any]
    state_dir: Path  # the emulator's --state-dir (keys in clear: test material)

    def start(self) -> None:
        super().start()
        wait_until(
            lambda: bool(_ready_line(self.log_path, self.starts)),
            EMULATOR_READY_TIMEOUT_S,
            "akeyless emulator",
            alive=self.check_alive,
        )
        self.ready = _ready_line(self.log_path, self.starts)

    def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the emulator's control plane (rotate-key, fault, ...)."""
        ctx = ssl.create_default_context(cafile=self.ready["ca_file"])
        req = urllib.request.Request(
            f"{self.ready['control_url']}/{action}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, context=ctx, timeout=CONTROL_TIMEOUT_S) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result


def _plugin_env(ready: dict[str, Any]) -> dict[str, str]:
    """The appliance's environment: emulator URL and credentials, and cloud
    metadata endpoints pointed at a dead loopback port (no auth detection
    may reach out of the machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_APPLIANCE_", "AKEYLESS_"))}
    env.update(
        {
            "AKEYLESS_URL": ready["url"],
            "AKEYLESS_KEY_ENCRYPTION_KEY": "/" + KEY,
            "AKEYLESS_ACCESS_ID": ready["access_id"],
            "AKEYLESS_ACCESS_KEY": ready["access_key"],
            "KMS_APPLIANCE_AKEYLESS_CA_FILE": ready["ca_file"],
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9",
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9",
            "GCE_METADATA_HOST": "127.0.0.1:9",
        }
    )
    return env


def start_emulator(workdir: Path, name: str, registry: ProcessRegistry) -> Emulator:
    """Start an emulator with the key ``KEY`` and the identity ``ACCESS_ID``;
    its state (keys, identities) lives in ``emulator.state_dir``."""
    state = workdir / f"{name}-akeyless-state"
    state.mkdir(mode=0o700)
    emulator = Emulator(
        name=f"akeyless-emulator-{name}",
        argv=[
            sys.executable, "-m", "akeyless_emulator",
            "--host", "127.0.0.1", "--port", str(free_port()),
            "--state-dir", str(state), "--create-key", KEY, "--access-id", ACCESS_ID,
        ],
        log_path=workdir / "logs" / f"akeyless-emulator-{name}.log",
        cwd=REPO,
    )  # fmt: skip
    emulator.state_dir = state
    registry.add(emulator)
    emulator.start()
    return emulator


def akeyless_plugin(
    workdir: Path,
    name: str,
    registry: ProcessRegistry,
    emulator: Emulator,
    extra_env: dict[str, str] | None = None,
    provider_name: str | None = None,
) -> KmsPlugin:
    """Prepare (not start) the appliance on ``emulator``. Several plugins may share one
    emulator (one per control-plane node); ``extra_env`` sets ``KMS_APPLIANCE_*``
    settings such as ``KMS_APPLIANCE_AKEYLESS_MODE``."""
    cmd, cwd = appliance_command()
    empty_config = workdir / f"{name}-empty-config.toml"
    empty_config.touch()
    socket_path = socket_path_for(name)
    http_port = free_port()
    process = registry.add(
        ManagedProcess(
            name=f"kms-plugin-{name}",
            argv=[
                *cmd, "serve", "--config", str(empty_config),
                "--socket", str(socket_path), "--backend", "akeyless",
                "--provider-name", provider_name or name, "--http-listen", f"127.0.0.1:{http_port}",
            ],
            log_path=workdir / "logs" / f"kms-plugin-{name}.log",
            env={**_plugin_env(emulator.ready), **(extra_env or {})},
            cwd=cwd,
        )
    )  # fmt: skip

    def rotate() -> None:
        emulator.control("rotate-key", {"name": "/" + KEY})

    return KmsPlugin(
        name, socket_path, process, rotate, http_port, api_versions=("v2", "v1"), backend=emulator
    )


def akeyless_launcher(workdir: Path, name: str, registry: ProcessRegistry) -> KmsPlugin:
    """Start the emulator (it is the environment), prepare the appliance."""
    return akeyless_plugin(workdir, name, registry, start_emulator(workdir, name, registry))
